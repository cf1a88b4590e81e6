"""`qlora-bert train`: fine-tune with QLoRA and write the adapter, metrics.json and plots."""

from __future__ import annotations

import argparse
import json

from qlora_helpers.cli.flags import add_config_flags, add_multi_label_flag, config_from_args
from qlora_helpers.presets import PROFILES


def add_parser(sub) -> None:
    from qlora_helpers.presets import preset_differences

    train = sub.add_parser(
        "train",
        help="fine-tune with QLoRA and write adapter, metrics.json and plots",
        epilog="The defaults shown are the full profile's. The other presets change: " + preset_differences(),
    )
    train.add_argument(
        "--profile",
        choices=sorted(PROFILES) + ["auto"],
        default="full",
        help="full: bert-base-uncased on the Hub IMDb data; offline: MiniLM on the shipped sample, CPU-sized; "
        "reference: the seed tutorial's recipe (the yardstick); auto: full when a GPU and the Hub are there "
        "(the presets' own settings are listed at the end)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --output-dir from its last complete checkpoint",
    )
    add_config_flags(train)
    add_multi_label_flag(train)


def run(args: argparse.Namespace) -> int:
    from qlora_helpers import distributed
    from qlora_helpers.run import train_pipeline

    cfg = config_from_args(args)
    try:
        result = train_pipeline(cfg, resume=args.resume)
    finally:
        distributed.finish()
    if result is None:  # not the main process of a distributed run: it printed and wrote nothing
        return 0
    keys = tuple(f"test_{k}" for k in result.classifier_config.task.summary_keys) + (
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
