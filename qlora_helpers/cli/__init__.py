"""Command line: `qlora-bert {train,predict,evaluate,merge,export,tune,upload} ...` (or `python -m qlora_helpers ...`).

Every `train` flag is generated from `TrainConfig`, so the flags, their defaults and their help (the
recipe's reasons) cannot drift from the configuration the notebook and the tests use. Each command is a
module here with `add_parser(sub)` and `run(args)`. Bad input ends with one line `error: ...` and exit code 2.
"""

from __future__ import annotations

import sys

from qlora_helpers.cli import evaluate, export, merge, predict, train, tune, upload
from qlora_helpers.cli.flags import EXIT_BAD_INPUT, Parser, config_from_args
from qlora_helpers.dependencies import INSTALL, check_dependencies
from qlora_helpers.errors import UserError

COMMANDS = {
    "train": train,
    "predict": predict,
    "evaluate": evaluate,
    "merge": merge,
    "export": export,
    "tune": tune,
    "upload": upload,
}
__all__ = ["EXIT_BAD_INPUT", "build_parser", "config_from_args", "main", "run"]


def build_parser() -> Parser:
    parser = Parser(prog="qlora-bert", description="QLoRA fine-tuning of BERT-style encoders for text classification.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def _close_progress_bars() -> None:
    """Finish the progress bars an error interrupted, so the error starts its own line and stays the last one."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", [])):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if (
            not getattr(args, "onnx", None) and args.command != "upload"
        ):  # serving an export or uploading needs no torch
            check_dependencies()
        return COMMANDS[args.command].run(args)
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
