"""`qlora-bert merge`: a standalone model, the 4-bit base dequantized with the adapter merged in."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    merge = sub.add_parser("merge", help="write a standalone model: dequantized base with the adapter merged in")
    merge.add_argument("--adapter", required=True, help="output directory of a `train` run")
    merge.add_argument("--output", required=True, help="new directory for the merged model")
    merge.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    merge.add_argument("--overwrite", action="store_true", help="replace an earlier merge output in --output")


def run(args: argparse.Namespace) -> int:
    from qlora_helpers.infer.merge import merge_adapter

    print(f"wrote merged model to {merge_adapter(args.adapter, args.output, args.dtype, args.overwrite)}")
    return 0
