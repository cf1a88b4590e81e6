"""`qlora-bert export`: a trained adapter as an ONNX model (and an int8 one) for CPUs, verified against PyTorch."""

from __future__ import annotations

import argparse
import sys

EXIT_UNVERIFIED = 1  # the files are written, marked unverified; not bad input, so not 2


def add_parser(sub) -> None:
    export = sub.add_parser(
        "export", help="export a trained adapter to ONNX (optionally int8), verified against PyTorch"
    )
    export.add_argument("--adapter", required=True, help="output directory of a `train` run (or a `merge` output)")
    export.add_argument("--output", required=True, help="a new folder for the ONNX model, tokenizer and config")
    export.add_argument("--quantize", choices=["int8"], help="also write onnxruntime's dynamic int8 quantization")
    export.add_argument(
        "--verify-file",
        help="labelled file to verify on (default: the run's own test split, its test_predictions.csv)",
    )
    export.add_argument(
        "--force", action="store_true", help="accept an export that misses its verification targets (exit 0)"
    )
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export in --output")
    export.add_argument("--batch-size", type=int, default=32, help="batch size of the verification passes")


def run(args: argparse.Namespace) -> int:
    from qlora_helpers.errors import require
    from qlora_helpers.infer.export import export_onnx, summary

    require(args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}")
    result = export_onnx(
        args.adapter, args.output, args.quantize, args.verify_file, args.force, args.overwrite, args.batch_size
    )
    print(summary(result))
    if result.verified or args.force:
        return 0
    print(
        f"error: the export missed its verification targets (see {result.output_dir}/README.md); its files are kept "
        f"and marked unverified; pass --force to accept it",
        file=sys.stderr,
    )
    return EXIT_UNVERIFIED
