"""Decision thresholds for label sets, tuned on the validation split and saved with the adapter.

A sigmoid output of 0.5 is rarely the best cut: rare labels get low probabilities and would almost never
fire. One global threshold maximises macro-F1; per-label thresholds maximise each label's own F1, and a
label with too few validation positives to tune on keeps the global one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from qlora_helpers.errors import UserError, require

FILE = "thresholds.json"  # where runs before classifier_config.json kept them
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
MIN_POSITIVES = 5  # fewer validation positives than this: a per-label threshold would be tuned on noise
MODES = ("per_label", "global", "0.5")


def tune_global(labels: np.ndarray, probs: np.ndarray, grid: np.ndarray = GRID) -> float:
    """The one threshold for every label that maximises validation macro-F1 (the lowest of ties)."""
    scores = [f1_score(labels, probs >= t, average="macro", zero_division=0) for t in grid]
    return float(grid[int(np.argmax(scores))])


def tune_per_label(labels: np.ndarray, probs: np.ndarray, fallback: float) -> tuple[np.ndarray, list[bool]]:
    """Each label's F1-maximising threshold; labels with fewer than MIN_POSITIVES positives keep `fallback`."""
    out, tuned = np.full(labels.shape[1], fallback), []
    for j in range(labels.shape[1]):
        if labels[:, j].sum() < MIN_POSITIVES:
            tuned.append(False)
            continue
        scores = [f1_score(labels[:, j], probs[:, j] >= t, zero_division=0) for t in GRID]
        out[j] = GRID[int(np.argmax(scores))]
        tuned.append(True)
    return out, tuned


def tune(labels: np.ndarray, probs: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Both kinds of threshold plus what they score on validation; the record saved as thresholds.json."""
    labels = np.asarray(labels).astype(int)
    global_t = tune_global(labels, probs)
    per_label, tuned = tune_per_label(labels, probs, global_t)

    def macro(t) -> float:
        return round(float(f1_score(labels, probs >= t, average="macro", zero_division=0)), 4)

    return {
        "mode": "per_label",
        "global": global_t,
        "per_label": {n: float(t) for n, t in zip(names, per_label)},
        "tuned_labels": [n for n, ok in zip(names, tuned) if ok],
        "fallback_labels": [n for n, ok in zip(names, tuned) if not ok],
        "min_positives": MIN_POSITIVES,
        "validation_f1_macro": {"0.5": macro(0.5), "global": macro(global_t), "per_label": macro(per_label)},
        "validation_rows": int(len(labels)),
    }


def vector(record: dict[str, Any], names: list[str], mode: str | None = None) -> np.ndarray:
    """The thresholds `mode` names (default: the saved mode), one per label in id order, each in [0, 1]."""
    mode = mode or record.get("mode", "per_label")
    require(mode in MODES, f"threshold mode must be one of {MODES}, got {mode!r}")
    if mode == "0.5":
        return np.full(len(names), 0.5)
    if mode == "global":
        thresholds = np.full(len(names), float(record["global"]))
    else:
        missing = [n for n in names if n not in record.get("per_label", {})]
        require(not missing, f"the saved thresholds lack label(s) {missing[:5]}; retrain or re-tune them")
        thresholds = np.array([float(record["per_label"][n]) for n in names])
    bad = [f"{n}={t:g}" for n, t in zip(names, thresholds) if not 0.0 <= t <= 1.0]
    if bad:
        raise UserError(f"thresholds must lie between 0 and 1 (a probability), but {', '.join(bad[:3])}")
    return thresholds
