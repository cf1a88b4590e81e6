"""The figures that depend on the task: a confusion matrix (one label), per-label scores and confusions (label
sets), predicted against true scores (regression), and the reliability diagram of calibrated probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from qlora_helpers.figures import COLORS, save_figure


def plot_confusion_matrix(
    matrix: list[list[int]], labels: list[str], directory: str | Path, title: str = "Test set", caption: str = ""
) -> Path:
    """Counts and row-normalised shares (recall per true class) in each cell."""
    m = np.asarray(matrix)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(1.6 * len(labels) + 2.5, 1.4 * len(labels) + 1.8))
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{m[i, j]}\n{share[i, j]:.1%}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=10,
            )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: accuracy {np.trace(m) / max(m.sum(), 1):.1%}")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    if caption:
        fig.suptitle(caption, fontsize=9, color="gray")
    return save_figure(fig, directory, "confusion_matrix.png")


def plot_per_label_scores(
    metrics: dict[str, Any], directory: str | Path, title: str = "Test set", caption: str = ""
) -> Path:
    """Precision, recall and F1 of every label, sorted by F1, with each label's support: where a
    multi-label model is good, and which rare labels it misses."""
    names = metrics["labels"]
    report = metrics["report"]
    order = sorted(names, key=lambda n: report[n]["f1-score"])
    y = np.arange(len(order))
    fig = Figure(figsize=(9, 0.26 * len(order) + 1.8))
    ax = fig.subplots()
    for k, (key, label) in enumerate((("precision", "precision"), ("recall", "recall"), ("f1-score", "F1"))):
        ax.barh(y + (k - 1) * 0.27, [report[n][key] for n in order], 0.27, label=label, color=COLORS[k])
    ax.set_yticks(y, [f"{n} ({int(report[n]['support'])})" for n in order], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (label support in brackets)")
    ax.set_title(f"{title}: macro-F1 {metrics['f1_macro']:.3f}, micro-F1 {metrics['f1_micro']:.3f}")
    ax.legend(frameon=False, loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    if caption:
        fig.suptitle(caption, fontsize=9, color="gray")
    return save_figure(fig, directory, "per_label_scores.png")


def plot_label_confusion(
    labels: np.ndarray, preds: np.ndarray, names: list[str], directory: str | Path, caption: str = ""
) -> Path:
    """For the texts that carry label i (row), the share predicted with label j (column): the diagonal
    is recall, and bright cells off it show which labels the model mixes up. Readable at 28 labels."""
    labels, preds = np.asarray(labels).astype(int), np.asarray(preds).astype(int)
    share = (labels.T @ preds) / np.maximum(labels.sum(axis=0)[:, None], 1)
    size = 0.32 * len(names) + 3
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title("Test set: share of texts with the true label that got each predicted label", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of texts carrying the true label")
    if caption:
        fig.suptitle(caption, fontsize=9, color="gray")
    return save_figure(fig, directory, "label_confusion.png")


def plot_scores_scatter(
    targets: np.ndarray, predictions: np.ndarray, directory: str | Path, title: str = "Test set", caption: str = ""
) -> Path:
    """Predicted against true scores, with the line where they agree: a regression's confusion matrix."""
    targets, predictions = np.asarray(targets, dtype=float), np.asarray(predictions, dtype=float)
    fig = Figure(figsize=(5.5, 5.2))
    ax = fig.subplots()
    ax.scatter(targets, predictions, s=8, alpha=0.35, color=COLORS[0], edgecolors="none")
    low, high = float(min(targets.min(), predictions.min())), float(max(targets.max(), predictions.max()))
    ax.plot([low, high], [low, high], color="gray", lw=1, ls="--", label="predicted = true")
    ax.set_xlabel("true score")
    ax.set_ylabel("predicted score")
    ax.set_title(f"{title}: {len(targets):,} scores")
    ax.legend(frameon=False, loc="upper left")
    ax.grid(alpha=0.3)
    if caption:
        fig.suptitle(caption, fontsize=9, color="gray")
    return save_figure(fig, directory, "scores_scatter.png")


def plot_reliability(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], directory: str | Path, caption: str = "", judged: str = ""
) -> Path:
    """Reliability diagram: observed frequency against stated probability (15 equal-width bins, scikit-learn's
    `calibration_curve`), one line per set of probabilities (e.g. before and after temperature scaling), and how
    many predictions each bin holds."""
    from sklearn.calibration import calibration_curve

    from qlora_helpers.tasks.metrics import BINS, expected_calibration_error

    fig = Figure(figsize=(10, 4.2))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    ax1.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    edges = np.linspace(0, 1, BINS + 1)
    for k, (name, (confidence, hit)) in enumerate(curves.items()):
        observed, stated = calibration_curve(hit, confidence, n_bins=BINS, strategy="uniform")
        ece = expected_calibration_error(confidence, hit)
        ax1.plot(stated, observed, marker="o", color=COLORS[k], label=f"{name} (ECE {ece:.3f})")
        ax2.hist(confidence, bins=edges, color=COLORS[k], alpha=0.5, label=name)
    ax1.set(xlabel="stated probability", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
    ax1.set_title(f"Reliability on the test split ({judged})" if judged else "Reliability on the test split")
    ax1.legend(loc="upper left", fontsize=8)
    ax2.set(xlabel="stated probability", ylabel="predictions", yscale="log", title="Predictions per bin")
    ax2.legend(fontsize=8)
    if caption:
        fig.suptitle(caption, fontsize=9, color="gray")
    return save_figure(fig, directory, "reliability_diagram.png")
