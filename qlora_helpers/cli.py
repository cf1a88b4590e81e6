"""Command line: `qlora-bert {train,predict,evaluate,merge} ...` (or `python -m qlora_helpers ...`).

Every `train` flag is generated from `TrainConfig`, so the flags, their defaults and their help (the
recipe's reasons) cannot drift from the configuration the notebook and the tests use. Bad input ends
with one line `error: ...` and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from .config import PROFILES, TrainConfig
from .dependencies import INSTALL, check_dependencies
from .errors import UserError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line (with a pointer to --help), like every other error."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message}; see `{self.prog} --help`\n")


def _flag_type(tp: Any) -> tuple[Any, dict[str, Any]]:
    """argparse settings for a dataclass field's type."""
    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    base = next(a for a in typing.get_args(tp) if a is not type(None)) if union else tp
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
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            *aliases.get(f.name, []),
            dest=f.name,
            default=argparse.SUPPRESS,
            help=f"{f.metadata['why']} (default: {default})",
            **kw,
        )


# the flags that say what a row of data looks like: train, predict and evaluate all take them, so a user's
# train command copies over; predict and evaluate check them against what the model was trained with
SHAPE_FIELDS = (
    "text_column",
    "text_columns",
    "text_pair_column",
    "text_separator",
    "label_column",
    "label_columns",
    "label_delimiter",
    "task",
    "header",
)


def add_shape_flags(parser: argparse.ArgumentParser) -> None:
    """The data-shape flags of `train`, for predict and evaluate (same names, same help)."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("data shape (as in train; checked against what the model was trained with)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in SHAPE_FIELDS:
            _, kw = _flag_type(hints[f.name])
            group.add_argument(
                f"--{f.name.replace('_', '-')}", dest=f.name, default=None, help=f.metadata["why"], **kw
            )
    add_multi_label_flag(group)


def add_multi_label_flag(parser) -> None:
    parser.add_argument(
        "--multi-label",
        dest="task",
        action="store_const",
        const="multi_label",
        default=argparse.SUPPRESS,
        help="shorthand for --task multi_label: any number of labels per text",
    )


def add_long_text_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--long-text",
        choices=["truncate", "window"],
        default="truncate",
        help="truncate: keep max_length tokens as in training; window: read every token through overlapping "
        "windows of max_length tokens and average their logits",
    )
    parser.add_argument(
        "--stride",
        type=int,
        help="--long-text window: tokens each window shares with the previous one (default: max_length/4)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qlora-bert", description="QLoRA fine-tuning of BERT for text classification.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="fine-tune with QLoRA and write adapter, metrics.json and plots")
    train.add_argument(
        "--profile",
        choices=sorted(PROFILES) + ["auto"],
        default="full",
        help="full: bert-base-uncased on the Hub IMDb data; offline: MiniLM on the shipped sample, CPU-sized; "
        "reference: the seed tutorial's recipe (the yardstick); auto: full when a GPU and the Hub are there. "
        "Defaults below are the full profile's; `qlora-bert train --profile offline --help` shows another's",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --output-dir from its last complete checkpoint",
    )
    add_config_flags(train)
    add_multi_label_flag(train)

    predict = sub.add_parser("predict", help="classify texts with a trained adapter or merged model")
    predict.add_argument("--adapter", required=True, help="output directory of a `train` run, or a `merge` output")
    predict.add_argument("texts", nargs="*", help="texts to classify")
    predict.add_argument("--file", help="a UTF-8 file with one text per line")
    predict.add_argument("--dataset", help="a .csv/.tsv/.json/.jsonl/.parquet file: classify its text column")
    predict.add_argument(
        "--text-pair",
        nargs="+",
        help="sentence-pair models: the second text of each text given as an argument, in the same order",
    )
    add_long_text_flags(predict)
    predict.add_argument(
        "--mode",
        choices=["4bit", "16bit", "merged"],
        default="4bit",
        help="4bit: as trained, least memory; 16bit: dequantized base + adapter; merged: adapter folded in",
    )
    predict.add_argument("--output", help="write predictions to .jsonl or .csv instead of printing JSON lines")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--top-k", type=int, help="list only the K most probable labels' probabilities")
    predict.add_argument(
        "--thresholds",
        choices=["per_label", "global", "0.5"],
        help="multi-label: which tuned thresholds decide (default: the saved choice, per_label)",
    )
    add_shape_flags(predict)

    merge = sub.add_parser("merge", help="write a standalone model: dequantized base with the adapter merged in")
    merge.add_argument("--adapter", required=True, help="output directory of a `train` run")
    merge.add_argument("--output", required=True, help="new directory for the merged model")
    merge.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    merge.add_argument("--overwrite", action="store_true", help="replace an earlier merge output in --output")

    evaluate = sub.add_parser("evaluate", help="metrics of a trained adapter on a labelled file")
    evaluate.add_argument("--adapter", required=True, help="output directory of a `train` run")
    evaluate.add_argument("--dataset", required=True, help="labelled .csv/.tsv/.json/.jsonl/.parquet file")
    add_long_text_flags(evaluate)
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--output", help="where to write the metrics JSON (default: ADAPTER/evaluation_<file>.json)")
    add_shape_flags(evaluate)
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
    keys = tuple(f"test_{k}" for k in result.saved.kind.summary_keys) + (
        "trainable_params",
        "total_params",
        "trainable_percent",
        "peak_gpu_memory_mb",
        "train_runtime_s",
        "train_samples_per_second",
        "compute_dtype",
        "device",
    )
    print(json.dumps({k: result.metrics[k] for k in keys if k in result.metrics}))
    return 0


def check_shape(args: argparse.Namespace, saved) -> None:
    """The data-shape flags given to predict/evaluate must describe the model's own input and task."""
    from .errors import require

    task = getattr(args, "task", None)
    require(
        task in (None, "auto", saved.task),
        f"--task {task} given, but this model was trained as {saved.task}; leave the flag out or use its own model",
    )
    if args.label_columns:
        require(
            saved.labels.columns and len(args.label_columns) == len(saved.labels.columns),
            f"--label-columns names {len(args.label_columns)} column(s); the model was trained on "
            + (f"{len(saved.labels.columns)} label columns" if saved.labels.columns else "one label column"),
        )
    if args.text_separator is not None:
        given = " [SEP] " if args.text_separator == "sep" else args.text_separator
        require(
            given == saved.text_input.separator or len(saved.text_input.columns) == 1,
            f"--text-separator {args.text_separator!r} differs from training's {saved.text_input.separator!r}; "
            f"leave it out to join the columns as in training",
        )
    require(
        args.long_text == "window" or args.stride is None,
        "--stride sets the overlap of --long-text window; add --long-text window or leave --stride out",
    )


def header_of(args: argparse.Namespace) -> bool:
    return True if args.header is None else args.header


def texts_from_dataset(args: argparse.Namespace, saved) -> tuple[list[str], list[str] | None]:
    """The texts (and second texts) of `predict --dataset`, read from the columns training read."""
    from .tables import TEXT_CANDIDATES, read_local_file
    from .text_input import check_pairs, from_saved

    frame = read_local_file(Path(args.dataset).expanduser(), header=header_of(args))
    chosen = from_saved(
        saved.text_input,
        list(frame.columns),
        args.text_column,
        args.text_pair_column,
        TEXT_CANDIDATES,
        args.text_columns,
    )
    inputs = chosen.extract(frame)
    inputs = inputs[inputs["text"].map(lambda t: isinstance(t, str) and t.strip() != "")]
    if chosen.pair_column:
        check_pairs(inputs, chosen.pair_column, args.dataset)
        return inputs["text"].tolist(), inputs["text_pair"].tolist()
    return inputs["text"].tolist(), None


def gather_texts(args: argparse.Namespace, saved) -> tuple[list[str], list[str] | None]:
    """The texts to predict: arguments (with --text-pair), --file lines and --dataset rows, in that order."""
    from .inference import texts_from_file

    texts = list(args.texts) + (texts_from_file(args.file) if args.file else [])
    pairs = list(args.text_pair) if args.text_pair else None
    if pairs is not None and len(pairs) != len(args.texts):
        raise UserError(
            f"{len(args.texts)} text(s) but {len(pairs)} --text-pair value(s); give one second text per text, in order"
        )
    if pairs is not None and args.file:
        raise UserError(
            "--text-pair pairs the texts given as arguments; for a file of pairs use --dataset with two columns"
        )
    if pairs is None and texts and saved.text_input.pair_column:
        raise UserError(
            f"this model reads sentence pairs (second texts from {saved.text_input.pair_column!r} in training); "
            f"give a second text for each: --text-pair, or --dataset with both columns"
        )
    if pairs is not None and not saved.text_input.pair_column:
        raise UserError("this model was trained on single texts; leave out the second texts (--text-pair)")
    if args.dataset:
        more, more_pairs = texts_from_dataset(args, saved)
        if texts and (more_pairs is None) != (pairs is None):
            raise UserError("give pairs both as arguments (--text-pair) and in --dataset, or single texts in both")
        texts = texts + more
        if more_pairs is not None:
            pairs = (pairs or []) + more_pairs
    if not texts:
        raise UserError("no texts given: pass them as arguments, with --file (one text per line) or --dataset")
    return texts, pairs


def cmd_predict(args: argparse.Namespace) -> int:
    from .classifier_config import ClassifierConfig
    from .inference import load_for_inference
    from .windows import check_window

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {args.top_k}")
    saved = ClassifierConfig.load(args.adapter)
    check_shape(args, saved)
    saved.cut(args.thresholds)  # --thresholds on a model without thresholds: said before the model loads
    texts, pairs = gather_texts(args, saved)
    out = Path(args.output) if args.output else None
    if out is not None:
        require_output_file(out, args.overwrite)
    if args.long_text == "window":
        args.stride = check_window(saved.max_length, args.stride, pairs=pairs is not None)
    loaded = load_for_inference(args.adapter, args.mode)
    rows = loaded.predict(
        texts,
        args.batch_size,
        len(texts) > args.batch_size,
        args.top_k,
        args.thresholds,
        pairs,
        args.long_text,
        args.stride,
    )
    if out is None:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    write_predictions(rows, out)
    print(f"wrote {len(rows)} predictions to {out}")
    return 0


def require_output_file(out: Path, overwrite: bool) -> None:
    from .run_files import writable

    if not out.name.endswith((".jsonl", ".csv")):
        raise UserError(f"--output must end in .jsonl or .csv, got {out}")
    if out.is_dir():
        raise UserError(f"--output {out} is a folder; name a .jsonl or .csv file")
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it or name another --output")
    if not writable(out):
        raise UserError(f"cannot write to {out} (read-only or no permission); choose another --output")


def write_predictions(rows: list[dict[str, Any]], out: Path) -> None:
    """Rows as JSON lines, or as CSV with one p_<label> column per probability; written whole, then renamed."""
    import os

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".csv":
        import pandas as pd

        flat = []
        for r in rows:
            row = {k: v for k, v in r.items() if k not in ("probabilities", "label_probabilities")}
            if isinstance(row.get("labels"), list):
                row["labels"] = ",".join(row["labels"])
            flat.append({**row, **{f"p_{k}": v for k, v in r.get("probabilities", {}).items()}})
        pd.DataFrame(flat).to_csv(tmp, index=False)
    else:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, out)


def cmd_merge(args: argparse.Namespace) -> int:
    from .merge import merge_adapter

    print(f"wrote merged model to {merge_adapter(args.adapter, args.output, args.dtype, args.overwrite)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .classifier_config import ClassifierConfig
    from .data import read_labelled_file
    from .evaluation import evaluate_split, mistakes_table, save_table, seen_rows
    from .inference import load_for_inference
    from .run_files import write_json
    from .windows import check_window

    adapter = Path(args.adapter)
    saved = ClassifierConfig.load(adapter)
    check_shape(args, saved)
    if args.label_delimiter is not None:
        from dataclasses import replace

        saved = replace(saved, labels=replace(saved.labels, delimiter=args.label_delimiter))
    frame = read_labelled_file(
        args.dataset,
        saved,
        args.text_column,
        args.label_column,
        header_of(args),
        args.text_pair_column,
        args.text_columns,
    )
    if args.long_text == "window":
        args.stride = check_window(saved.max_length, args.stride, pairs="text_pair" in frame)
    stem = Path(args.dataset).name.split(".")[0]
    output = Path(args.output) if args.output else adapter / f"evaluation_{stem}.json"
    loaded = load_for_inference(adapter, "4bit")
    cut = saved.cut()
    metrics, logits = evaluate_split(
        loaded.model, loaded.tokenizer, frame, saved, args.batch_size, cut, args.long_text, args.stride
    )
    summary = {k: metrics[k] for k in saved.kind.summary_keys if k in metrics}
    if saved.thresholds:
        others = {
            mode: saved.kind.scores(frame["label"], logits, saved.labels, saved.cut(mode))
            for mode in ("0.5", "global")
        }
        metrics["thresholds"] = saved.thresholds.get("mode", "per_label")
        metrics["at_other_thresholds"] = {
            mode: {k: m[k] for k in ("f1_macro", "f1_micro", "f1_weighted", "subset_accuracy")}
            for mode, m in others.items()
        }
        summary |= {"f1_macro_at_0.5": others["0.5"]["f1_macro"], "f1_micro_at_0.5": others["0.5"]["f1_micro"]}
    seen = seen_rows(adapter, frame)
    metrics.update(
        task=saved.task,
        dataset=str(args.dataset),
        rows=len(frame),
        rows_seen_in_training=seen,
        long_text=args.long_text,
        stride=args.stride if args.long_text == "window" else None,
        device=loaded.hardware.name,
        compute_dtype=loaded.hardware.dtype_name,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    mistakes = output.with_name(f"misclassified_{stem}.csv")
    wrong = mistakes_table(frame, logits, saved, cut)
    save_table(wrong, mistakes)
    metrics["misclassified"] = len(wrong)
    metrics["misclassified_file"] = str(mistakes)
    write_json(output, metrics)
    print(saved.kind.report(metrics))
    if seen and (seen["train"] or seen["validation"]):
        print(
            f"note: {seen['train']} of these {len(frame)} rows are in the model's training split and "
            f"{seen['validation']} in its validation split; scores on them overstate what it does on new text"
        )
    print(f"{metrics['misclassified']} misclassified texts, most confident first: {mistakes}")
    print(json.dumps({**summary, "rows": len(frame), "written_to": str(output)}))
    return 0


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate, "merge": cmd_merge}


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


def run() -> None:
    """The `qlora-bert` console script."""
    sys.exit(main())
