"""Classification metrics with scikit-learn (`evaluate.load` needs the Hub; these do not)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score, roc_auc_score

BINS = 15  # equal-width probability bins of the calibration error and the reliability diagram


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))


def trainer_metrics(eval_pred) -> dict[str, float]:
    """`compute_metrics` for the Trainer: accuracy (the model-selection metric), macro and weighted F1."""
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    preds = np.asarray(logits).argmax(-1)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1_macro": float(f1_score(labels, preds, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(labels, preds, average="weighted", zero_division=0)),
    }


def multi_label_trainer_metrics(eval_pred) -> dict[str, float]:
    """`compute_metrics` for label sets: macro-F1 at the best single threshold selects the checkpoint.

    At a fixed 0.5, early checkpoints predict no label at all (sigmoid outputs start low), every one scores
    macro-F1 0 and early stopping ends training before it has begun; the best of a coarse threshold grid
    measures what the checkpoint can do once thresholds are tuned, as they are after training.
    """
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    from qlora_helpers.tasks.thresholds import tune_global

    probs, labels = sigmoid(np.asarray(logits)), np.asarray(labels).astype(int)
    best = tune_global(labels, probs, np.round(np.arange(0.05, 0.951, 0.05), 2))
    preds = (probs >= best).astype(int)
    return {
        "f1_macro": float(f1_score(labels, preds, average="macro", zero_division=0)),
        "best_threshold": best,
        "f1_macro_at_0.5": float(f1_score(labels, probs >= 0.5, average="macro", zero_division=0)),
        "f1_micro": float(f1_score(labels, preds, average="micro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(labels, preds)),
    }


def classification_metrics(labels: np.ndarray, preds: np.ndarray, id2label: dict[int, str]) -> dict[str, Any]:
    """Accuracy, weighted F1, the per-class report and the confusion matrix (rows = true, columns = predicted)."""
    ids = sorted(id2label)
    names = [id2label[i] for i in ids]
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(ids))
    binary = {}
    if len(ids) == 2:  # two classes: F1 of the second (label id 1), as MRPC and most binary benchmarks report
        binary = {
            "f1_positive": float(f1_score(labels, preds, pos_label=ids[1], average="binary", zero_division=0)),
            "positive_label": names[1],
        }
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        **binary,
        "f1_macro": float(f1_score(labels, preds, labels=ids, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(labels, preds, labels=ids, average="weighted", zero_division=0)),
        "majority_baseline_accuracy": float(counts.max() / max(1, counts.sum())),
        "report": classification_report(
            labels, preds, labels=ids, target_names=names, output_dict=True, zero_division=0
        ),
        "confusion_matrix": confusion_matrix(labels, preds, labels=ids).tolist(),
        "labels": names,
    }


def multi_label_metrics(
    labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | float, id2label: dict[int, str]
) -> dict[str, Any]:
    """Scores of label sets: macro / micro / weighted F1, subset accuracy (the whole set right), the
    per-label report, and macro ROC-AUC from the probabilities over the labels that have both outcomes."""
    names = [id2label[i] for i in sorted(id2label)]
    labels = np.asarray(labels).astype(int)
    preds = (probs >= np.broadcast_to(np.asarray(thresholds, dtype=float), probs.shape[1:])).astype(int)
    scorable = [j for j in range(labels.shape[1]) if 0 < labels[:, j].sum() < len(labels)]
    auc = float(roc_auc_score(labels[:, scorable], probs[:, scorable], average="macro")) if scorable else None
    return {
        "f1_macro": float(f1_score(labels, preds, average="macro", zero_division=0)),
        "f1_micro": float(f1_score(labels, preds, average="micro", zero_division=0)),
        "f1_weighted": float(f1_score(labels, preds, average="weighted", zero_division=0)),
        "subset_accuracy": float(accuracy_score(labels, preds)),
        "roc_auc_macro": auc,
        "roc_auc_labels": len(scorable),
        "report": classification_report(
            labels, preds, labels=list(range(len(names))), target_names=names, output_dict=True, zero_division=0
        ),
        "labels": names,
        "predicted_label_rate": preds.mean(axis=0).round(5).tolist(),
    }


def regression_metrics(targets: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    """Pearson and Spearman correlation, MSE and MAE, and the MSE of always predicting the mean."""
    from scipy.stats import pearsonr, spearmanr

    targets, predictions = np.asarray(targets, dtype=float), np.asarray(predictions, dtype=float)
    flat = np.ptp(predictions) == 0 or np.ptp(targets) == 0  # a correlation is undefined for a constant
    return {
        "pearson": 0.0 if flat else float(pearsonr(targets, predictions)[0]),
        "spearman": 0.0 if flat else float(spearmanr(targets, predictions)[0]),
        "mse": float(np.mean((predictions - targets) ** 2)),
        "mae": float(np.mean(np.abs(predictions - targets))),
        "mean_baseline_mse": float(np.var(targets)),
        "rows": int(len(targets)),
        "labels": ["score"],
    }


def regression_trainer_metrics(eval_pred) -> dict[str, float]:
    """`compute_metrics` for a regression: Spearman (the selection metric), Pearson, MSE, MAE."""
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    m = regression_metrics(np.asarray(labels).reshape(-1), np.asarray(logits).reshape(-1))
    return {k: m[k] for k in ("spearman", "pearson", "mse", "mae")}


def expected_calibration_error(confidence: np.ndarray, hit: np.ndarray, bins: int = BINS) -> float:
    """Sum over equal-width bins of (share of predictions in the bin) x |accuracy - mean confidence|."""
    which = np.clip(np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, hit, bins) - np.bincount(which, confidence, bins))
    return float(gap.sum() / max(1, count.sum()))
