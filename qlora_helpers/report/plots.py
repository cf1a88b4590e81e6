"""The run's own plots: dataset statistics, learning curves, and a tuning study's trials.

Written to the run's plots folder (`OUTPUT_DIR/plots` unless --plots-dir), or to `Data/` for the notebook's run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from qlora_helpers.figures import COLORS, save_figure


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
