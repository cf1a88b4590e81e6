"""Plots written to `Data/` (or any directory): dataset statistics, learning curves, confusion matrix.

Figures are built with matplotlib's object API, so they render the same in a notebook, a terminal or CI
(no display needed), and each function returns the path of the PNG it wrote.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]


def model_display_name(model: str) -> str:
    """A model as a reader knows it: the Hub id, or a local directory's own name (never its absolute path)."""
    path = Path(model)
    if "minilm" in model.lower():
        return "all-MiniLM-L6-v2"
    return path.name if path.is_absolute() or model.startswith((".", "~")) or path.exists() else model


def run_caption(model: str, profile: str, device: str, when: datetime | None = None) -> str:
    """What a run plot shows, in one line: model, profile, device and date."""
    day = (when or datetime.now(timezone.utc)).strftime("%Y-%m-%d")
    return f"{model_display_name(model)} - profile {profile} - {device} - {day}"


def save_figure(fig: Figure, directory: str | Path, name: str) -> Path:
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_dataset_stats(
    label_counts: dict[str, dict[str, int]],
    lengths: np.ndarray,
    max_length: int,
    directory: str | Path,
    caption: str = "",
) -> Path:
    """Label balance per split, and the token-length histogram with the truncation point marked."""
    splits = list(label_counts)
    names = list(next(iter(label_counts.values())))
    many = len(names) > 6
    fig = Figure(figsize=(12, max(4.2, 0.22 * len(names) + 1.5) if many else 4.2))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    if many:  # one row per label: each split's share of rows that carry it
        height = 0.8 / len(splits)
        for k, split in enumerate(splits):
            rows = max(1, sum(label_counts[split].values()))
            shares = [100 * label_counts[split].get(n, 0) / rows for n in names]
            ax1.barh(np.arange(len(names)) + k * height, shares, height, label=split, color=COLORS[k % len(COLORS)])
        ax1.set_yticks(np.arange(len(names)) + height * (len(splits) - 1) / 2, names, fontsize=8)
        ax1.invert_yaxis()
        ax1.set_xlabel("share of the split's label occurrences (%)")
        ax1.set_title("Label balance per split")
        ax1.legend(frameon=False, fontsize=8)
    else:
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            counts = [label_counts[s].get(name, 0) for s in splits]
            bars = ax1.bar(
                np.arange(len(splits)) + j * width, counts, width, label=name, color=COLORS[j % len(COLORS)]
            )
            ax1.bar_label(bars, fontsize=8)
        ax1.set_xticks(np.arange(len(splits)) + width * (len(names) - 1) / 2, splits)
        ax1.set_ylabel("texts")
        ax1.set_title("Label balance per split")
        ax1.legend(frameon=False)

    clipped = np.minimum(lengths, np.percentile(lengths, 99.5))
    ax2.hist(clipped, bins=60, color=COLORS[0], alpha=0.85)
    truncated = float((lengths > max_length).mean())
    ax2.axvline(
        max_length,
        color=COLORS[3],
        lw=2,
        ls="--",
        label=f"max_length = {max_length}: {truncated:.0%} of texts truncated",
    )
    ax2.axvline(np.median(lengths), color="black", lw=1, ls=":", label=f"median {int(np.median(lengths))} tokens")
    ax2.set_xlabel("tokens per text (before truncation; top 0.5% clipped)")
    ax2.set_ylabel("texts")
    ax2.set_title(f"Token lengths ({len(lengths):,} training texts)")
    ax2.legend(frameon=False)
    if caption:
        fig.suptitle(caption, fontsize=9, color="gray")
    return save_figure(fig, directory, "dataset_stats.png")


def plot_training_curves(
    log_history: list[dict[str, Any]],
    directory: str | Path,
    steps_per_epoch: int | None = None,
    caption: str = "",
    metric: str = "accuracy",
) -> Path:
    """Training and validation loss, and the validation metric that selects the checkpoint, against steps."""
    shown = {"accuracy": "accuracy", "f1_macro": "macro-F1 (best single threshold)"}.get(metric, metric)
    scale = 100 if metric in ("accuracy", "f1_macro") else 1  # shares in %, correlations as they are
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "eval_loss" not in h]
    evals = [
        (h["step"], h["eval_loss"], h[f"eval_{metric}"])
        for h in log_history
        if "eval_loss" in h and h.get(f"eval_{metric}") is not None
    ]
    fig = Figure(figsize=(12, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    if train:
        ax1.plot(*zip(*train), color=COLORS[0], lw=1.5, label="training loss")
    if evals:
        ax1.plot([e[0] for e in evals], [e[1] for e in evals], "o-", color=COLORS[1], label="validation loss")
        ax2.plot(
            [e[0] for e in evals], [scale * e[2] for e in evals], "o-", color=COLORS[2], label=f"validation {shown}"
        )
        best = max(evals, key=lambda e: e[2])
        ax2.annotate(
            f"best {scale * best[2]:.{1 if scale == 100 else 3}f}{'%' if scale == 100 else ''} @ step {best[0]}",
            (best[0], scale * best[2]),
            textcoords="offset points",
            xytext=(0, -18),
            ha="center",
            fontsize=9,
        )
    for ax in (ax1, ax2):
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
        if steps_per_epoch:
            last = max([s for s, *_ in train + evals] or [0])
            for k in range(1, int(last // steps_per_epoch) + 1):
                ax.axvline(k * steps_per_epoch, color="gray", lw=0.7, ls=":")
    ax1.set_ylabel({"accuracy": "cross-entropy", "f1_macro": "binary cross-entropy"}.get(metric, "squared error"))
    ax1.set_title("Loss")
    ax2.set_ylabel(f"{shown} (%)" if scale == 100 else shown)
    ax2.set_title(f"Validation {shown}" + (" (dotted lines: epochs)" if steps_per_epoch else ""))
    if caption:
        fig.suptitle(caption, fontsize=9, color="gray")
    return save_figure(fig, directory, "training_curves.png")


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


def plot_study(
    trials: list[dict[str, Any]], importances: dict[str, float], metric: str, directory: str | Path, caption: str = ""
) -> Path:
    """A tuning study: each trial's validation score (pruned ones at their best before they stopped, failed ones
    as crosses along the bottom) with the best so far, and how much each setting mattered (Optuna's fANOVA
    importances, once enough trials finished)."""
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 4.2))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"wspace": 0.45})
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    done = [(t["number"], t["value"]) for t in trials if t["state"] == "complete" and t["value"] is not None]
    pruned = [(t["number"], t["value"]) for t in trials if t["state"] == "pruned" and t["value"] is not None]
    failed = [t["number"] for t in trials if t["state"] == "fail"]
    if done:
        ax1.plot(*zip(*done), "o", color=COLORS[0], label="finished")
        best, line = -np.inf, []
        for number, value in sorted(done):
            best = max(best, value)
            line.append((number, best))
        ax1.step(*zip(*line), where="post", color=COLORS[2], label="best so far")
    if pruned:
        ax1.plot(*zip(*pruned), "o", mfc="none", color=COLORS[1], label="pruned (best before it stopped)")
    if failed:
        ax1.plot(
            failed, [0.03] * len(failed), "x", color=COLORS[3], transform=ax1.get_xaxis_transform(), label="failed"
        )
    ax1.set_xlabel("trial")
    ax1.set_ylabel(f"validation {metric}")
    ax1.set_title(f"Validation {metric} by trial")
    ax1.grid(alpha=0.3)
    ax1.legend(frameon=False, fontsize=8)
    if importances:
        names = sorted(importances, key=importances.get)
        ax2.barh(names, [importances[n] for n in names], color=COLORS[4])
        ax2.set_xlabel("importance (share of the score's variance, fANOVA)")
    else:
        ax2.text(0.5, 0.5, "importances need at least three finished\ntrials with different scores", ha="center")
        ax2.set_axis_off()
    ax2.set_title("Which settings mattered")
    if caption:
        fig.suptitle(caption, fontsize=9, color="gray")
    return save_figure(fig, directory, "tune_study.png")


def plot_reliability(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], directory: str | Path, caption: str = "", judged: str = ""
) -> Path:
    """Reliability diagram: observed frequency against stated probability (15 equal-width bins, scikit-learn's
    `calibration_curve`), one line per set of probabilities (e.g. before and after temperature scaling), and how
    many predictions each bin holds."""
    from sklearn.calibration import calibration_curve

    from .calibration import BINS, expected_calibration_error

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
