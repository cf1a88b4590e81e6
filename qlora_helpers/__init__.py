"""QLoRA fine-tuning of BERT for text classification: 4-bit NF4 base (bitsandbytes), LoRA adapters (peft),
the Hugging Face Trainer with paged 8-bit AdamW, honest evaluation and measured efficiency.

The notebook calls these functions one step at a time; `train_pipeline` chains them.
"""

from .library_logs import quiet_known_library_warnings

quiet_known_library_warnings()  # before anything imports bitsandbytes

from .config import TrainConfig, full_profile, make_config, offline_profile  # noqa: E402
from .errors import UserError  # noqa: E402

__all__ = ["TrainConfig", "make_config", "offline_profile", "full_profile", "UserError"]
__version__ = "0.1.0"
