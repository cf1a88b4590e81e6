"""Two ONNX exporters on the same merged model: torch.onnx with dynamo (what `export` uses) and optimum's.

optimum-onnx 0.1.0 pins transformers < 4.58 while this project needs transformers 5, so optimum's file is made in
a separate environment (its command is recorded), from the fp32 model `qlora-bert merge --dtype float32` writes.
This script, in the project's environment, exports the same model with dynamo twice (attention as loaded, SDPA;
and eager attention, the export's choice), quantizes every file the same way (`export.quantize_int8`), and runs
the same texts through each with the export's predictor, in rounds that rotate the order (a shared CPU's load
falls on all alike): largest logit difference and decision agreement against PyTorch, texts/s at batch 32, size.

    python -m benchmarks.studies.exporter_comparison --merged DIR --optimum DIR --texts-from CSV \
        --optimum-command "..." --output benchmarks/results/exporter_comparison_minilm_imdb.json

What it showed (results/exporter_comparison_minilm_imdb.json): every fp32 file matches PyTorch within 3e-6 in the
logits and runs alike; dynamo with eager attention is as fast as optimum's file at int8, and SDPA's NaN guards
changed one int8 decision in 128, so `export` uses dynamo with eager attention (recipe_notes.md, **Exporter**).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

PARTS = ("tokenizer.json", "tokenizer_config.json", "classifier_config.json")


def folder(merged: Path, onnx_file: Path | None = None) -> Path:
    """A predictor folder: the merged model's tokenizer and configuration, and an ONNX file if given."""
    work = Path(tempfile.mkdtemp(prefix="exporter-"))
    for name in PARTS:
        shutil.copy(merged / name, work / name)
    if onnx_file is not None:
        shutil.copy(onnx_file, work / "model.onnx")
    return work


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import pandas as pd

    from qlora_helpers.infer.export import quantize_int8, to_onnx
    from qlora_helpers.infer.inference import load_for_inference
    from qlora_helpers.infer.onnx_model import FP32, INT8, OnnxClassifier
    from qlora_helpers.run_files import library_versions, write_json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.exporter_comparison")
    for flag in ("--merged", "--optimum", "--texts-from", "--optimum-command", "--output"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    merged = Path(args.merged)
    texts = pd.read_csv(args.texts_from)["text"].astype(str).tolist()[: args.rows]
    reference = load_for_inference(merged, "merged", "float32")
    expected = reference.raw_logits(texts, args.batch, False)
    folders, export_seconds = {"optimum": folder(merged, Path(args.optimum) / "model.onnx")}, {}
    for name in ("dynamo_sdpa", "dynamo_eager"):
        model = load_for_inference(merged, "merged", "float32")  # loaded with SDPA attention
        folders[name] = folder(merged)
        started = time.perf_counter()
        if name == "dynamo_sdpa":  # to_onnx switches to eager; the SDPA graph is exported here as it was before
            _export_as_loaded(model.model, model.tokenizer, folders[name] / FP32)
        else:
            to_onnx(model.model, model.tokenizer, folders[name] / FP32)
        export_seconds[name] = round(time.perf_counter() - started, 1)
    for path in folders.values():
        quantize_int8(path / FP32, path / INT8)
    runners = {
        f"{n}_{p}": OnnxClassifier.load(d, p, args.threads) for n, d in folders.items() for p in ("fp32", "int8")
    }
    import torch

    torch.set_num_threads(args.threads)
    speed: dict[str, list[float]] = {name: [] for name in ["pytorch_fp32", *runners]}
    records = {}
    for name, runner in runners.items():
        logits = runner.raw_logits(texts, args.batch)
        records[name] = {
            "file_mb": round(runner.file.stat().st_size / 2**20, 2),
            "max_abs_logit_diff_vs_pytorch": float(np.abs(logits - expected).max()),
            "label_agreement_vs_pytorch": float((logits.argmax(1) == expected.argmax(1)).mean()),
        }
    names = list(speed)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            started = time.perf_counter()
            if name == "pytorch_fp32":
                reference.raw_logits(texts, args.batch, False)
            else:
                runners[name].raw_logits(texts, args.batch)
            speed[name].append(round(len(texts) / (time.perf_counter() - started), 2))
        print(r, {k: v[-1] for k, v in speed.items()}, flush=True)
    for name, values in speed.items():
        records.setdefault(name, {}).update(
            {f"texts_per_second_batch{args.batch}_median": statistics.median(values), "per_round": values}
        )
    write_json(
        Path(args.output),
        {
            "about": "torch.onnx dynamo export (SDPA and eager attention) vs optimum-onnx on the same merged MiniLM "
            "IMDb model, each fp32 and dynamic int8 (per channel), CPU",
            "rows": len(texts),
            "threads": args.threads,
            "records": records,
            "dynamo_export_seconds": export_seconds,
            "optimum_command": args.optimum_command,
            "command": "python -m benchmarks.studies.exporter_comparison " + " ".join(argv or sys.argv[1:]),
            "versions": library_versions(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    return 0


def _export_as_loaded(model, tokenizer, path: Path) -> None:
    """The dynamo export without the switch to eager attention (what `export` did first)."""
    from qlora_helpers.infer import export

    original = model.set_attn_implementation
    model.set_attn_implementation = lambda *_: None  # keep SDPA for this one export
    try:
        export.to_onnx(model, tokenizer, path)
    finally:
        model.set_attn_implementation = original


if __name__ == "__main__":
    raise SystemExit(main())
