"""The README's figures, drawn from the committed result files in `benchmarks/results/` (never from typed-in
numbers) into `benchmarks/figures/`, where no training run writes: `python -m benchmarks.run figures`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from qlora_helpers.figures import COLORS, save_figure
from qlora_helpers.report.results import FIGURES_DIR, RESULTS_DIR, load_result

ARM_LABELS = {
    "full_fp32": "full FT\nfp32",
    "full_16bit": "full FT\n16-bit autocast",
    "lora_16bit": "LoRA\n16-bit base",
    "qlora": "QLoRA\nNF4 + DQ",
}


def model_name(path: str) -> str:
    """A readable model name for titles: a random-weight copy of bert-base is named as such, never by its temp dir."""
    name = Path(path).name.lower()
    if "minilm" in name:
        return "all-MiniLM-L6-v2"
    if "random" in name or "bert-base-shape" in name:
        return "bert-base-uncased shapes (random weights)"
    return Path(path).name


def _by_arm(records: list[dict[str, Any]], ckpt: bool) -> dict[str, dict[str, Any]]:
    return {r["arm"]: r for r in records if r.get("gradient_checkpointing") == ckpt and "error" not in r}


def plot_efficiency(efficiency: dict[str, Any], accuracy: dict[str, Any] | None, directory: str | Path) -> Path:
    """Measured peak memory and throughput per arm (checkpointing on/off), weight arithmetic apart, accuracy."""
    records = efficiency["records"]
    arms = [a for a in ARM_LABELS if any(r["arm"] == a for r in records)]
    on, off = _by_arm(records, True), _by_arm(records, False)
    x = np.arange(len(arms))
    fig = Figure(figsize=(13, 9))
    (ax1, ax2), (ax3, ax4) = fig.subplots(2, 2)
    for ax, key, title, unit in (
        (ax1, "peak_allocated_mb", "Peak GPU memory allocated while training", "MiB"),
        (ax2, "samples_per_second", "Training throughput (after warm-up)", "samples / s"),
    ):
        for j, (runs, name) in enumerate(((on, "checkpointing on"), (off, "checkpointing off"))):
            vals = [runs[a][key] if a in runs else np.nan for a in arms]
            bars = ax.bar(x + (j - 0.5) * 0.38, vals, 0.38, color=COLORS[j], label=name)
            ax.bar_label(bars, fmt="%.0f", fontsize=8)
        ax.set_xticks(x, [ARM_LABELS[a] for a in arms], fontsize=9)
        ax.set_ylim(0, 1.18 * max(r[key] for r in records if r.get(key)))
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend(frameon=False)
    first = next(iter(on.values()) if on else iter(off.values()))
    ax1.text(
        0.01,
        0.97,
        f"{model_name(first['model'])}, batch {first['batch_size']} x {first['max_length']} tokens",
        transform=ax1.transAxes,
        va="top",
        fontsize=8,
        color="gray",
    )

    measured = [(on.get(a) or off.get(a))["weight_memory_mb"] for a in arms]
    arithmetic = [(on.get(a) or off.get(a))["weight_arithmetic_mb"] for a in arms]
    ax3.bar(
        x - 0.19, arithmetic, 0.38, color="white", edgecolor=COLORS[4], hatch="//", label="arithmetic (not measured)"
    )
    bars = ax3.bar(x + 0.19, measured, 0.38, color=COLORS[4], label="measured after load")
    ax3.bar_label(bars, fmt="%.0f", fontsize=8)
    ax3.set_xticks(x, [ARM_LABELS[a] for a in arms], fontsize=9)
    ax3.set_ylabel("MiB")
    ax3.set_title("Weights alone: arithmetic vs measured")
    ax3.legend(frameon=False)

    if accuracy:
        acc = {r["arm"]: r for r in accuracy["records"] if r.get("test_accuracy") is not None}
        names = [a for a in ARM_LABELS if a in acc]
        bars = ax4.bar(np.arange(len(names)), [100 * acc[a]["test_accuracy"] for a in names], 0.6, color=COLORS[2])
        ax4.bar_label(bars, fmt="%.1f", fontsize=9)
        lo = min(100 * acc[a]["test_accuracy"] for a in names)
        ax4.set_ylim(max(0, lo - 8), 100)
        ax4.set_xticks(np.arange(len(names)), [ARM_LABELS[a] for a in names], fontsize=9)
        ax4.set_ylabel("test accuracy (%)")
        any_acc = next(iter(acc.values()))
        ax4.set_title(f"Test accuracy: {model_name(any_acc['model'])}, {any_acc['train_rows']:,} training reviews")
    else:
        ax4.axis("off")
    title = f"Memory, speed, weights: {efficiency['gpu']}, {efficiency['date'][:10]}"
    if accuracy:
        title += f"; accuracy: {accuracy['gpu']}, {accuracy['date'][:10]}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, directory, "efficiency_comparison.png")


def plot_rank_sensitivity(ranks: dict[str, Any], directory: str | Path) -> Path:
    """For each LoRA rank: measured test/validation accuracy, trainable parameters and peak memory."""
    recs = sorted((r for r in ranks["records"] if "error" not in r), key=lambda r: r["lora_r"])
    rs = [r["lora_r"] for r in recs]
    fig = Figure(figsize=(12, 4.5))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(rs, [100 * r["test_accuracy"] for r in recs], "o-", color=COLORS[2], label="test accuracy")
    ax1.plot(
        rs, [100 * r["best_val_accuracy"] for r in recs], "s--", color=COLORS[1], label="best validation accuracy"
    )
    for r in recs:
        ax1.annotate(
            f"{100 * r['test_accuracy']:.1f}",
            (r["lora_r"], 100 * r["test_accuracy"]),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
        )
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(rs, [str(r) for r in rs])
    ax1.set_xlabel("LoRA rank r (alpha = 2r)")
    ax1.set_ylabel("accuracy (%)")
    ax1.set_title("Measured accuracy by rank")
    ax1.grid(alpha=0.3)
    ax1.legend(frameon=False)
    bars = ax2.bar(
        range(len(rs)), [r["trainable_params"] / 1e3 for r in recs], color=COLORS[0], label="trainable parameters"
    )
    ax2.bar_label(bars, fmt="%.0fk", fontsize=8)
    ax2.set_xticks(range(len(rs)), [str(r) for r in rs])
    ax2.set_xlabel("LoRA rank r")
    ax2.set_ylabel("trainable parameters (thousands)")
    twin = ax2.twinx()
    twin.plot(range(len(rs)), [r["peak_allocated_mb"] for r in recs], "o-", color=COLORS[3], label="peak memory (MiB)")
    twin.set_ylabel("peak GPU memory allocated (MiB)")
    lo, hi = min(r["peak_allocated_mb"] for r in recs), max(r["peak_allocated_mb"] for r in recs)
    twin.set_ylim(0, hi * 1.3)
    ax2.set_title(f"Parameters and measured peak memory ({lo:.0f}-{hi:.0f} MiB)")
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, frameon=False, loc="upper left")
    first = recs[0]
    fig.suptitle(
        f"QLoRA rank sweep, {model_name(first['model'])}, {first['train_rows']:,} training reviews, "
        f"measured on {ranks['gpu']} ({ranks['date'][:10]})",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, directory, "lora_rank_sensitivity.png")


def draw_all(results_dir: str | Path = RESULTS_DIR, directory: str | Path = FIGURES_DIR) -> list[Path]:
    """Redraw every benchmark plot from the committed result files that exist."""
    results_dir = Path(results_dir)
    paths = []
    eff, acc, rank = (
        results_dir / n
        for n in ("efficiency_bert_base_shapes.json", "accuracy_minilm_imdb.json", "lora_rank_sensitivity_minilm.json")
    )
    if eff.is_file():
        paths.append(plot_efficiency(load_result(eff), load_result(acc) if acc.is_file() else None, directory))
    if rank.is_file():
        paths.append(plot_rank_sensitivity(load_result(rank), directory))
    return paths
