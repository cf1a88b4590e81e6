"""QLoRA fine-tuning of BERT for text classification: 4-bit NF4 base (bitsandbytes), LoRA adapters (peft),
the Hugging Face Trainer with paged 8-bit AdamW, honest evaluation and measured efficiency.

The notebook runs a `run.Run` one step at a time; `run.train_pipeline` runs every step.
"""

from qlora_helpers.library_logs import quiet_known_library_warnings

quiet_known_library_warnings()  # before anything imports bitsandbytes

from qlora_helpers.config import TrainConfig  # noqa: E402
from qlora_helpers.errors import UserError  # noqa: E402
from qlora_helpers.presets import full_profile, make_config, offline_profile  # noqa: E402

__all__ = ["TrainConfig", "make_config", "offline_profile", "full_profile", "UserError"]
__version__ = "0.1.0"
