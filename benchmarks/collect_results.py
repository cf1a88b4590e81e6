"""Merge the lent GPU's outputs ($OUT folders fetched under /work/.device/N/) into the committed result files.

python benchmarks/collect_results.py accuracy OUT.json DIR/accuracy/*.json   # recipe comparison, with summary
python benchmarks/collect_results.py scaling OUT.json DIR/scaling             # 1 vs 2 GPUs (first session's names)
python benchmarks/collect_results.py seeds OUT.json DIR/scaling               # NAME-gpuN-sSEED runs, paired by seed
python benchmarks/collect_results.py runs OUT.json DIR LABEL COMMAND          # every NAME.metrics.json in DIR, in order
"""
import json
import re
import statistics
import sys
from pathlib import Path

from qlora_helpers.bench import summarise_recipes


# what each run record keeps of a metrics.json ("command" is added by gpu_scaling.sh)
RUN_FIELDS = ("world_size", "effective_batch_size", "optimizer_steps", "steps_per_epoch", "train_runtime_s",
              "train_samples_per_second", "train_step_samples_per_second", "peak_gpu_memory_mb", "test_accuracy",
              "best_val_accuracy", "compute_dtype", "device", "command")


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
        runs[name] = {k: m.get(k) for k in RUN_FIELDS if k != "command"}
        runs[name]["per_rank"] = (d / f"{name}.ranks.txt").read_text().strip().splitlines() if (d / f"{name}.ranks.txt").exists() else []
        runs[name]["config"] = {k: m["config"][k] for k in ("model", "batch_size", "grad_accum", "lr", "epochs", "seed")}
    one, two = runs["gpu1"], runs["gpu2"]
    return {"label": "data parallel scaling: the default recipe on 1 and 2 GPUs (MiniLM, 20k IMDb, 2 epochs)",
            "command": "bash benchmarks/gpu_scaling.sh, then EQUAL_BATCH=1 bash benchmarks/gpu_scaling.sh "
                       "(kind nvidia-h200-x2, carry .carry)",
            "env": (d / "env.txt").read_text().strip().splitlines(), "runs": runs,
            "speedup_training_steps": round(two["train_step_samples_per_second"] / one["train_step_samples_per_second"], 3),
            "speedup_whole_run": round(two["train_samples_per_second"] / one["train_samples_per_second"], 3)}


def seeds(output: Path, folder: str) -> dict:
    """Runs named NAME-gpu1-sSEED and NAME-gpu2-sSEED (gpu_scaling.sh with SEEDS=...): each seed's 2-GPU run
    against its own 1-GPU run (same data split, same machine, run one after the other), then mean and spread."""
    d = Path(folder)
    groups: dict[str, dict[int, dict]] = {}
    for f in sorted(d.glob("*.metrics.json")):
        name, gpus, seed = re.fullmatch(r"(.+)-gpu(\d)-s(\d+)\.metrics\.json", f.name).groups()
        m = json.loads(f.read_text())
        groups.setdefault(name, {}).setdefault(int(seed), {})[f"gpu{gpus}"] = {k: m.get(k) for k in RUN_FIELDS}
    summary = {}
    for name, by_seed in groups.items():
        pairs = [runs for runs in by_seed.values() if {"gpu1", "gpu2"} <= set(runs)]
        ratio = lambda key: [round(p["gpu2"][key] / p["gpu1"][key], 3) for p in pairs]  # noqa: E731
        acc = {g: [p[g]["test_accuracy"] for p in pairs] for g in ("gpu1", "gpu2")}
        summary[name] = {
            "seeds": sorted(s for s, runs in by_seed.items() if {"gpu1", "gpu2"} <= set(runs)),
            "speedup_training_steps": ratio("train_step_samples_per_second"),
            "speedup_whole_run": ratio("train_samples_per_second"),
            "mean_speedup_training_steps": round(statistics.mean(ratio("train_step_samples_per_second")), 3),
            "mean_speedup_whole_run": round(statistics.mean(ratio("train_samples_per_second")), 3),
            "test_accuracy_mean": {g: round(statistics.mean(a), 4) for g, a in acc.items()},
            "test_accuracy_sd": {g: round(statistics.stdev(a), 4) if len(a) > 1 else None for g, a in acc.items()},
            "test_accuracy_paired_difference": [round(b - a, 4) for a, b in zip(acc["gpu1"], acc["gpu2"])],
        }
    return {"label": "data parallel scaling, 1 vs 2 GPUs, paired by seed", "env": (d / "env.txt").read_text().strip().splitlines(),
            "runs": {name: {str(s): r for s, r in sorted(by_seed.items())} for name, by_seed in groups.items()},
            "summary": summary}


def runs(output: Path, folder: str, label: str, command: str) -> dict:
    """Short A/B runs, one metrics.json each, listed in the order they finished: on a lent machine the order
    matters, since its speed drifts between runs."""
    found = {f.name.removesuffix(".metrics.json"): json.loads(f.read_text()) for f in Path(folder).glob("*.metrics.json")}
    keep = tuple(k for k in RUN_FIELDS if k != "command") + ("train_step_ms", "finished_at")
    flags = ("seed", "dataloader_workers", "cudnn_attention")
    records = {}
    for name, m in sorted(found.items(), key=lambda item: item[1]["finished_at"]):
        records[name] = {**{k: m.get(k) for k in keep}, "flags": {k: m["config"][k] for k in flags if k in m["config"]}}
    versions = sorted({json.dumps(m.get("versions"), sort_keys=True) for m in found.values()})
    return {"label": label, "command": command, "versions": [json.loads(v) for v in versions], "runs": records,
            "summary": interleaved_summary(records) or {n: r["train_step_samples_per_second"] for n, r in records.items()}}


def interleaved_summary(records: dict[str, dict]) -> dict:
    """For runs named ARM-gpuN-rROUND (host_levers_ab.sh): each arm's samples/s per round on 1 and 2 GPUs, the
    2-GPU/1-GPU ratio within each round, and the arm against the first arm's same run of the same round."""
    table: dict[str, dict[str, dict[int, float]]] = {}
    for name, r in records.items():
        match = re.fullmatch(r"(.+)-gpu(\d)-r(\d+)", name)
        if match and r["train_step_samples_per_second"]:
            arm, gpus, rnd = match.groups()
            table.setdefault(arm, {}).setdefault(f"gpu{gpus}", {})[int(rnd)] = r["train_step_samples_per_second"]
    if not table:
        return {}
    base = next(iter(table))
    summary = {}
    for arm, by_gpus in table.items():
        one, two = by_gpus.get("gpu1", {}), by_gpus.get("gpu2", {})
        entry = {"gpu1": one, "gpu2": two,
                 "speedup_per_round": {k: round(two[k] / one[k], 3) for k in sorted(one.keys() & two.keys())}}
        for g, runs in by_gpus.items():
            ref = table[base].get(g, {})
            entry[f"{g}_vs_{base}"] = {k: round(runs[k] / ref[k], 3) for k in sorted(runs.keys() & ref.keys())}
        summary[arm] = entry
    return summary


if __name__ == "__main__":
    kind, out = sys.argv[1], Path(sys.argv[2])
    result = {"accuracy": lambda: accuracy(out, sys.argv[3:]), "scaling": lambda: scaling(out, sys.argv[3]),
              "seeds": lambda: seeds(out, sys.argv[3]), "runs": lambda: runs(out, *sys.argv[3:6])}[kind]()
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result.get("summary") or {k: result[k] for k in ("speedup_training_steps", "speedup_whole_run")}, indent=1))
