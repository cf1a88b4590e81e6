"""A standalone model: the 4-bit base dequantized and the adapter merged in, loadable without peft.

The output folder is checked before any work and written under a temporary name, renamed at the end, so
a failed merge leaves nothing and a finished run is never mixed with another.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from qlora_helpers.errors import require
from qlora_helpers.infer.evaluation import SEEN_ROWS
from qlora_helpers.infer.inference import is_merged_model_dir
from qlora_helpers.modeling.classifier_config import FILE as CLASSIFIER_FILE
from qlora_helpers.modeling.classifier_config import ClassifierConfig
from qlora_helpers.run_files import METRICS, TRAINING_CONFIG, writable, written_whole

DTYPES = ("float16", "bfloat16", "float32")


def check_merge_output(output_dir: Path, overwrite: bool) -> None:
    """Before any work: a new folder, an empty one, or (with `overwrite`) an earlier merge output."""
    require(not output_dir.is_file(), f"--output {output_dir} is a file; name a new folder for the merged model")
    require(
        writable(output_dir), f"cannot write to {output_dir} (read-only or no permission); choose another --output"
    )
    if output_dir.is_dir() and any(output_dir.iterdir()):
        ours = is_merged_model_dir(output_dir) and (output_dir / CLASSIFIER_FILE).is_file()  # not a base model
        require(
            overwrite and ours,
            f"{output_dir} already holds files"
            + (" (a training run)" if (output_dir / "adapter_config.json").is_file() else "")
            + "; name a new folder with --output"
            + (", or pass --overwrite to replace this earlier merge" if ours else ""),
        )


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path, dtype: str = "float16", overwrite=False) -> Path:
    """Write a standalone model: dequantized base + adapter merged, with the tokenizer, the classifier
    configuration, the run's metrics and a model card.

    Saved in `dtype` (fp16 by default: half the bytes of fp32, more mantissa than bf16).
    """
    from qlora_helpers.infer.inference import load_for_inference
    from qlora_helpers.report.model_card import write_model_card

    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    require(dtype in DTYPES, f"--dtype must be one of {DTYPES}, got {dtype!r}")
    require(
        adapter_dir.resolve() != output_dir.resolve(), "--output must be a new folder, not the adapter's own folder"
    )
    check_merge_output(output_dir, overwrite)
    ClassifierConfig.load(adapter_dir)  # a damaged or foreign folder fails here, before the model loads
    require((adapter_dir / "adapter_config.json").is_file(), f"{adapter_dir} holds no adapter to merge")
    loaded = load_for_inference(adapter_dir, "merged", "float32" if not torch.cuda.is_available() else "auto")
    model = loaded.model.to(getattr(torch, dtype))
    with written_whole(output_dir) as staging:
        model.save_pretrained(str(staging))
        loaded.tokenizer.save_pretrained(str(staging))
        loaded.classifier_config.save(staging)
        for name in (TRAINING_CONFIG, METRICS, SEEN_ROWS):  # SEEN_ROWS: evaluate still counts training rows
            if (adapter_dir / name).is_file():
                shutil.copy(adapter_dir / name, staging / name)
        write_model_card(staging, merged_from=str(adapter_dir), dtype=dtype)
    return output_dir
