"""Which dynamic int8 quantization: onnxruntime's settings tried on one exported model, against its fp32 file.

    python -m benchmarks.int8_variants --export DIR --texts-from CSV --rows 1500 --output RESULT.json

Each variant quantizes the export's `model.onnx` (`quantize_dynamic`, QInt8 weights) and runs the same texts with
the export's own predictor; the record holds its decision agreement with fp32 (whole label sets for multi-label,
and per label), the largest probability change and the file size. `export` uses the variant chosen here.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path


def variants(model: Path) -> dict[str, dict]:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    ffn_out = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[0].startswith("gelu")]
    return {
        "per_tensor (onnxruntime default)": {},
        "per_channel (chosen)": {"per_channel": True},
        "per_channel, reduce_range": {"per_channel": True, "reduce_range": True},
        "per_channel, feed-forward output layers kept fp32": {"per_channel": True, "nodes_to_exclude": ffn_out},
    }


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import pandas as pd
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from qlora_helpers.onnx_model import FP32, INT8, OnnxClassifier
    from qlora_helpers.run_files import library_versions, write_json
    from qlora_helpers.verify import probabilities

    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_variants")
    parser.add_argument("--export", required=True, help="an export folder (qlora-bert export)")
    parser.add_argument("--texts-from", required=True, help="a CSV with a text column (e.g. test_predictions.csv)")
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    source = Path(args.export)
    texts = pd.read_csv(args.texts_from)["text"].astype(str).tolist()[: args.rows]
    reference = OnnxClassifier.load(source, "fp32")
    saved, cut = reference.saved, reference.saved.cut()
    ref = saved.calibrated(reference.raw_logits(texts, 64))
    records = {}
    for name, options in variants(source / FP32).items():
        work = Path(tempfile.mkdtemp(prefix="int8-"))
        for f in ("tokenizer.json", "tokenizer_config.json", "classifier_config.json", FP32):
            shutil.copy(source / f, work / f)
        quantize_dynamic(str(work / FP32), str(work / INT8), weight_type=QuantType.QInt8, **options)
        out = saved.calibrated(OnnxClassifier.load(work, "int8").raw_logits(texts, 64))
        record = {
            "options": {k: (len(v) if isinstance(v, list) else v) for k, v in options.items()},
            "set_agreement": round(saved.kind.agreement(out, ref, saved.labels, cut), 4),
            "max_abs_prob_diff": round(float(np.abs(probabilities(saved.kind, out, saved.labels)
                                                  - probabilities(saved.kind, ref, saved.labels)).max()), 4),
            "int8_mb": round((work / INT8).stat().st_size / 2**20, 2),
        }  # fmt: skip
        if saved.task == "multi_label":
            decided = saved.kind.decide(out, cut) == saved.kind.decide(ref, cut)
            record["per_label_agreement"] = round(float(decided.mean()), 4)
        records[name] = record
        print(name, record, flush=True)
        shutil.rmtree(work)
    write_json(
        Path(args.output),
        {
            "about": "dynamic int8 variants against the export's fp32 ONNX file, same texts (CPU)",
            "export": str(source),
            "rows": len(texts),
            "records": records,
            "command": "python -m benchmarks.int8_variants " + " ".join(argv or sys.argv[1:]),
            "versions": library_versions(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
