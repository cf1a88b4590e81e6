"""Two ONNX exporters on the same merged model: torch.onnx (dynamo, what `export` uses) and optimum's.

optimum-onnx 0.1.0 pins transformers < 4.58 while this project needs transformers 5, so optimum's file is made in
a separate environment (the command is recorded), from the fp32 model `qlora-bert merge --dtype float32` writes;
this script, in the project's environment, feeds both files the same texts through onnxruntime (fp32 and after
the same dynamic int8 quantization) and compares them with the PyTorch model: largest logit difference, decision
agreement, texts/s at batch 32 and file size.

    python -m benchmarks.exporter_comparison --merged DIR --dynamo DIR --optimum DIR --texts-from CSV \
        --optimum-command "..." --output benchmarks/results/exporter_comparison_minilm_imdb.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def onnx_logits(path: Path, tokenizer_dir: Path, texts: list[str], batch: int) -> tuple:
    """Logits through onnxruntime with the export's own predictor (same tokenization and batching), and seconds."""
    from qlora_helpers.onnx_model import OnnxClassifier

    work = Path(tempfile.mkdtemp(prefix="exporter-"))
    for name in ("tokenizer.json", "tokenizer_config.json", "classifier_config.json"):
        shutil.copy(tokenizer_dir / name, work / name)
    shutil.copy(path, work / "model.onnx")
    model = OnnxClassifier.load(work, "fp32")
    model.raw_logits(texts[:batch], batch)  # warm-up
    started = time.perf_counter()
    logits = model.raw_logits(texts, batch)
    seconds = time.perf_counter() - started
    shutil.rmtree(work)
    return logits, seconds


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import pandas as pd

    from qlora_helpers.export import quantize_int8
    from qlora_helpers.inference import load_for_inference
    from qlora_helpers.run_files import library_versions, write_json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.exporter_comparison")
    for flag in ("--merged", "--dynamo", "--optimum", "--texts-from", "--optimum-command", "--output"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    texts = pd.read_csv(args.texts_from)["text"].astype(str).tolist()[: args.rows]
    reference = load_for_inference(args.merged, "merged", "float32")
    expected = reference.raw_logits(texts, args.batch, False)
    files = {"dynamo": Path(args.dynamo) / "model.onnx", "optimum": Path(args.optimum) / "model.onnx"}
    records = {}
    work = Path(tempfile.mkdtemp(prefix="int8-"))
    for name, path in files.items():
        int8 = work / f"{name}_int8.onnx"
        quantize_int8(path, int8)
        for precision, file in (("fp32", path), ("int8", int8)):
            logits, seconds = onnx_logits(file, Path(args.merged), texts, args.batch)
            records[f"{name}_{precision}"] = {
                "file_mb": round(file.stat().st_size / 2**20, 2),
                "max_abs_logit_diff_vs_pytorch": float(np.abs(logits - expected).max()),
                "label_agreement_vs_pytorch": float((logits.argmax(1) == expected.argmax(1)).mean()),
                f"texts_per_second_batch{args.batch}": round(len(texts) / seconds, 2),
            }
            print(name, precision, records[f"{name}_{precision}"], flush=True)
    write_json(
        Path(args.output),
        {
            "about": "torch.onnx dynamo export vs optimum-onnx on the same merged MiniLM IMDb model (CPU)",
            "rows": len(texts),
            "records": records,
            "optimum_command": args.optimum_command,
            "command": "python -m benchmarks.exporter_comparison " + " ".join(argv or __import__("sys").argv[1:]),
            "versions": library_versions(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
