"""Merge the lent GPU's outputs ($OUT folders fetched under /work/.device/N/) into the committed result files.

python benchmarks/collect_results.py accuracy OUT.json DIR/accuracy/*.json   # recipe comparison, with summary
python benchmarks/collect_results.py scaling OUT.json DIR/scaling             # 1 vs 2 GPUs
"""
import json
import sys
from pathlib import Path

from qlora_helpers.bench import summarise_recipes


def accuracy(output: Path, files: list[str]) -> dict:
    parts = [json.loads(Path(f).read_text()) for f in files]
    records = [r for p in parts for r in p["records"]]
    return {"label": "recipes on real data: all-MiniLM-L6-v2, 20k IMDb reviews, 3 epochs",
            "commands": [p["command"] for p in parts], "dates": [p["date"] for p in parts], "gpu": parts[0]["gpu"],
            "records": records, "summary": summarise_recipes(records)}


def scaling(output: Path, folder: str) -> dict:
    d = Path(folder)
    runs = {}
    for name in ("gpu1", "gpu2", "gpu2_b32"):  # gpu2_b32: EQUAL_BATCH=1 (2 x 32 = the 1-GPU run's batch 64)
        if not (d / f"{name}.metrics.json").exists():
            continue
        m = json.loads((d / f"{name}.metrics.json").read_text())
        runs[name] = {k: m.get(k) for k in ("world_size", "effective_batch_size", "optimizer_steps", "steps_per_epoch",
                                            "train_runtime_s", "train_samples_per_second",
                                            "train_step_samples_per_second", "peak_gpu_memory_mb", "test_accuracy",
                                            "best_val_accuracy", "compute_dtype", "device")}
        runs[name]["per_rank"] = (d / f"{name}.ranks.txt").read_text().strip().splitlines() if (d / f"{name}.ranks.txt").exists() else []
        runs[name]["config"] = {k: m["config"][k] for k in ("model", "batch_size", "grad_accum", "lr", "epochs", "seed")}
    one, two = runs["gpu1"], runs["gpu2"]
    return {"label": "data parallel scaling: the default recipe on 1 and 2 GPUs (MiniLM, 20k IMDb, 2 epochs)",
            "command": "bash benchmarks/gpu_scaling.sh, then EQUAL_BATCH=1 bash benchmarks/gpu_scaling.sh "
                       "(kind nvidia-h200-x2, carry .carry)",
            "env": (d / "env.txt").read_text().strip().splitlines(), "runs": runs,
            "speedup_training_steps": round(two["train_step_samples_per_second"] / one["train_step_samples_per_second"], 3),
            "speedup_whole_run": round(two["train_samples_per_second"] / one["train_samples_per_second"], 3)}


if __name__ == "__main__":
    kind, out = sys.argv[1], Path(sys.argv[2])
    result = accuracy(out, sys.argv[3:]) if kind == "accuracy" else scaling(out, sys.argv[3])
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result.get("summary") or {k: result[k] for k in ("speedup_training_steps", "speedup_whole_run")}, indent=1))
