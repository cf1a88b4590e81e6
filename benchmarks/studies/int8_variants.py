"""Which int8 quantization: onnxruntime's methods and settings tried on one exported model, against its fp32 file.

    python -m benchmarks.studies.int8_variants --export DIR --texts-from CSV --rows 1500 --output RESULT.json
        [--variants ID,ID] [--pytorch MERGED_DIR] [--calibration-data JSON --adapter RUN]

Each variant (`VARIANTS`: a method and its options) quantizes the export's `model.onnx` and runs the same texts with
the export's own predictor; the record holds its decision agreement with fp32 (whole label sets for multi-label,
and per label), the largest probability change, the file size against fp32's, and texts/s at batch 32 measured
round after round with the order rotating (the fp32 file and, with `--pytorch`, the merged PyTorch fp32 model in
the same rounds), each timing with the load average of the shared machine. Methods:
- dynamic: `quantize_dynamic`, int8 weights, activations quantized per batch (what `export` does);
- weight_only: `MatMulNBitsQuantizer`, 8-bit weights in blocks along the input dimension (MatMulNBits);
  onnxruntime 1.31 block-quantizes Gather (the embedding table) only at 4 bits, so the table is left fp32,
  stored as 4-bit blocks, or given dynamic int8 afterwards (`embedding`);
- static: `quantize_static` (QDQ), activation scales from the run's validation texts.

What it showed (results/int8_variants_minilm_{imdb,goemotions}.json): dynamic int8 loses agreement on label sets
(per-batch activation scales), static QDQ more; weight-only blocks of 128 with int8 compute and an int8 embedding
table keep 99.8% of IMDb decisions and 99.80% of GoEmotions label decisions at 0.265 of fp32's size, which is
what `export --quantize int8` writes now (recipe_notes.md, **int8 settings**).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from qlora_helpers.infer.onnx_model import FP32, INT8

TIMING = "INT8_TIMING "


def _variant(method: str, about: str, **options: Any) -> dict[str, Any]:
    return {"method": method, "about": about, "options": options}


VARIANTS: dict[str, dict[str, Any]] = {
    "dynamic_per_tensor": _variant("dynamic", "per tensor (onnxruntime default)"),
    "dynamic_per_channel": _variant("dynamic", "per channel (export's current)", per_channel=True),
    "dynamic_per_channel_reduce_range": _variant(
        "dynamic", "per channel, reduce_range", per_channel=True, reduce_range=True
    ),
    "dynamic_per_channel_ffn_out_fp32": _variant(
        "dynamic", "per channel, the feed-forward output layers kept fp32", per_channel=True, exclude="ffn_out"
    ),
    "weight_only_b32": _variant("weight_only", "8-bit blocks of 32, fp32 compute, embedding fp32", block_size=32),
    "weight_only_b64": _variant("weight_only", "8-bit blocks of 64, fp32 compute, embedding fp32", block_size=64),
    "weight_only_b128": _variant("weight_only", "8-bit blocks of 128, fp32 compute, embedding fp32", block_size=128),
    "weight_only_b32_symmetric": _variant(
        "weight_only", "8-bit symmetric blocks of 32, fp32 compute, embedding fp32", block_size=32, is_symmetric=True
    ),
    "weight_only_b32_int8_compute": _variant(
        "weight_only", "8-bit blocks of 32, int8 compute (accuracy_level 4), embedding fp32", accuracy_level=4
    ),
    "weight_only_b64_int8_compute": _variant(
        "weight_only", "8-bit blocks of 64, int8 compute, embedding fp32", block_size=64, accuracy_level=4
    ),
    "weight_only_b128_int8_compute": _variant(
        "weight_only", "8-bit blocks of 128, int8 compute, embedding fp32", block_size=128, accuracy_level=4
    ),
    "weight_only_b32_int8_compute_embedding_int8": _variant(
        "weight_only", "8-bit blocks of 32, int8 compute, embedding dynamic int8", accuracy_level=4, embedding="int8"
    ),
    "weight_only_b128_int8_compute_embedding_int8": _variant(
        "weight_only",
        "8-bit blocks of 128, int8 compute, embedding dynamic int8 (quantize_dynamic on Gather)",
        block_size=128,
        accuracy_level=4,
        embedding="int8",
    ),
    "weight_only_b128_symmetric_int8_compute_embedding_int8": _variant(
        "weight_only",
        "8-bit symmetric blocks of 128, int8 compute, embedding dynamic int8",
        block_size=128,
        is_symmetric=True,
        accuracy_level=4,
        embedding="int8",
    ),
    "weight_only_b32_int8_compute_embedding_4bit": _variant(
        "weight_only",
        "8-bit blocks of 32, int8 compute, embedding in 4-bit blocks of 32 (GatherBlockQuantized)",
        accuracy_level=4,
        embedding="4bit",
    ),
    "static_qdq_per_channel": _variant(
        "static",
        "QDQ on MatMul and Gather only, int8 weights per channel, uint8 activations, MinMax scales from validation",
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gather"],
    ),
    "static_qdq_per_channel_linear_only": _variant(
        "static",
        "as static_qdq_per_channel, only the layers with weights (attention's activation products kept fp32)",
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gather"],
        exclude="activation_products",
    ),
}


def quiet():
    """onnxruntime's quantizers log every node at INFO and advise pre-processing; the record says what matters."""
    logging.getLogger().setLevel(logging.ERROR)
    for name in ("onnxruntime.quantization.matmul_nbits_quantizer", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.ERROR)


def excluded_nodes(model: Path, which: str) -> list[str]:
    """MatMul nodes left fp32: the feed-forward outputs (their input is the GELU's), or the products of two
    activations (attention scores and context), whose second input is no weight."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    if which == "ffn_out":
        return [n.name for n in matmuls if n.input[0].startswith("gelu")]
    return [n.name for n in matmuls if n.input[1] not in weights]


def quantize(variant: dict[str, Any], source: Path, target: Path, calibration=None) -> None:
    """`variant` applied to the fp32 file `source`, written to `target`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    options = dict(variant["options"])
    if variant["method"] == "dynamic":
        if "exclude" in options:
            options["nodes_to_exclude"] = excluded_nodes(source, options.pop("exclude"))
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, **options)
    elif variant["method"] == "weight_only":
        from qlora_helpers.infer.export import quantize_int8

        quantize_int8(source, target, **{"block_size": 32, "accuracy_level": None, "embedding": None, **options})
    elif variant["method"] == "static":
        from onnxruntime.quantization import QuantFormat, quantize_static

        if "exclude" in options:
            options["nodes_to_exclude"] = excluded_nodes(source, options.pop("exclude"))
        quantize_static(
            str(source), str(target), calibration(), quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8, **options,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown method {variant['method']!r}")
    quiet()


def calibration_reader(export: Path, texts: list[str], batch: int = 32):
    """A factory of onnxruntime calibration readers: the texts tokenized and padded as the predictor does it."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader

    from qlora_helpers.data.tokens import encode_rows
    from qlora_helpers.infer.onnx_model import OnnxClassifier, pad_batch

    model = OnnxClassifier.load(export, "fp32")
    classifier_config, tok = model.classifier_config, model.tokenizer
    rows, _ = encode_rows(
        tok, texts, classifier_config.max_length, classifier_config.truncation, None, "truncate", None
    )
    names = [i.name for i in model.session.get_inputs()]
    pads = {"input_ids": tok.pad_token_id, "token_type_ids": tok.pad_token_type_id}
    order = np.argsort([len(r["input_ids"]) for r in rows], kind="stable")
    batches = [pad_batch([rows[i] for i in order[s : s + batch]], names, pads) for s in range(0, len(rows), batch)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.left = iter(batches)

        def get_next(self):
            return next(self.left, None)

    return Reader


def validation_texts(adapter: Path, data_files: dict[str, str], rows: int) -> tuple[list[str], dict]:
    from benchmarks.kinds.calibration_check import validation_split

    validation, check = validation_split(adapter, data_files)
    texts = validation["text"].astype(str).tolist()
    step = max(1, len(texts) // rows)  # spread over the split rather than its first rows
    return texts[::step][:rows], {**check, "calibration_rows": min(rows, len(texts[::step]))}


def time_form(form: str, directory: str, texts_file: str, batch: int, threads: int) -> dict[str, Any]:
    """Texts/s at `batch` of one form in this process (a fresh one per timing, as `onnx_serving` does it)."""
    texts = json.loads(Path(texts_file).read_text())
    if form == "pytorch_fp32":
        from benchmarks.kinds.onnx_serving import _loader

        loaded, kwargs = _loader(form, directory, threads)[0], {"progress": False}
    else:
        from qlora_helpers.infer.onnx_model import OnnxClassifier

        loaded, kwargs = OnnxClassifier.load(directory, form, threads), {}
    loaded.logits(texts, batch, **kwargs)  # warm-up over every batch shape: PyTorch needs more than one batch
    started = time.perf_counter()
    loaded.logits(texts, batch, **kwargs)
    rate = len(texts) / (time.perf_counter() - started)
    return {"texts_per_second": round(rate, 2), "load_average_1min": round(os.getloadavg()[0], 2)}


def timing_rounds(forms: dict[str, tuple[str, str]], texts_file: Path, batch: int, threads: int, rounds: int):
    """Each form (name: (precision, folder)) timed once a round in its own process, the order rotating, so that
    others' load on the shared machine falls on all of them alike."""
    names, out = list(forms), {n: [] for n in forms}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            form, folder = forms[name]
            command = [sys.executable, "-m", "benchmarks.studies.int8_variants", "--time-form", form, folder,
                       str(texts_file), str(batch), str(threads)]  # fmt: skip
            proc = subprocess.run(command, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(TIMING)]
            record = json.loads(lines[-1].removeprefix(TIMING)) if lines else {"error": proc.stderr[-300:]}
            out[name].append(record)
            print(f"round {r + 1} {name}: {record}", flush=True)
    return out


def provenance(argv: list[str]) -> dict[str, Any]:
    import onnx
    import onnxruntime

    from benchmarks.timed import commit, machine
    from qlora_helpers.run_files import library_versions

    return {
        "command": "python -m benchmarks.studies.int8_variants " + " ".join(argv),
        "commit": commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hardware": machine(),
        "versions": {**library_versions(), "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__},
    }


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.int8_variants")
    parser.add_argument("--export", required=True, help="an export folder (qlora-bert export)")
    parser.add_argument("--texts-from", required=True, help="a CSV with a text column (e.g. test_predictions.csv)")
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--output", required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated ids of VARIANTS")
    parser.add_argument("--pytorch", help="the adapter merged to fp32 (qlora-bert merge), timed in the same rounds")
    parser.add_argument("--calibration-data", help="JSON of the run's data files, for static quantization")
    parser.add_argument("--adapter", help="the run whose validation split calibrates static quantization")
    parser.add_argument("--calibration-rows", type=int, default=256)
    parser.add_argument("--timing-texts", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    return parser.parse_args(argv)


def measure_variant(variant: dict, source: Path, texts: list[str], classifier_config, ref, calibration, threads: int):
    """One variant quantized from the export's fp32 file into a folder of its own, and its agreement with fp32."""
    import numpy as np

    from qlora_helpers.infer.onnx_model import OnnxClassifier

    work, thresholds = Path(tempfile.mkdtemp(prefix="int8-")), classifier_config.decision_thresholds()
    for f in ("tokenizer.json", "tokenizer_config.json", "classifier_config.json"):
        shutil.copy(source / f, work / f)
    started = time.perf_counter()
    quantize(variant, source / FP32, work / INT8, calibration)
    seconds = time.perf_counter() - started
    out = classifier_config.calibrated(OnnxClassifier.load(work, "int8", threads).raw_logits(texts, 64))
    size, fp32_bytes = (work / INT8).stat().st_size, (source / FP32).stat().st_size
    change = np.abs(
        classifier_config.task.probabilities(out, classifier_config.labels)
        - classifier_config.task.probabilities(ref, classifier_config.labels)
    )
    record = {
        "method": variant["method"],
        "about": variant["about"],
        "options": dict(variant["options"]),
        "set_agreement": round(classifier_config.task.agreement(out, ref, classifier_config.labels, thresholds), 4),
        "max_abs_prob_diff": round(float(change.max()), 4),
        "int8_mb": round(size / 2**20, 2),
        "size_vs_fp32": round(size / fp32_bytes, 4),
        "quantize_seconds": round(seconds, 1),
    }  # fmt: skip
    per_decision = classifier_config.task.decision_agreement(out, ref, thresholds)
    if per_decision is not None:
        record["per_label_agreement"] = round(per_decision, 4)
    return record, work


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from qlora_helpers.infer.onnx_model import OnnxClassifier
    from qlora_helpers.run_files import write_json

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--time-form"]:  # a child of timing_rounds
        form, folder, texts_file, batch, threads = argv[1:6]
        print(TIMING + json.dumps(time_form(form, folder, texts_file, int(batch), int(threads))), flush=True)
        return 0
    args = parse(argv)
    chosen = args.variants.split(",")
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    quiet()
    source = Path(args.export)
    texts = pd.read_csv(args.texts_from)["text"].astype(str).tolist()[: args.rows]
    reference = OnnxClassifier.load(source, "fp32", args.threads)
    classifier_config = reference.classifier_config
    ref = classifier_config.calibrated(reference.raw_logits(texts, 64))
    calibration, calibration_note = None, None
    if any(VARIANTS[v]["method"] == "static" for v in chosen):
        if not (args.calibration_data and args.adapter):
            raise SystemExit("static variants need --calibration-data and --adapter (validation texts)")
        files = json.loads(Path(args.calibration_data).read_text())
        cal_texts, calibration_note = validation_texts(Path(args.adapter), files, args.calibration_rows)
        calibration = calibration_reader(source, cal_texts)
    records, folders = {}, {}
    for name in chosen:
        records[name], folders[name] = measure_variant(
            VARIANTS[name], source, texts, classifier_config, ref, calibration, args.threads
        )
        print(name, records[name], flush=True)
    del reference
    timing_file = Path(tempfile.mkdtemp(prefix="int8-texts-")) / "texts.json"
    timing_file.write_text(json.dumps(texts[: args.timing_texts]))
    forms = {"onnx_fp32": ("fp32", str(source)), **{n: ("int8", str(w)) for n, w in folders.items()}}
    if args.pytorch:
        forms["pytorch_fp32"] = ("pytorch_fp32", args.pytorch)
    rounds = timing_rounds(forms, timing_file, args.batch, args.threads, args.rounds)
    shutil.rmtree(timing_file.parent)
    key = f"texts_per_second_batch{args.batch}"
    speeds = {n: statistics.median(m.get("texts_per_second", 0) for m in r) for n, r in rounds.items()}
    for name, record in records.items():
        record[key] = speeds[name]
        record["vs_onnx_fp32"] = round(speeds[name] / speeds["onnx_fp32"], 2)
        if "pytorch_fp32" in speeds:
            record["vs_pytorch_fp32"] = round(speeds[name] / speeds["pytorch_fp32"], 2)
        shutil.rmtree(folders[name])
    write_json(
        Path(args.output),
        {
            "about": "int8 variants against the export's fp32 ONNX file, same texts (CPU); throughput is the median "
            "of rotating rounds on a shared machine (load average kept per timing)",
            "export": str(source),
            "rows": len(texts),
            "timing": {
                "texts": min(len(texts), args.timing_texts),
                "batch": args.batch,
                "threads": args.threads,
                "rounds": args.rounds,
                "each timing": "a fresh process: load, one warm-up pass over the texts, then a timed pass end to end",
            },
            "calibration": calibration_note,
            "reference_texts_per_second": {n: speeds[n] for n in speeds if n not in records},
            "records": records,
            "timing_rounds": rounds,
            **provenance(argv),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
