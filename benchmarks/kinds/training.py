"""The runner's training kinds: `train` (variants x seeds, each a real `qlora-bert train` scored on the experiment's
test split) and `scaling` (1 GPU against every GPU, the same runs under torchrun)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.experiment import (
    ONLY,
    SEEDS,
    cli,
    evaluate_test_split,
    expand,
    make_subset_file,
    make_unseen_file,
    run_fields,
    train_flags,
    write,
)


def run_train(spec, settings, output):
    """Whole `train` runs of named variants and seeds, each in its own process; optionally evaluated on
    reviews the training data never held (`unseen`), to check that a choice made on validation generalises,
    and re-evaluated on their own test split with other `evaluate` flags (`test_evaluations`, e.g. windows)."""
    unseen = make_unseen_file(expand(spec["unseen"])) if spec.get("unseen") else None
    if spec.get("subset"):
        settings = {**settings, "dataset": str(make_subset_file(expand(spec["subset"])))}
    records = []
    for variant in [v for v in spec["variants"] if not ONLY or v["name"] in ONLY]:
        for seed in SEEDS or variant.get("seeds", spec.get("seeds", [settings.get("seed", 42)])):
            own = {
                **settings,
                **expand(variant.get("set", {})),
                "seed": seed,
                "output_dir": f"{settings['output_dir']}-{variant['name']}-s{seed}",
            }
            profile = variant.get("profile", spec.get("profile", "full"))
            code = cli(["train", "--profile", profile, *train_flags(own)], variant.get("memory_cap_gib"))
            record = {"variant": variant["name"], "seed": seed, "settings": variant.get("set", {}), "exit": code}
            if variant.get("memory_cap_gib"):
                record["memory_cap_gib"] = variant["memory_cap_gib"]
            finished = run_fields(own["output_dir"])
            if finished is not None:
                record.update(finished)
                if unseen:
                    evaluation = Path(own["output_dir"]) / "unseen.json"
                    cli(
                        [
                            "evaluate",
                            "--adapter",
                            own["output_dir"],
                            "--dataset",
                            str(unseen),
                            "--output",
                            str(evaluation),
                        ]
                    )
                    scores = json.loads(evaluation.read_text())
                    record.update(unseen_accuracy=scores["accuracy"], unseen_rows=scores["rows"])
                for extra in spec.get("test_evaluations", []):
                    record.setdefault("test_evaluations", {})[extra["name"]] = evaluate_test_split(
                        own["output_dir"], extra["flags"]
                    )
            records.append(record)
            print(
                json.dumps(
                    {
                        k: record.get(k)
                        for k in (
                            "variant",
                            "seed",
                            "epochs",
                            "optimizer_steps",
                            "best_val_accuracy",
                            "best_val_f1_macro",
                            "best_val_spearman",
                            "test_accuracy",
                            "test_spearman",
                            "test_f1_macro",
                            "test_f1_positive",
                            "test_f1_micro",
                            "test_at_threshold_0.5",
                            "unseen_accuracy",
                            "test_evaluations",
                            "train_runtime_s",
                        )
                    }
                ),
                flush=True,
            )
            write(output, {"records": records, "unseen": spec.get("unseen")})
    return {"records": records, "unseen": spec.get("unseen")}


def run_scaling(spec, settings, output):
    """The same `train` on 1 and N GPUs (torchrun), seed by seed, each launch its own process group.

    `variants` (default: one, `default`) change settings and may name their own `gpus` and `seeds`; runs go
    seed by seed, so the 1- and N-GPU runs of a seed follow each other. Each record keeps the process's
    wall time, compile wait and start-up included.
    """
    records = []
    variants = [v for v in spec.get("variants", [{"name": "default"}]) if not ONLY or v["name"] in ONLY]
    seeds = SEEDS or sorted({s for v in variants for s in v.get("seeds", spec.get("seeds", [42]))})
    for seed in seeds:
        for variant in variants:
            if seed not in (SEEDS or variant.get("seeds", spec.get("seeds", [42]))):
                continue
            for gpus in variant.get("gpus", spec.get("gpus", [1, 2])):
                name = variant["name"]
                own = {
                    **settings,
                    **expand(variant.get("set", {})),
                    "seed": seed,
                    "output_dir": f"{settings['output_dir']}-{name}-gpu{gpus}-s{seed}",
                }
                launcher = (
                    [sys.executable]
                    if gpus == 1
                    else [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(gpus)]
                )
                one_gpu = {"CUDA_VISIBLE_DEVICES": os.environ.get("BENCH_GPU", "0")} if gpus == 1 else {}
                started = time.perf_counter()
                command = [*launcher, "-m", "qlora_helpers", "train", *train_flags(own)]
                code = subprocess.run(command, env={**os.environ, **one_gpu}).returncode
                wall = round(time.perf_counter() - started, 2)
                finished = run_fields(own["output_dir"])
                records.append(
                    {
                        "variant": name,
                        "gpus": gpus,
                        "seed": seed,
                        "settings": variant.get("set", {}),
                        "exit": code,
                        "wall_seconds": wall,
                        **(finished or {"error": "no metrics.json"}),
                    }
                )
                print(json.dumps({k: records[-1].get(k) for k in SCALING_SHOWN}), flush=True)
                write(output, {"records": records})
    return {"records": records}


SCALING_SHOWN = (
    "variant",
    "gpus",
    "seed",
    "exit",
    "wall_seconds",
    "first_step_seconds",
    "train_step_samples_per_second",
    "test_accuracy",
    "optimizer_steps",
)
