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
        "auto: full when a GPU and the Hub are there",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --output-dir from its last complete checkpoint",
    )
    add_config_flags(train)

    predict = sub.add_parser("predict", help="classify texts with a trained adapter or merged model")
    predict.add_argument("--adapter", required=True, help="output directory of a `train` run, or a `merge` output")
    predict.add_argument("texts", nargs="*", help="texts to classify")
    predict.add_argument("--file", help="a UTF-8 file with one text per line")
    predict.add_argument("--dataset", help="a .csv/.tsv/.json/.jsonl/.parquet file: classify its text column")
    predict.add_argument(
        "--text-column", help="text column of --dataset (default: the columns training read, else found by name)"
    )
    predict.add_argument(
        "--text-pair",
        nargs="+",
        help="sentence-pair models: the second text of each text given as an argument, in the same order",
    )
    predict.add_argument("--text-pair-column", help="sentence-pair models: column of --dataset with the second texts")
    add_long_text_flags(predict)
    predict.add_argument(
        "--mode",
        choices=["4bit", "16bit", "merged"],
        default="4bit",
        help="4bit: as trained, least memory; 16bit: dequantized base + adapter; merged: adapter folded in",
    )
    predict.add_argument("--output", help="write predictions to .jsonl or .csv instead of printing JSON lines")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--top-k", type=int, help="list only the K most probable labels' probabilities")
    predict.add_argument(
        "--thresholds",
        choices=["per_label", "global", "0.5"],
        help="multi-label: which tuned thresholds decide (default: the saved choice, per_label)",
    )
    predict.add_argument("--no-header", action="store_true", help="--dataset has no header row: columns by index")

    merge = sub.add_parser("merge", help="write a standalone model: dequantized base with the adapter merged in")
    merge.add_argument("--adapter", required=True, help="output directory of a `train` run")
    merge.add_argument("--output", required=True, help="new directory for the merged model")
    merge.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")

    evaluate = sub.add_parser("evaluate", help="metrics of a trained adapter on a labelled file")
    evaluate.add_argument("--adapter", required=True, help="output directory of a `train` run")
    evaluate.add_argument("--dataset", required=True, help="labelled .csv/.tsv/.json/.jsonl/.parquet file")
    evaluate.add_argument("--text-column", help="default: the column(s) training read, else found by name")
    evaluate.add_argument("--text-pair-column", help="sentence-pair models: column with the second texts")
    evaluate.add_argument("--label-column")
    add_long_text_flags(evaluate)
    evaluate.add_argument("--no-header", action="store_true", help="the file has no header row: columns by index")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--output", help="where to write the metrics JSON (default: ADAPTER/evaluation_<file>.json)")

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
    keys = (
        "test_accuracy",
        "test_f1_positive",
        "test_f1_macro",
        "test_f1_micro",
        "test_f1_weighted",
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


def texts_from_dataset(args: argparse.Namespace, mapping: dict[str, Any]) -> tuple[list[str], list[str] | None]:
    """The texts (and second texts) of `predict --dataset`, read from the columns training read."""
    from .data import TEXT_CANDIDATES, read_local_file
    from .text_input import check_pairs, from_mapping

    frame = read_local_file(Path(args.dataset).expanduser(), header=not args.no_header)
    chosen = from_mapping(mapping, list(frame.columns), args.text_column, args.text_pair_column, TEXT_CANDIDATES)
    inputs = chosen.extract(frame)
    inputs = inputs[inputs["text"].map(lambda t: isinstance(t, str) and t.strip() != "")]
    if chosen.pair_column:
        check_pairs(inputs, chosen.pair_column, args.dataset)
        return inputs["text"].tolist(), inputs["text_pair"].tolist()
    return inputs["text"].tolist(), None


def cmd_predict(args: argparse.Namespace) -> int:
    from .data import read_label_mapping
    from .inference import load_for_inference, texts_from_file

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {args.top_k}")
    adapter = Path(args.adapter)
    mapping = read_label_mapping(adapter) if (adapter / "label_mapping.json").is_file() else {}
    texts = list(args.texts) + (texts_from_file(args.file) if args.file else [])
    pairs = list(args.text_pair) if args.text_pair else None
    if pairs is not None and len(pairs) != len(args.texts):
        raise UserError(
            f"{len(args.texts)} text(s) but {len(pairs)} --text-pair value(s); give one second text per text, in order"
        )
    if pairs is not None and mapping and not mapping.get("text_pair_column"):
        raise UserError("this model was trained on single texts; leave out the second texts (--text-pair)")
    if pairs is not None and args.file:
        raise UserError(
            "--text-pair pairs the texts given as arguments; for a file of pairs use --dataset with two columns"
        )
    if args.dataset:
        more, more_pairs = texts_from_dataset(args, mapping)
        if texts and (more_pairs is None) != (pairs is None):
            raise UserError("give pairs both as arguments (--text-pair) and in --dataset, or single texts in both")
        texts = texts + more
        if more_pairs is not None:
            pairs = (pairs or []) + more_pairs
    if not texts:
        raise UserError("no texts given: pass them as arguments, with --file (one text per line) or --dataset")
    if args.output and not args.output.endswith((".jsonl", ".csv")):
        raise UserError(f"--output must end in .jsonl or .csv, got {args.output}")
    if args.long_text == "window":
        from .inference import read_training_config
        from .windows import check_window

        trained = read_training_config(adapter) if (adapter / "training_config.json").is_file() else {}
        check_window(int(trained.get("max_length", 512)), args.stride, pairs=pairs is not None)
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
    if not args.output:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        import pandas as pd

        pd.DataFrame(
            [
                {
                    "text": r["text"],
                    **({"text_pair": r["text_pair"]} if "text_pair" in r else {}),
                    **(
                        {"labels": ",".join(r["labels"])}
                        if "labels" in r
                        else {"label": r["label"], "probability": r["probability"]}
                    ),
                    **{f"p_{k}": v for k, v in r["probabilities"].items()},
                }
                for r in rows
            ]
        ).to_csv(out, index=False)
    else:
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} predictions to {out}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from .inference import merge_adapter

    print(f"wrote merged model to {merge_adapter(args.adapter, args.output, args.dtype)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import load_labelled_file, read_label_mapping
    from .inference import load_adapter
    from .metrics import format_report
    from .pipeline import evaluate_split, save_mistakes, score_label_sets, write_json

    adapter = Path(args.adapter)
    if not adapter.is_dir():
        raise UserError(f"adapter directory not found: {adapter}")
    frame = load_labelled_file(
        args.dataset,
        read_label_mapping(adapter),
        args.text_column,
        args.label_column,
        not args.no_header,
        args.text_pair_column,
    )
    if args.long_text == "window":
        from .inference import read_training_config
        from .windows import check_window

        args.stride = check_window(
            int(read_training_config(adapter)["max_length"]), args.stride, pairs="text_pair" in frame
        )
    output = Path(args.output) if args.output else adapter / f"evaluation_{Path(args.dataset).name.split('.')[0]}.json"
    loaded = load_adapter(adapter)
    cut = loaded.thresholds() if loaded.multi_label else 0.5
    metrics, logits = evaluate_split(
        loaded.model,
        loaded.tokenizer,
        frame,
        loaded.id2label,
        loaded.max_length,
        args.batch_size,
        loaded.truncation,
        cut,
        args.long_text,
        args.stride,
    )
    summary = {
        "accuracy": metrics.get("accuracy"),
        **({"f1_positive": metrics["f1_positive"]} if "f1_positive" in metrics else {}),
        "f1_macro": metrics["f1_macro"],
        "f1_weighted": metrics["f1_weighted"],
    }
    if loaded.multi_label:
        others = {
            mode: score_label_sets(frame, logits, loaded.id2label, loaded.thresholds(mode))
            for mode in ("0.5", "global")
        }
        metrics["thresholds"] = loaded.threshold_record.get("mode", "per_label")
        metrics["at_other_thresholds"] = {
            mode: {k: m[k] for k in ("f1_macro", "f1_micro", "f1_weighted", "subset_accuracy")}
            for mode, m in others.items()
        }
        summary = {
            "f1_macro": metrics["f1_macro"],
            "f1_micro": metrics["f1_micro"],
            "f1_macro_at_0.5": others["0.5"]["f1_macro"],
            "f1_micro_at_0.5": others["0.5"]["f1_micro"],
            "subset_accuracy": metrics["subset_accuracy"],
            "roc_auc_macro": metrics["roc_auc_macro"],
        }
    metrics.update(
        dataset=str(args.dataset),
        rows=len(frame),
        long_text=args.long_text,
        stride=args.stride if args.long_text == "window" else None,
        device=loaded.hardware.name,
        compute_dtype=loaded.hardware.dtype_name,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    mistakes = output.with_name(f"misclassified_{Path(args.dataset).name.split('.')[0]}.csv")
    metrics["misclassified"] = save_mistakes(frame, logits, loaded.id2label, mistakes, cut)
    metrics["misclassified_file"] = str(mistakes)
    write_json(output, metrics)
    print(format_report(metrics))
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
