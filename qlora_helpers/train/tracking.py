"""Optional Weights & Biases logging: on when a key is available and login works, otherwise local only; or
TensorBoard, when asked for, as event files beside the run.

The key comes from the environment or a `.env` file (python-dotenv). `WANDB_MODE=offline` needs no key:
wandb writes the run to local files, to upload later with `wandb sync` (machines without internet).
Whatever happens, one line says which way the run logs; a missing package or a failed login never stops
training.
"""

from __future__ import annotations

import os
from pathlib import Path


def load_env(env_file: str | Path = ".env") -> bool:
    """Read `.env` (if present) without overriding variables already set; True if a file was read."""
    from dotenv import load_dotenv

    return bool(Path(env_file).is_file() and load_dotenv(env_file, override=False))


def choose_report_to(
    mode: str = "auto", env_file: str | Path = ".env", output_dir: str = "OUTPUT_DIR"
) -> tuple[str, str]:
    """Return (`report_to` for the Trainer, the one line to print)."""
    if mode == "none":
        return "none", "logging: local only (report_to=none)"
    if mode == "tensorboard":
        return tensorboard(output_dir)
    load_env(env_file)
    if os.environ.get("WANDB_MODE", "").strip().lower() == "offline":
        try:
            import wandb  # noqa: F401
        except ImportError:
            return "none", "logging: local only - WANDB_MODE=offline but wandb is not installed: pip install wandb"
        os.environ.setdefault("WANDB_PROJECT", "qlora-bert-text-classification")
        where = Path(os.environ.get("WANDB_DIR", ".")) / "wandb"
        return "wandb", f"logging: Weights & Biases offline, run files under {where} (upload later: wandb sync)"
    key = os.environ.get("WANDB_API_KEY", "").strip()
    if not key:
        if mode == "wandb":
            return "none", "logging: local only - report_to=wandb but WANDB_API_KEY is not set (see .env.example)"
        return "none", "logging: local only (set WANDB_API_KEY in the environment or .env to log to Weights & Biases)"
    try:
        import wandb
    except ImportError:
        return "none", "logging: local only - WANDB_API_KEY is set but wandb is not installed: pip install wandb"
    try:
        ok = wandb.login(key=key, verify=True, relogin=True)
    except Exception as e:  # network or auth failure: train on, locally
        return "none", f"logging: local only - Weights & Biases login failed ({type(e).__name__})"
    if not ok:
        return "none", "logging: local only - Weights & Biases login failed"
    os.environ.setdefault("WANDB_PROJECT", "qlora-bert-text-classification")
    return "wandb", f"logging: Weights & Biases, project {os.environ['WANDB_PROJECT']}"


def tensorboard(output_dir: str) -> tuple[str, str]:
    """The Trainer's own TensorBoard writer (torch.utils.tensorboard), which needs the tensorboard package; without
    it the run trains on, locally, and says what to install."""
    from transformers.integrations import is_tensorboard_available

    if not is_tensorboard_available():
        return (
            "none",
            "logging: local only - report_to=tensorboard but tensorboard is not installed: pip install tensorboard",
        )
    where = Path(output_dir) / "runs"  # beside the run's files, not inside checkpoints/ (the Trainer's own place)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(where)  # what transformers' TensorBoardCallback reads
    return "tensorboard", f"logging: TensorBoard event files under {where} (view them: tensorboard --logdir {where})"
