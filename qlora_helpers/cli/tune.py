"""`qlora-bert tune`: an Optuna study over the recipe on your data (the optional extra `qlora-bert[tune]`).

The searched settings take a range `low:high`, choices `a,b,c`, or one value that fixes them; every other
`train` flag sets the base configuration that all trials share.
"""

from __future__ import annotations

import argparse
import json

from qlora_helpers.cli.flags import add_config_flags, add_multi_label_flag, config_from_args
from qlora_helpers.presets import PROFILES
from qlora_helpers.tune.space import DEFAULTS, WHAT

SEARCHED_FLAGS = tuple(DEFAULTS) + ("lora_alpha",)  # alpha is searched as a multiple of the rank


def add_parser(sub) -> None:
    tune = sub.add_parser(
        "tune",
        help="search learning rate, length, LoRA rank/alpha/layers, class weights, max_length and warm-up "
        "on validation (Optuna)",
        description="An Optuna study over the recipe on your data: each trial trains in its own process and is "
        "scored on validation (never on test); bad trials are pruned from their intermediate evaluations. "
        "The study lives in --output-dir/study.db, so --resume continues a killed one. It ends by printing "
        "the best trial's `qlora-bert train` command (best_command.txt); --train-best runs it.",
    )
    tune.add_argument("--profile", choices=sorted(PROFILES) + ["auto"], default="full", help="preset to start from")
    tune.add_argument("--trials", type=int, default=20, help="trials the study should count (default: 20)")
    tune.add_argument("--timeout", type=float, help="seconds: no trial runs past this (default: no limit)")
    tune.add_argument("--resume", action="store_true", help="continue the study in --output-dir")
    tune.add_argument(
        "--train-best", action="store_true", help="then train the best configuration and report its test split"
    )
    space = tune.add_argument_group("search space: low:high, a,b,c, or one value to fix a setting")
    for name, default in DEFAULTS.items():
        space.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"space_{name}",
            metavar="RANGE",
            help=f"{WHAT[name]} (default: {default or 'from the data'})",
        )
    add_config_flags(tune, skip=SEARCHED_FLAGS)
    add_multi_label_flag(tune)
    tune.set_defaults(output_dir="outputs/tune")


def run(args: argparse.Namespace) -> int:
    from qlora_helpers.tune.study import run_study

    cfg = config_from_args(args)
    flags = {name: getattr(args, f"space_{name}") for name in DEFAULTS}
    result = run_study(cfg, flags, args.trials, args.timeout, args.resume, args.train_best)
    if result.test_metrics is not None:
        keys = [f"test_{k}" for k in ("accuracy", "f1_macro", "f1_micro", "spearman", "pearson")]
        print(json.dumps({k: result.test_metrics[k] for k in keys if k in result.test_metrics}))
    return 0
