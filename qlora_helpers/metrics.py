"""Classification metrics with scikit-learn (`evaluate.load` needs the Hub; these do not)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def trainer_metrics(eval_pred) -> dict[str, float]:
    """`compute_metrics` for the Trainer: accuracy (the model-selection metric) and weighted F1."""
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    preds = np.asarray(logits).argmax(-1)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1_weighted": float(f1_score(labels, preds, average="weighted", zero_division=0)),
    }


def classification_metrics(labels: np.ndarray, preds: np.ndarray, id2label: dict[int, str]) -> dict[str, Any]:
    """Accuracy, weighted F1, the per-class report and the confusion matrix (rows = true, columns = predicted)."""
    ids = sorted(id2label)
    names = [id2label[i] for i in ids]
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1_weighted": float(f1_score(labels, preds, labels=ids, average="weighted", zero_division=0)),
        "report": classification_report(
            labels, preds, labels=ids, target_names=names, output_dict=True, zero_division=0
        ),
        "confusion_matrix": confusion_matrix(labels, preds, labels=ids).tolist(),
        "labels": names,
    }


def format_report(metrics: dict[str, Any]) -> str:
    """The per-class report as the familiar text table."""
    rows = [f"{'':>14} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"]
    for name in metrics["labels"]:
        r = metrics["report"][name]
        rows.append(f"{name:>14} {r['precision']:9.4f} {r['recall']:9.4f} {r['f1-score']:9.4f} {int(r['support']):9d}")
    rows.append(f"{'accuracy':>14} {metrics['accuracy']:9.4f}   weighted F1 {metrics['f1_weighted']:.4f}")
    return "\n".join(rows)
