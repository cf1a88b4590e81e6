"""A run's directory on disk: the checks before anything is written, checkpoints to resume from, and the
files a finished run leaves (adapter, tokenizer, classifier configuration, predictions, metrics.json)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qlora_helpers.errors import require

METRICS = "metrics.json"  # its presence marks a finished run
RUN_MARKS = (METRICS, "classifier_config.json", "checkpoints")  # a folder holding one of these is a run's
TRAINING_CONFIG = "training_config.json"  # the full TrainConfig, for the record (predict reads classifier_config)


def library_versions() -> dict[str, str]:
    from importlib import metadata

    import bitsandbytes
    import peft
    import torch
    import transformers

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "bitsandbytes": bitsandbytes.__version__,
    }
    for name in ("accelerate", "datasets"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_json(path: Path, payload: Any) -> Path:
    """Write atomically: a crash mid-write never leaves half a file where a whole one was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
    return path


def usual_permissions(folder: Path) -> None:
    """Give a folder built under `tempfile.mkdtemp` (0700) and its files the modes this user's umask gives any new
    file, as `train`'s output has: an export or merge is meant to be shared and served."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [Path(folder), *Path(folder).rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def writable(path: Path) -> bool:
    """Whether `path` (or the nearest folder above it that exists) takes a new file: tried with a temporary file
    that is gone when the check ends, since permission bits do not tell (root writes into a folder whose bits
    say read-only; a read-only mount or a full quota refuses whatever they say)."""
    probe = Path(path).resolve()
    if probe.is_file():  # replaced through a temporary file beside it
        probe = probe.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return False
    try:
        with tempfile.TemporaryFile(dir=probe):
            return True
    except OSError:
        return False


def check_output_dir(output_dir: str, overwrite: bool, resume: bool = False, plots_dir: str | None = None) -> Path:
    """Refuse to overwrite a finished run unless asked, or to write where the user cannot (the plots' folder
    too): checked before anything is loaded or written."""
    out = Path(output_dir)
    require(not out.is_file(), f"output_dir {out} is a file; pass a directory")
    require(writable(out), f"cannot write to {out} (read-only or no permission); choose another --output-dir")
    if plots_dir is not None:
        plots = Path(plots_dir)
        require(not plots.is_file(), f"plots_dir {plots} is a file; pass a directory")
        require(writable(plots), f"cannot write to {plots} (read-only or no permission); choose another --plots-dir")
    if out.is_dir():
        held = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        require(
            not held or any(name in held for name in RUN_MARKS),
            f"{out} already holds other files ({', '.join(held[:4])}{', ...' if len(held) > 4 else ''}), not a run "
            f"of this tool; a run writes README.md, tokenizer and adapter files there: name a new or empty "
            f"--output-dir",
        )
    finished = (out / METRICS).exists()
    require(not (resume and finished), f"{out} holds a finished run; nothing to resume")
    interrupted = not finished and any(out.glob("checkpoints/checkpoint-*/trainer_state.json"))
    require(
        resume or overwrite or not interrupted,
        f"{out} holds an interrupted run with checkpoints; pass --resume to continue it, --overwrite to start "
        f"again (its checkpoints are discarded), or choose another --output-dir",
    )
    require(
        overwrite or not finished,
        f"{out} already holds a finished run ({METRICS}); pass --overwrite to replace it or choose another "
        f"--output-dir",
    )
    return out


REPLACED = ("runs", "evaluation_*.json", "misclassified_*.csv")  # what only the replaced model's run wrote


def clear_replaced_outputs(output_dir: str | Path) -> list[str]:
    """Before an --overwrite run trains: the old run's TensorBoard events (else both runs' curves mix in one
    folder) and `evaluate`'s files about the old model go; what they were is printed."""
    out, gone = Path(output_dir), []
    for pattern in REPLACED:
        for path in out.glob(pattern) if out.is_dir() else []:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            gone.append(path.name)
    if gone:
        print(f"--overwrite: removed the replaced run's {', '.join(sorted(gone))} from {out}")
    return gone


@contextmanager
def written_whole(output_dir: Path) -> Iterator[Path]:
    """A folder written beside `output_dir` and moved into its place only once complete, with the usual
    permissions: a failed or interrupted export or merge leaves the old folder (or none), never half a new one."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        yield staging
        usual_permissions(staging)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def removed_on_failure(*folders: str | Path) -> Iterator[None]:
    """The folders a run creates are removed again if it fails before a checkpoint it could resume from is saved
    (a bad setting found after the data plot, a loss that turned NaN): a failed run leaves no half-made folder."""
    new = [Path(f) for f in folders if not Path(f).exists()]
    try:
        yield
    except Exception:
        for folder in new:
            if folder.is_dir() and not any(folder.glob("checkpoints/checkpoint-*/trainer_state.json")):
                shutil.rmtree(folder, ignore_errors=True)
        raise


def checkpoint_step(path: Path) -> int:
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint that was saved to the end; half-written ones (a kill during a save) are removed.

    The Trainer writes `trainer_state.json` last, so a checkpoint without it was interrupted mid-save.
    """
    found = sorted((Path(output_dir) / "checkpoints").glob("checkpoint-*"), key=checkpoint_step)
    complete = [c for c in found if (c / "trainer_state.json").is_file()]
    for c in found:
        if c not in complete:
            print(f"removing {c}: interrupted while it was being saved")
            shutil.rmtree(c, ignore_errors=True)
    return complete[-1] if complete else None


def resume_point(output_dir: str, resume: bool, cfg=None) -> str | None:
    """The checkpoint to continue from when resuming (None for a fresh run); an error if there is none, or if
    `cfg` changes what the checkpoint's adapter is (a rank that fails to load, an alpha that would load)."""
    if not resume:
        return None
    checkpoint = last_complete_checkpoint(output_dir)
    require(
        checkpoint is not None,
        f"nothing to resume in {output_dir}: no complete checkpoint; start again without --resume",
    )
    saved = checkpoint / "adapter_config.json"
    if cfg is not None and saved.is_file():
        started = json.loads(saved.read_text())
        pairs = {  # flag: (this run's value, the checkpoint's)
            "model": (cfg.model, started.get("base_model_name_or_path")),
            "lora-r": (cfg.lora_r, started.get("r")),
            "lora-alpha": (cfg.lora_alpha, started.get("lora_alpha")),
            "lora-dropout": (cfg.lora_dropout, started.get("lora_dropout")),
        }
        changed = [f"--{k} {now} (started with {then})" for k, (now, then) in pairs.items() if now != then]
        require(
            not changed,
            f"{', '.join(changed)}: a run resumes with the settings it started with; give those, or start "
            f"again without --resume",
        )
    print(f"resuming from {checkpoint}")
    return str(checkpoint)


def command_line() -> str:
    """How this process was started: the command, or a notebook kernel (whose own argv says nothing)."""
    name = Path(sys.argv[0]).name if sys.argv else ""
    if "ipykernel" in name or "colab_kernel" in name:
        return "notebook kernel (see the notebook's parameters)"
    return " ".join([name, *sys.argv[1:]])


def score_fields(scores: dict[str, Any], prefix: str) -> dict[str, Any]:
    """metrics.json's names for one split's scores: every number, the report and the confusion matrix."""
    skip = {"labels", "positive_label", "predicted_label_rate"}
    out = {f"{prefix}_{k}": v for k, v in scores.items() if k not in skip}
    return out


def save_run(
    out: Path, model, tokenizer, classifier_config, config: dict[str, Any], log_history: list, metrics: dict
) -> dict:
    """Adapter (+ head), tokenizer, classifier configuration, the training configuration and log, then
    metrics.json last (its presence marks the run finished); the caller writes the model card from it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS).unlink(missing_ok=True)  # replacing a run (--overwrite): unfinished until all is written
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    classifier_config.save(out)
    write_json(out / TRAINING_CONFIG, config)
    write_json(out / "training_log.json", log_history)
    metrics = {
        **metrics,
        "versions": library_versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out / METRICS, metrics)
    return metrics
