"""The command line's shared pieces: one-line usage errors, flags generated from TrainConfig, the data-shape flags
that train, predict and evaluate share, and the check of those flags against a saved model."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, NoReturn

from qlora_helpers.config import TrainConfig
from qlora_helpers.errors import require

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line (with a pointer to --help), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message}; see `{self.prog} --help`\n")


def _flag_type(tp: Any) -> tuple[Any, dict[str, Any]]:
    """argparse settings for a dataclass field's type."""
    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    base = next(a for a in typing.get_args(tp) if a is not type(None)) if union else tp
    if typing.get_origin(base) is list:
        return None, {"nargs": "+", "type": str, "action": "extend"}  # a repeated flag adds, never replaces
    if base is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(base) is typing.Literal:  # the choices go into the help; validate() names them on error
        return typing.get_args(base), {"type": str}
    return None, {"type": base}


def number_or_auto(text: str) -> float | str:
    """`--epochs`: a number of passes, or auto."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r} (a number, or auto)") from None


def whole_or_auto(text: str) -> int | str:
    """`--early-stopping-patience`: a whole number of evaluations, or auto."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r} (a whole number, or auto)") from None


PARSERS = {"number_or_auto": number_or_auto, "whole_or_auto": whole_or_auto}


def add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One `--flag` per TrainConfig field (but those in `skip`); unset flags keep the profile's value."""
    hints = typing.get_type_hints(TrainConfig)
    aliases = {"epochs": [], "lr": ["--learning-rate"]}
    group = parser.add_argument_group("recipe settings (defaults shown are the 'full' profile's)")
    for f in dataclasses.fields(TrainConfig):
        if not f.metadata.get("cli", True) or f.name in skip:
            continue
        choices, kw = _flag_type(hints[f.name])
        if "parse" in f.metadata:
            kw["type"] = PARSERS[f.metadata["parse"]]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        among = f"; one of {', '.join(choices)}" if choices else ""
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            *aliases.get(f.name, []),
            dest=f.name,
            default=argparse.SUPPRESS,
            help=f"{f.metadata['why']} (default: {default}{among})",
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


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from qlora_helpers.presets import make_config

    names = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli", True)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    return make_config(args.profile, **overrides)


def check_shape(args: argparse.Namespace, classifier_config) -> None:
    """The data-shape flags given to predict/evaluate must describe the model's own input and task."""
    task = getattr(args, "task", None)
    require(
        task in (None, "auto", classifier_config.task_name),
        f"--task {task} given, but this model was trained as {classifier_config.task_name}; leave the flag out or use "
        f"its own model",
    )
    trained = list(classifier_config.text_input.columns)
    require(
        not (args.text_columns and len(args.text_columns) != len(trained)),
        f"the model was trained on {len(trained)} text column(s) {trained}; --text-columns names "
        f"{len(args.text_columns or [])}: name the same number of columns, in the same order",
    )
    if args.label_columns:
        require(
            classifier_config.labels.columns and len(args.label_columns) == len(classifier_config.labels.columns),
            f"--label-columns names {len(args.label_columns)} column(s); the model was trained on "
            + (
                f"{len(classifier_config.labels.columns)} label columns"
                if classifier_config.labels.columns
                else "one label column"
            ),
        )
    if args.text_separator is not None:
        given = " [SEP] " if args.text_separator == "sep" else args.text_separator
        require(
            given == classifier_config.text_input.separator or len(classifier_config.text_input.columns) == 1,
            f"--text-separator {args.text_separator!r} differs from training's "
            f"{classifier_config.text_input.separator!r}; leave it out to join the columns as in training",
        )
    require(
        args.long_text == "window" or args.stride is None,
        "--stride sets the overlap of --long-text window; add --long-text window or leave --stride out",
    )


def header_of(args: argparse.Namespace, classifier_config=None) -> bool:
    """--header/--no-header as given; else as the model was trained: a model trained on a headerless file names
    its columns by position ("0", "1"), so its files are read without a header again."""
    if args.header is not None:
        return args.header
    columns = (
        [*classifier_config.text_input.columns, classifier_config.labels.column]
        if classifier_config is not None
        else []
    )
    return not (columns and all(str(c).isdigit() for c in columns if c))


def check_new_files(paths: list[Path], overwrite: bool) -> None:
    """Before any work: the files a command will write are new (or `--overwrite` says replace them) and writable."""
    from qlora_helpers.run_files import writable

    for path in paths:
        require(not path.is_dir(), f"{path} is a folder; name a file with --output")
        require(
            overwrite or not path.exists(),
            f"{path} exists (an earlier run's?); pass --overwrite to replace it or name another --output",
        )
        require(writable(path), f"cannot write to {path} (read-only or no permission); choose another --output")


def add_model_source(parser: argparse.ArgumentParser, adapter_help: str) -> None:
    """--adapter (a `train` or `merge` output, on PyTorch) or --onnx (an export, on onnxruntime): one of them."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--adapter", help=adapter_help)
    source.add_argument(
        "--onnx",
        help="an ONNX export (`qlora-bert export`): runs on onnxruntime, without torch; its int8 file where that met "
        "its export targets, else fp32",
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        help="with --onnx: serve this file of the export, even one that missed its targets (default: the verified)",
    )


def model_dir(args: argparse.Namespace) -> str:
    """The folder the model comes from; an ONNX folder lacking its model, configuration or tokenizer is named so."""
    if getattr(args, "onnx", None):
        from pathlib import Path

        from qlora_helpers.infer.onnx_model import check_export_folder

        check_export_folder(Path(args.onnx), getattr(args, "precision", None))
        require(
            getattr(args, "mode", "4bit") == "4bit",
            "--mode chooses a PyTorch form of an adapter; leave it out with --onnx",
        )
        return args.onnx
    require(
        getattr(args, "precision", None) is None, "--precision chooses a file of an ONNX export; use it with --onnx"
    )
    return args.adapter


def load_model(args: argparse.Namespace, mode: str = "4bit"):
    """The model to predict with: an OnnxClassifier for --onnx, else the adapter loaded in `mode` (PyTorch)."""
    if getattr(args, "onnx", None):
        import sys

        from qlora_helpers.infer.onnx_model import OnnxClassifier, verified_forms

        asked = getattr(args, "precision", None)
        loaded = OnnxClassifier.load(args.onnx, asked)
        # unasked, only a file that met its targets is served (onnx_model.default_precision)
        if asked and (verified_forms(loaded.file.parent) or {}).get(asked) is False:
            print(
                f"note: serving {loaded.file.name} of {args.onnx} as asked; it missed its export targets (its "
                f"README.md)",
                file=sys.stderr,
            )
        return loaded
    from qlora_helpers.infer.inference import load_for_inference

    return load_for_inference(args.adapter, mode)
