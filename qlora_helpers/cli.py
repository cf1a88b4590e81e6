"""Command line: `python -m qlora_helpers {train,predict,evaluate} ...`.

Every `train` flag is generated from `TrainConfig`, so the flags, their defaults and their help (the
recipe's reasons) cannot drift from the configuration the notebook and the tests use. Bad input ends
with one line `error: ...` and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from .config import PROFILES, RECIPE_PRESETS, TrainConfig
from .dependencies import INSTALL, check_dependencies
from .errors import UserError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line (with a pointer to --help), like every other error."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message}; see `{self.prog} --help`\n")


def _flag_type(tp: Any) -> tuple[Any, dict[str, Any]]:
    """argparse settings for a dataclass field's type."""
    args = typing.get_args(tp)
    base = next((a for a in args if a is not type(None)), tp) if args else tp
    if typing.get_origin(base) is list:
        return None, {"nargs": "+", "type": str}
    if base is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    return None, {"type": base}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per TrainConfig field; unset flags keep the profile's value."""
    hints = typing.get_type_hints(TrainConfig)
    aliases = {"epochs": [], "lr": ["--learning-rate"]}
    group = parser.add_argument_group("recipe settings (defaults shown are the 'full' profile's)")
    for f in dataclasses.fields(TrainConfig):
        if not f.metadata.get("cli", True):
            continue
        _, kw = _flag_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        group.add_argument(f"--{f.name.replace('_', '-')}", *aliases.get(f.name, []), dest=f.name,
                           default=argparse.SUPPRESS, help=f"{f.metadata['why']} (default: {default})", **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m qlora_helpers", description="QLoRA fine-tuning of BERT for text classification.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="fine-tune with QLoRA and write adapter, metrics.json and plots")
    train.add_argument("--profile", choices=sorted(PROFILES) + ["auto"], default="full",
                       help="full: bert-base-uncased on the Hub IMDb data; offline: MiniLM on the shipped sample, CPU-sized; auto: full when a GPU and the Hub are there")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted run in --output-dir from its last complete checkpoint")
    add_config_flags(train)

    predict = sub.add_parser("predict", help="classify texts with a trained adapter or merged model")
    predict.add_argument("--adapter", required=True, help="output directory of a `train` run, or a `merge` output")
    predict.add_argument("texts", nargs="*", help="texts to classify")
    predict.add_argument("--file", help="a UTF-8 file with one text per line")
    predict.add_argument("--dataset", help="a .csv/.tsv/.json/.jsonl/.parquet file: classify its text column")
    predict.add_argument("--text-column", help="text column of --dataset (found by name when not given)")
    predict.add_argument("--mode", choices=["4bit", "16bit", "merged"], default="4bit",
                         help="4bit: as trained, least memory; 16bit: dequantized base + adapter; merged: adapter folded in")
    predict.add_argument("--output", help="write predictions to .jsonl or .csv instead of printing JSON lines")
    predict.add_argument("--batch-size", type=int, default=64)

    merge = sub.add_parser("merge", help="write a standalone model: dequantized base with the adapter merged in")
    merge.add_argument("--adapter", required=True, help="output directory of a `train` run")
    merge.add_argument("--output", required=True, help="new directory for the merged model")
    merge.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")

    ibench = sub.add_parser("infer-bench", help="agreement, latency and memory of the 4bit, 16bit and merged forms")
    ibench.add_argument("--adapter", required=True)
    ibench.add_argument("--texts", required=True, help="a file with one text per line (e.g. the test reviews)")
    ibench.add_argument("--repeats", type=int, default=20)
    ibench.add_argument("--output", required=True, help="result JSON, e.g. benchmarks/results/inference_modes.json")

    ibm = sub.add_parser("infer-bench-mode", help=argparse.SUPPRESS)  # one form, in a fresh process
    ibm.add_argument("--adapter", required=True)
    ibm.add_argument("--mode", required=True)
    ibm.add_argument("--texts", required=True)
    ibm.add_argument("--repeats", type=int, default=20)

    evaluate = sub.add_parser("evaluate", help="metrics of a trained adapter on a labelled file")
    evaluate.add_argument("--adapter", required=True, help="output directory of a `train` run")
    evaluate.add_argument("--dataset", required=True, help="labelled .csv/.tsv/.json/.jsonl/.parquet file")
    evaluate.add_argument("--text-column")
    evaluate.add_argument("--label-column")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--output", help="where to write the metrics JSON (default: ADAPTER/evaluation_<file>.json)")

    bench = sub.add_parser("bench", help="measure arms (full fp32/16-bit, LoRA 16-bit, QLoRA), each in its own process")
    bench.add_argument("--arms", nargs="+", default=["full_fp32", "full_16bit", "lora_16bit", "qlora"])
    bench.add_argument("--model", default="bert-base-uncased")
    bench.add_argument("--random-weights", action="store_true",
                       help="use --model's architecture and tokenizer with random weights (speed and memory only)")
    bench.add_argument("--dataset", default=None, help="default: the recipe's Hub dataset")
    bench.add_argument("--max-steps", type=int, default=None, help="optimizer steps per arm (speed runs)")
    bench.add_argument("--epochs", type=float, default=None)
    bench.add_argument("--max-samples", type=int, default=None)
    bench.add_argument("--batch-size", type=int, default=16)
    bench.add_argument("--grad-accum", type=int, default=2)
    bench.add_argument("--max-length", type=int, default=256)
    bench.add_argument("--lr", type=float, default=None)
    bench.add_argument("--checkpointing", choices=["on", "off", "both"], default="both")
    bench.add_argument("--warmup-steps", type=int, default=5, help="steps excluded from timing")
    bench.add_argument("--evaluate-test", action="store_true", help="run to completion with evaluation; record test accuracy")
    bench.add_argument("--ranks", nargs="+", type=int, help="QLoRA rank sweep instead of arms (runs to completion)")
    bench.add_argument("--output", required=True, help="result JSON, e.g. benchmarks/results/efficiency.json")
    bench.add_argument("--label", default="")

    plots = sub.add_parser("bench-plots", help="redraw Data/efficiency_comparison.png and lora_rank_sensitivity.png")
    plots.add_argument("--results", default="benchmarks/results", help="directory of benchmark result JSON files")
    plots.add_argument("--plots-dir", default="Data")

    arm = sub.add_parser("bench-arm", help=argparse.SUPPRESS)  # one arm, started by `bench` in a fresh process
    arm.add_argument("--arm", required=True)
    arm.add_argument("--settings", required=True)
    arm.add_argument("--warmup-steps", type=int, default=5)
    arm.add_argument("--evaluate-test", action="store_true")
    arm.add_argument("--profile", default="full", choices=RECIPE_PRESETS)

    recipes = sub.add_parser("bench-recipes", help="the reference preset against the default recipe and full "
                                                   "fine-tuning, each run in its own process")
    recipes.add_argument("--model", default="bert-base-uncased")
    recipes.add_argument("--random-weights", action="store_true",
                         help="the model's architecture with random weights (speed and memory only)")
    recipes.add_argument("--dataset", default=None, help="default: the recipe's Hub dataset")
    recipes.add_argument("--seeds", nargs="+", type=int, default=[42])
    recipes.add_argument("--epochs", type=float, default=None)
    recipes.add_argument("--max-steps", type=int, default=None, help="speed only: stop after this many steps, no test")
    recipes.add_argument("--max-samples", type=int, default=None)
    recipes.add_argument("--runs", nargs="+", default=["reference:qlora", "full:qlora", "full:full_16bit"],
                         help="preset:arm pairs")
    recipes.add_argument("--set", nargs="+", default=[], metavar="PRESET:KEY=JSON",
                         help="change one setting of one preset's runs, e.g. full:lr=1e-3 (levers)")
    recipes.add_argument("--warmup-steps", type=int, default=5)
    recipes.add_argument("--output", required=True)
    recipes.add_argument("--label", default="recipes")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from .config import make_config

    names = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli", True)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    return make_config(args.profile, **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from . import distributed
    from .pipeline import train_pipeline

    cfg = config_from_args(args)
    try:
        result = train_pipeline(cfg, resume=args.resume)
    finally:
        distributed.finish()
    if result is None:  # not the main process of a distributed run: it printed and wrote nothing
        return 0
    keys = ("test_accuracy", "test_f1_weighted", "trainable_params", "total_params", "trainable_percent",
            "peak_gpu_memory_mb", "train_runtime_s", "train_samples_per_second", "compute_dtype", "device")
    print(json.dumps({k: result.metrics[k] for k in keys}))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .data import TEXT_CANDIDATES, find_column, read_local_file
    from .inference import load_for_inference, texts_from_file

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    texts = list(args.texts) + (texts_from_file(args.file) if args.file else [])
    if args.dataset:
        frame = read_local_file(Path(args.dataset).expanduser())
        column = find_column(list(frame.columns), args.text_column, TEXT_CANDIDATES, "text")
        texts += [t for t in frame[column].tolist() if isinstance(t, str) and t.strip()]
    if not texts:
        raise UserError("no texts given: pass them as arguments, with --file (one text per line) or --dataset")
    if args.output and not args.output.endswith((".jsonl", ".csv")):
        raise UserError(f"--output must end in .jsonl or .csv, got {args.output}")
    loaded = load_for_inference(args.adapter, args.mode)
    rows = loaded.predict(texts, args.batch_size, progress=len(texts) > args.batch_size)
    if not args.output:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        import pandas as pd

        pd.DataFrame([{"text": r["text"], "label": r["label"], "probability": r["probability"],
                       **{f"p_{k}": v for k, v in r["probabilities"].items()}} for r in rows]).to_csv(out, index=False)
    else:
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} predictions to {out}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from .inference import merge_adapter

    print(f"wrote merged model to {merge_adapter(args.adapter, args.output, args.dtype)}")
    return 0


def cmd_infer_bench(args: argparse.Namespace) -> int:
    from .inference_bench import run_modes

    run_modes(args.adapter, args.texts, Path(args.output), repeats=args.repeats)
    print(f"wrote {args.output}")
    return 0


def cmd_infer_bench_mode(args: argparse.Namespace) -> int:
    from .inference_bench import time_mode

    texts = Path(args.texts).read_text(encoding="utf-8").splitlines()
    print("INFER_RECORD " + json.dumps(time_mode(args.adapter, args.mode, texts, repeats=args.repeats)))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import load_labelled_file, read_label_mapping
    from .inference import load_adapter
    from .metrics import format_report
    from .pipeline import evaluate_split, write_json

    adapter = Path(args.adapter)
    if not adapter.is_dir():
        raise UserError(f"adapter directory not found: {adapter}")
    frame = load_labelled_file(args.dataset, read_label_mapping(adapter), args.text_column, args.label_column)
    output = Path(args.output) if args.output else adapter / f"evaluation_{Path(args.dataset).name.split('.')[0]}.json"
    loaded = load_adapter(adapter)
    metrics, _ = evaluate_split(loaded.model, loaded.tokenizer, frame, loaded.id2label, loaded.max_length, args.batch_size,
                                loaded.truncation)
    metrics.update(dataset=str(args.dataset), rows=len(frame), device=loaded.hardware.name,
                   compute_dtype=loaded.hardware.dtype_name)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json(output, metrics)
    print(format_report(metrics))
    print(json.dumps({"accuracy": metrics["accuracy"], "f1_weighted": metrics["f1_weighted"], "rows": len(frame),
                      "written_to": str(output)}))
    return 0


def _bench_settings(args: argparse.Namespace, optional: tuple[str, ...]) -> dict[str, Any]:
    """Settings shared by every run of a benchmark: the model (random weights if asked), the data, a scratch
    output directory, and each of `optional` that was given on the command line."""
    import tempfile

    from .bench import make_random_model_dir
    from .config import HUB_DATASET

    model = args.model
    if args.random_weights:
        model = str(make_random_model_dir(model, Path(tempfile.mkdtemp(prefix="random-bert-"))))
    work = tempfile.mkdtemp(prefix="bench-")
    settings = {"model": model, "dataset": args.dataset or HUB_DATASET, "output_dir": f"{work}/run",
                "plots_dir": f"{work}/plots", "report_to": "none", "overwrite": True}
    settings.update({key: getattr(args, key) for key in optional if getattr(args, key) is not None})
    return settings


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import rank_sweep, run_arms

    settings = _bench_settings(args, ("batch_size", "grad_accum", "max_length", "max_steps", "epochs",
                                      "max_samples", "lr"))
    TrainConfig(**settings).validate()  # bad settings fail here, once, not in every child
    output = Path(args.output)
    if args.ranks:
        rank_sweep(args.ranks, settings, output, args.warmup_steps)
    else:
        ckpt = {"on": (True,), "off": (False,), "both": (True, False)}[args.checkpointing]
        run_arms(args.arms, settings, output, args.warmup_steps, args.evaluate_test, ckpt, args.label)
    print(f"wrote {output}")
    return 0


def cmd_bench_plots(args: argparse.Namespace) -> int:
    from .bench_plots import draw_all

    paths = draw_all(args.results, args.plots_dir)
    if not paths:
        raise UserError(f"no benchmark result files in {args.results}; run `python -m qlora_helpers bench` first")
    for p in paths:
        print(f"wrote {p}")
    return 0


def cmd_bench_arm(args: argparse.Namespace) -> int:
    from .bench import run_arm
    from .config import make_config

    record = run_arm(args.arm, make_config(args.profile, **json.loads(args.settings)), args.warmup_steps,
                     args.evaluate_test)
    print("BENCH_RECORD " + json.dumps(record))
    return 0


def cmd_bench_recipes(args: argparse.Namespace) -> int:
    from .bench import ARMS, compare_recipes
    from .config import make_config

    settings = _bench_settings(args, ("max_steps", "epochs", "max_samples"))
    runs = []
    for spec in args.runs:
        profile, _, arm = spec.partition(":")
        if profile not in RECIPE_PRESETS or arm not in ARMS:
            raise UserError(f"--runs takes preset:arm with preset reference or full and arm one of {ARMS}, got {spec!r}")
        runs.append((profile, arm))
    changes: dict[str, dict[str, Any]] = {}
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    for spec in args.set:
        profile, _, assignment = spec.partition(":")
        key, _, value = assignment.partition("=")
        if profile not in RECIPE_PRESETS or not key or not value:
            raise UserError(f"--set takes PRESET:KEY=JSON, e.g. full:lr=1e-3, got {spec!r}")
        if key not in known:
            raise UserError(f"--set {spec}: unknown setting {key!r}; settings are the train flags' names with "
                            f"underscores: {', '.join(known)}")
        try:
            changes.setdefault(profile, {})[key] = json.loads(value)
        except json.JSONDecodeError:
            changes.setdefault(profile, {})[key] = value
    for profile in {p for p, _ in runs}:  # bad settings fail here, once, not in every child
        make_config(profile, **settings, **changes.get(profile, {}))
    compare_recipes(settings, args.seeds, Path(args.output), runs, args.warmup_steps,
                    evaluate_test=args.max_steps is None, label=args.label, changes=changes)
    print(f"wrote {args.output}")
    return 0


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate, "bench": cmd_bench,
            "bench-plots": cmd_bench_plots, "bench-arm": cmd_bench_arm, "merge": cmd_merge,
            "infer-bench": cmd_infer_bench, "infer-bench-mode": cmd_infer_bench_mode, "bench-recipes": cmd_bench_recipes}


def _close_progress_bars() -> None:
    """Finish the progress bars an error interrupted, so the error starts its own line and stays the last one."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", [])):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_dependencies()
        return COMMANDS[args.command](args)
    except UserError as e:
        _close_progress_bars()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ImportError as e:  # a package outside the checked core (datasets, scikit-learn, matplotlib, ...)
        _close_progress_bars()
        print(f"error: cannot import {e.name or 'a required package'} ({e}); {INSTALL}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
