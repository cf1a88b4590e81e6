"""The runner's `recipes` kind: the reference preset against the default recipe (and full fine-tuning), each run in
its own process, with a summary per (preset, arm) over seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.harness import measure_arm, result_payload, write_result
from qlora_helpers.presets import REFERENCE_RECIPE

RECIPE_RUNS = (("reference", "qlora"), ("full", "qlora"), ("full", "full_16bit"))


def compare_recipes(
    settings: dict[str, Any],
    seeds: list[int],
    output: Path,
    runs=RECIPE_RUNS,
    warmup_steps: int = 5,
    evaluate_test: bool = True,
    label: str = "recipes",
    changes: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The reference preset against the default recipe (and full fine-tuning), each run in its own process.

    `settings` (model, data, epochs, ...) apply to every run; everything else is each preset's own.
    A summary per (preset, arm) gives the mean over seeds and the ratios to the reference.
    """
    records: list[dict[str, Any]] = []
    for seed in seeds:
        for profile, arm in runs:
            own = {**settings, **(changes or {}).get(profile, {}), "seed": seed}
            records.append(measure_arm(arm, own, warmup_steps, evaluate_test, profile))
            write_result(output, {**result_payload(label, records), "summary": summarise_recipes(records)})
    return json.loads(output.read_text())


def summarise_recipes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean (and spread) of accuracy, samples/s and peak memory per (preset, arm), with ratios to the reference."""
    import statistics

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:  # runs of a preset with a lever changed (--set) form their own group
        if "error" not in r:
            key = (r["profile"], r["arm"], tuple(r.get("target_modules") or ()), r.get("lr"), r.get("batch_size"))
            groups.setdefault(key, []).append(r)

    def mean(rows, key):
        values = [row[key] for row in rows if row.get(key) is not None]
        return round(statistics.fmean(values), 4) if values else None

    out = []
    for (profile, arm, targets, lr, batch), rows in groups.items():
        accs = [row["test_accuracy"] for row in rows if row.get("test_accuracy") is not None]
        out.append(
            {
                "profile": profile,
                "arm": arm,
                "target_modules": list(targets),
                "lr": lr,
                "batch_size": batch,
                "runs": len(rows),
                "seeds": [row["seed"] for row in rows],
                "test_accuracy_mean": mean(rows, "test_accuracy"),
                "test_accuracy_sd": round(statistics.stdev(accs), 4) if len(accs) > 1 else None,
                "samples_per_second": mean(rows, "samples_per_second"),
                "seconds_per_epoch": mean(rows, "seconds_per_epoch"),
                "peak_allocated_mb": mean(rows, "peak_allocated_mb"),
            }
        )
    # the reference is the reference preset's QLoRA run with none of its settings changed by --set
    as_preset = (REFERENCE_RECIPE["lr"], REFERENCE_RECIPE["batch_size"], REFERENCE_RECIPE["target_modules"])
    ref = next(
        (
            s
            for s in out
            if (s["profile"], s["arm"]) == ("reference", "qlora")
            and (s["lr"], s["batch_size"], s["target_modules"]) == as_preset
        ),
        None,
    )
    for s in out:
        if ref and ref["samples_per_second"] and s["samples_per_second"]:
            s["speedup_vs_reference"] = round(s["samples_per_second"] / ref["samples_per_second"], 2)
        if ref and ref["peak_allocated_mb"] and s["peak_allocated_mb"]:
            s["peak_memory_vs_reference"] = round(s["peak_allocated_mb"] / ref["peak_allocated_mb"], 2)
    return out
