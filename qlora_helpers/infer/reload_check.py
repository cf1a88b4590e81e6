"""Does the saved run, reloaded, predict what the trained model predicted?

A reload guarantees three things, and each is compared on its own terms:
- the prediction settings (labels in order, task, input columns, max_length, truncation, thresholds, temperature)
  are saved exactly: `classifier_config.json` read back equals the trained run's;
- the trained weights (LoRA matrices and the head) are saved exactly: each reloaded tensor equals the trained one;
- the frozen 4-bit base is rebuilt from the base model the same way, so the logits agree within the rounding
  of the dtype the 4-bit layers compute in. Decisions may differ only on rows whose logits sit within that
  rounding of a tie; a lost head, reordered labels or a dropped temperature or threshold fail the first two
  comparisons, and any other broken path moves logits far beyond it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROUNDINGS = 2  # logits may differ by this many units of the compute dtype's epsilon, scaled by the largest logit


@dataclass
class ReloadCheck:
    rows: int
    agreement: float  # share of decisions the reloaded model shares with the trained one
    max_logit_diff: float
    tolerance: float
    reason: str  # why that tolerance
    tensors_compared: int
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED: " + "; ".join(self.problems)
        return (
            f"reloaded adapter: same decisions on {self.agreement:.2%} of {self.rows:,} test rows, largest logit "
            f"difference {self.max_logit_diff:.2e} (allowed {self.tolerance:.2e}: {self.reason}); "
            f"{self.tensors_compared} trained tensors and the prediction settings compared exactly - {verdict}"
        )


def logit_tolerance(dtype: torch.dtype, logits: np.ndarray) -> tuple[float, str]:
    """How far two runs of the same eager forward on the same weights may drift apart: a few roundings of the
    dtype the 4-bit layers compute in, at the scale of the largest logit."""
    eps = torch.finfo(dtype).eps
    scale = max(1.0, float(np.abs(logits).max()) if logits.size else 1.0)
    name = str(dtype).removeprefix("torch.")
    return ROUNDINGS * eps * scale, f"{ROUNDINGS} x {name} epsilon ({eps:.1e}) x the largest logit ({scale:.2f})"


def setting_differences(trained, reloaded) -> list[str]:
    """The prediction settings that did not come back as trained (ClassifierConfig records compared key by key)."""
    a, b = trained.record(), reloaded.record()
    return [
        f"{k} differs (trained {a.get(k)!r}, reloaded {b.get(k)!r})"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]


def weight_differences(trained_model, reloaded_model) -> tuple[int, list[str]]:
    """The trained tensors (every parameter that required a gradient) that the reloaded model lacks or holds
    with other values; returns how many were compared and the problems."""
    theirs = dict(reloaded_model.named_parameters())
    compared, problems = 0, []
    for name, mine in trained_model.named_parameters():
        if not mine.requires_grad:
            continue
        compared += 1
        other = theirs.get(name)
        if other is None:
            problems.append(f"{name} is missing from the reloaded model")
        elif other.shape != mine.shape or not torch.equal(other.detach().cpu(), mine.detach().cpu()):
            problems.append(f"{name} was not saved as trained")
    return compared, problems


def check_reload(
    output_dir: str | Path,
    trained_model,
    frame: pd.DataFrame,
    trained_logits: np.ndarray,
    trained_config,
    batch_size: int,
    compute_dtype: str = "auto",
):
    """Reload the run in `output_dir` and compare it with the trained model on `frame` (the test split, whose
    calibrated `trained_logits` the run reported in batches of `batch_size`, computing in `compute_dtype`).

    Like with like: the same batches (a batch is padded to its longest text, and a 16-bit sum rounds differently
    over another padded length) and the same dtype. Returns the reloaded model and the check."""
    from qlora_helpers.errors import UserError
    from qlora_helpers.infer.inference import load_adapter

    try:
        reloaded = load_adapter(output_dir, compute_dtype)
    except UserError as e:
        return None, ReloadCheck(len(frame), 0.0, float("inf"), 0.0, "nothing to compare", 0, [str(e)])
    pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
    again = reloaded.logits(frame["text"].tolist(), batch_size, progress=False, pairs=pairs)
    tolerance, reason = logit_tolerance(reloaded.hardware.compute_dtype, trained_logits)
    compared, unsaved = weight_differences(trained_model, reloaded.model)
    more = [f"... and {len(unsaved) - 3} more tensors"] if len(unsaved) > 3 else []
    problems = setting_differences(trained_config, reloaded.classifier_config) + unsaved[:3] + more
    diff = float(np.abs(again - trained_logits).max()) if len(frame) else 0.0
    if diff > tolerance:
        problems.append(f"logits differ by {diff:.2e}, beyond the {tolerance:.2e} rounding allows")
    agreement = trained_config.task.agreement(
        again, trained_logits, trained_config.labels, trained_config.decision_thresholds()
    )
    check = ReloadCheck(len(frame), float(agreement), diff, tolerance, reason, compared, problems)
    return reloaded, check
