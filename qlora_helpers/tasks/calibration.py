"""Probabilities a reader can take at their word: one temperature fitted on validation, and how well calibrated
the probabilities are before and after.

Temperature scaling (Guo et al., 2017) divides every logit by one number T, fitted to minimise the validation
split's negative log-likelihood: a single-label model's decisions do not change (the argmax stays), only how
sure it says it is. A multi-label model gets one T for all its sigmoids (fitted on binary cross-entropy), and
its thresholds are tuned afterwards, on the calibrated probabilities. A regression outputs a number, not a
probability: there is nothing to calibrate, and it gets no temperature.

Calibration is measured as the expected calibration error over 15 equal-width bins (ECE: the gap between
confidence and accuracy, weighted by how many predictions fall in each bin) and the Brier score. A single-label
model is judged by its top label's probability; a multi-label model by every (text, label) probability, which
easy negatives dominate, so its ECE is small by construction: compare before with after, not across tasks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from qlora_helpers.tasks.labels import LabelSpace
from qlora_helpers.tasks.metrics import BINS, expected_calibration_error

BOUNDS = (0.05, 20.0)  # a temperature outside these is a sign of a broken model, not of over-confidence


def fit_temperature(task, encoded: pd.Series, logits: np.ndarray, space: LabelSpace) -> float:
    """The T in BOUNDS that minimises the negative log-likelihood of `logits / T` (searched on log T); 1 where the
    validation split has no wrong decision to calibrate on."""
    from scipy.optimize import minimize_scalar

    truth, logits = task.calibration_truth(encoded, space), np.asarray(logits, dtype=np.float64)
    if task.separated(truth, logits):
        return 1.0
    found = minimize_scalar(
        lambda log_t: task.nll(truth, logits / np.exp(log_t)), bounds=np.log(BOUNDS), method="bounded"
    )
    return round(float(np.exp(found.x)), 4)


def confidences(task, encoded: pd.Series, logits: np.ndarray, space: LabelSpace) -> tuple[np.ndarray, np.ndarray]:
    """(probability, whether it came true) per judged prediction (the task's `judged`)."""
    return task.confidences(task.calibration_truth(encoded, space), logits)


def brier(task, encoded: pd.Series, logits: np.ndarray, space: LabelSpace) -> float:
    """Mean squared gap between probabilities and the truth (scikit-learn's `brier_score_loss`)."""
    return task.brier(task.calibration_truth(encoded, space), logits, space)


def measure(task, encoded: pd.Series, logits: np.ndarray, space: LabelSpace, temperature: float) -> dict[str, Any]:
    """ECE and Brier score of raw `logits` and of `logits / temperature`, on one split."""
    out: dict[str, Any] = {"rows": int(len(encoded))}
    truth = task.calibration_truth(encoded, space)
    for when, scaled in (("before", logits), ("after", logits / temperature)):
        conf, hit = task.confidences(truth, scaled)
        out[f"ece_{when}"] = round(expected_calibration_error(conf, hit), 5)
        out[f"brier_{when}"] = round(task.brier(truth, scaled, space), 5)
    return out


def calibrate(task, encoded: pd.Series, logits: np.ndarray, space: LabelSpace) -> dict[str, Any] | None:
    """The temperature fitted on a validation split's raw logits, with what it does there (None: regression)."""
    if not task.classifies:
        return None
    temperature = fit_temperature(task, encoded, logits, space)
    # said from the data, not from T == 1: a fit may land there
    kept = task.separated(task.calibration_truth(encoded, space), np.asarray(logits))
    return {
        "temperature": temperature,
        "method": "temperature scaling: one T minimising the validation negative log-likelihood"
        + ("; every validation decision was right, so T stays 1" if kept else ""),
        "bins": BINS,
        "judged": task.judged,
        "validation": measure(task, encoded, logits, space, temperature),
    }


def describe(record: dict[str, Any], split: str = "validation") -> str:
    m = record[split]
    return (
        f"calibration: temperature {record['temperature']:.3f} fitted on validation; {split} ECE "
        f"{m['ece_before']:.4f} -> {m['ece_after']:.4f}, Brier {m['brier_before']:.4f} -> {m['brier_after']:.4f}"
    )


def plot(task, encoded: pd.Series, logits: np.ndarray, space: LabelSpace, temperature: float, directory, caption=""):
    """The reliability diagram of a split's raw logits, before and after dividing by `temperature`."""
    from qlora_helpers.tasks.figures import plot_reliability

    curves = {
        "before": confidences(task, encoded, logits, space),
        f"after (T = {temperature:.2f})": confidences(task, encoded, logits / temperature, space),
    }
    return plot_reliability(curves, directory, caption, task.judged_short)
