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
    fig = Figure(figsize=(12, 4.2))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    splits = list(label_counts)
    names = list(next(iter(label_counts.values())))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        counts = [label_counts[s].get(name, 0) for s in splits]
        bars = ax1.bar(np.arange(len(splits)) + j * width, counts, width, label=name, color=COLORS[j % len(COLORS)])
        ax1.bar_label(bars, fontsize=8)
    ax1.set_xticks(np.arange(len(splits)) + width * (len(names) - 1) / 2, splits)
    ax1.set_ylabel("reviews")
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
    log_history: list[dict[str, Any]], directory: str | Path, steps_per_epoch: int | None = None, caption: str = ""
) -> Path:
    """Training and validation loss, and validation accuracy, against optimizer steps."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "eval_loss" not in h]
    evals = [(h["step"], h["eval_loss"], h.get("eval_accuracy")) for h in log_history if "eval_loss" in h]
    fig = Figure(figsize=(12, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    if train:
        ax1.plot(*zip(*train), color=COLORS[0], lw=1.5, label="training loss")
    if evals:
        ax1.plot([e[0] for e in evals], [e[1] for e in evals], "o-", color=COLORS[1], label="validation loss")
        ax2.plot(
            [e[0] for e in evals], [100 * e[2] for e in evals], "o-", color=COLORS[2], label="validation accuracy"
        )
        best = max(evals, key=lambda e: e[2])
        ax2.annotate(
            f"best {100 * best[2]:.1f}% @ step {best[0]}",
            (best[0], 100 * best[2]),
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
    ax1.set_ylabel("cross-entropy loss")
    ax1.set_title("Loss")
    ax2.set_ylabel("accuracy (%)")
    ax2.set_title("Validation accuracy" + (" (dotted lines: epochs)" if steps_per_epoch else ""))
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
