"""A trained adapter as an ONNX model for CPUs: merged, exported with torch.onnx (dynamo), optionally quantized to
int8 by onnxruntime, verified against PyTorch, and packed with its tokenizer and configuration.

The folder is built under a temporary name beside the target and renamed at the end, so a failed export leaves
nothing behind and an existing folder is replaced only with `overwrite` (and only an earlier export). A
verification that misses its targets still writes the folder, marked unverified in its card and report.
"""

from __future__ import annotations

import inspect
import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlora_helpers.errors import UserError, require
from qlora_helpers.infer import verify
from qlora_helpers.infer.evaluation import SEEN_ROWS
from qlora_helpers.infer.onnx_model import FP32, INT8, REPORT, OnnxClassifier, require_extra
from qlora_helpers.modeling.classifier_config import FILE as CONFIG_FILE
from qlora_helpers.modeling.classifier_config import ClassifierConfig
from qlora_helpers.run_files import METRICS, writable, write_json, written_whole

QUANTIZE = ("int8",)
OPSET = 18  # the dynamo exporter's own default in torch 2.13; onnxruntime 1.31 runs it


@dataclass
class ExportResult:
    output_dir: Path
    report: dict[str, Any]

    @property
    def verified(self) -> bool:
        return bool(self.report["verified"])


def check_export_output(output_dir: Path, adapter_dir: Path, overwrite: bool) -> None:
    """Before any work: a new or empty folder, or (with `overwrite`) an earlier export."""
    require(adapter_dir.resolve() != output_dir.resolve(), "--output must be a new folder, not the adapter's own")
    require(not output_dir.is_file(), f"--output {output_dir} is a file; name a new folder for the ONNX model")
    require(
        writable(output_dir), f"cannot write to {output_dir} (read-only or no permission); choose another --output"
    )
    if output_dir.is_dir() and any(output_dir.iterdir()):
        ours = (output_dir / FP32).is_file() and (output_dir / CONFIG_FILE).is_file()
        require(
            overwrite and ours,
            f"{output_dir} already holds files; name a new folder with --output"
            + (", or pass --overwrite to replace this earlier export" if ours else ""),
        )


def check_adapter(adapter_dir: Path) -> ClassifierConfig:
    """A finished run (or merged model) whose base model can be found; said before anything loads."""
    classifier_config = ClassifierConfig.load(adapter_dir)
    has_adapter = (adapter_dir / "adapter_config.json").is_file()
    require(
        has_adapter or (adapter_dir / "config.json").is_file(),
        f"{adapter_dir} holds no trained model (no adapter_config.json or config.json); pass the --output-dir of a "
        f"finished `train` run or the output of `merge`",
    )
    base = classifier_config.base_model
    local = base.startswith((".", "/", "~")) or Path(base).expanduser().exists()
    require(
        not has_adapter or not local or Path(base).expanduser().is_dir(),
        f"the base model of {adapter_dir} is missing: {base} does not exist; put it back there, or set "
        f"base_model in {adapter_dir / CONFIG_FILE} to where it is now",
    )
    return classifier_config


def to_onnx(model, tokenizer, path: Path) -> list[str]:
    """The model's logits as an ONNX graph with a dynamic batch and sequence length; the input names it takes."""
    import torch

    accepted = inspect.signature(model.forward).parameters
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
    names = [n for n in names if n in tokenizer.model_input_names or n == "input_ids"]

    class Logits(torch.nn.Module):
        """Only the logits, from named inputs: what the exported graph returns."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            given = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.inner(input_ids=input_ids, **{k: v for k, v in given.items() if v is not None}).logits

    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        # the same maths; SDPA's export adds NaN guards (IsNaN/Where) for fully masked rows, and one of 128 IMDb
        # reviews changed its int8 decision with them (benchmarks/results/exporter_comparison_minilm_imdb.json)
        model.set_attn_implementation("eager")
    example = tokenizer(["an example text to trace the graph with", "a second one"], padding=True, return_tensors="pt")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=model.config.max_position_embeddings)
    with warnings.catch_warnings():  # the exporter's notes on axis names and deprecations are not the user's
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits(model.eval()).eval(),
            (),
            str(path),
            kwargs={n: example[n] for n in names},
            input_names=names,
            output_names=["logits"],
            dynamic_shapes={n: {0: batch, 1: sequence} for n in names},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    import onnx

    graph = onnx.load(str(path))
    # the exporter records shapes that onnxruntime's quantizer's shape inference rejects (torch 2.13, onnx 1.23);
    # they are hints only, and inference recomputes them
    del graph.graph.value_info[:]
    onnx.save(graph, str(path))
    return names


def quantize_int8(
    source: Path,
    target: Path,
    block_size: int = 128,
    accuracy_level: int | None = 4,
    is_symmetric: bool = False,
    embedding: str | None = "int8",
) -> None:
    """int8 weights that do not depend on the batch: each MatMul's weights in 8-bit blocks of 128 along the input
    (onnxruntime's MatMulNBits, int8 compute), then the embedding table in int8.

    Dynamic int8 scales each batch's activations by that batch's range, so a text near its
    decision boundary flipped with the batch it came in: it kept 98.5-98.9% of IMDb decisions and once lost 0.55
    accuracy points. Weight-only blocks kept 99.8% of IMDb decisions and 99.8% of GoEmotions label decisions, at
    0.265 of fp32's size and 1.4x ONNX fp32's speed against dynamic's 1.8x (recipe_notes.md, "int8 settings").

    The keyword arguments are the settings that study compared (benchmarks/studies/int8_variants.py); their defaults
    are what `export` writes. `embedding`: int8 (dynamic, per table), 4bit (MatMulNBits blocks) or None (fp32)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # the quantizers' progress lines and advice are not the user's
    settings = {"block_size": block_size, "is_symmetric": is_symmetric, "accuracy_level": accuracy_level}
    # onnxruntime block-quantizes a Gather only at 4 bits; int8 weights for the embedding table come from a second,
    # dynamic pass over the Gather alone
    passes = [(8, ("MatMul",))] + ([(4, ("Gather",))] if embedding == "4bit" else [])
    middle = target.with_name(target.stem + ".weights.onnx")
    try:
        model = onnx.load(str(source))
        for bits, ops in passes:
            config = DefaultWeightOnlyQuantConfig(bits=bits, op_types_to_quantize=ops, **settings)
            quantizer = MatMulNBitsQuantizer(model, bits=bits, algo_config=config, **settings)
            quantizer.process()
            model = quantizer.model.model
        onnx.save(model, str(middle if embedding == "int8" else target))
        if embedding == "int8":
            quantize_dynamic(str(middle), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"])
    finally:
        middle.unlink(missing_ok=True)
        root.setLevel(level)


def export_onnx(
    adapter_dir: str | Path,
    output_dir: str | Path,
    quantize: str | None = None,
    verify_file: str | None = None,
    force: bool = False,
    overwrite: bool = False,
    batch_size: int = 32,
) -> ExportResult:
    """Write the ONNX folder (model.onnx, model_int8.onnx with `quantize`, tokenizer, classifier_config.json,
    export_report.json, README.md) and return its verification report."""
    adapter_dir, output_dir = Path(adapter_dir).expanduser(), Path(output_dir).expanduser()
    require(quantize in (None, *QUANTIZE), f"--quantize must be one of {QUANTIZE}, got {quantize!r}")
    require_extra("onnx", "onnxruntime", "onnxscript")
    require(adapter_dir.is_dir(), f"adapter folder not found: {adapter_dir}; pass the --output-dir of a `train` run")
    check_export_output(output_dir, adapter_dir, overwrite)
    classifier_config = check_adapter(adapter_dir)
    frame, source = verify.verification_frame(adapter_dir, classifier_config, verify_file)
    import torch

    from qlora_helpers.infer.inference import load_for_inference

    try:
        loaded = load_for_inference(adapter_dir, "merged", "float32")
    except OSError as e:  # a Hub id that cannot be reached, or a damaged base model folder
        raise UserError(
            f"cannot load the base model {classifier_config.base_model!r} of {adapter_dir}: {str(e)[:160]}"
        ) from None
    model = loaded.model.to("cpu", torch.float32).eval()
    with written_whole(output_dir) as staging:
        started = time.perf_counter()
        inputs = to_onnx(model, loaded.tokenizer, staging / FP32)
        seconds = {"export": round(time.perf_counter() - started, 1)}
        if quantize:
            started = time.perf_counter()
            quantize_int8(staging / FP32, staging / INT8)
            seconds["quantize"] = round(time.perf_counter() - started, 1)
        loaded.tokenizer.save_pretrained(str(staging))
        classifier_config.save(staging)
        for name in (METRICS, SEEN_ROWS):  # the run's scores for the card; its rows, for `evaluate --onnx`'s check
            if (adapter_dir / name).is_file():
                shutil.copy(adapter_dir / name, staging / name)
        print(f"verifying on {len(frame):,} labelled rows of {source}: PyTorch (merged, fp32, CPU) ...")
        precisions = ["fp32", *([quantize] if quantize else [])]
        forms = verify_files(model, loaded.tokenizer, classifier_config, frame, staging, precisions, batch_size)
        report = export_record(adapter_dir, staging, classifier_config, source, inputs, forms, seconds, force)
        write_json(staging / REPORT, report)
        from qlora_helpers.report.onnx_card import write_export_card

        write_export_card(staging, report, output_dir.name)
    return ExportResult(output_dir, report)


def verify_files(
    model, tokenizer, classifier_config, frame, folder: Path, precisions: list[str], batch_size: int
) -> list:
    """Each exported file's decisions against the merged PyTorch model's, on the same labelled rows."""
    from qlora_helpers.infer.inference import predict_logits

    pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
    texts = frame["text"].tolist()
    reference = predict_logits(
        model,
        tokenizer,
        texts,
        classifier_config.max_length,
        batch_size,
        "cpu",
        True,
        classifier_config.truncation,
        pairs,
    )
    forms = []
    for precision in precisions:
        exported = OnnxClassifier.load(folder, precision).raw_logits(texts, batch_size, True, pairs)
        forms.append(verify.compare(classifier_config, frame, reference, exported, precision))
        print(verify.describe(forms[-1]))
    return forms


def export_record(
    adapter_dir, staging: Path, classifier_config, source, inputs, forms, seconds, force
) -> dict[str, Any]:
    """export_report.json: what was exported, how, how it compares with PyTorch, and whether it is verified."""
    import onnxruntime
    import torch

    from qlora_helpers.run_files import library_versions

    passed = all(f["passed"] for f in forms)
    files = {f["precision"]: (FP32 if f["precision"] == "fp32" else INT8) for f in forms}
    return {
        "verified": passed,
        "accepted_with_force": bool(force and not passed),
        "adapter": str(adapter_dir),
        "task": classifier_config.task_name,
        "labels": len(classifier_config.labels.names),
        "base_model": classifier_config.base_model,
        "temperature": classifier_config.temperature,
        "exporter": f"torch.onnx.export(dynamo=True), opset {OPSET}",
        "quantization": "onnxruntime MatMulNBits 8-bit weight blocks of 128 (int8 compute), int8 embedding table"
        if INT8 in files.values()
        else None,
        "inputs": inputs,
        "pairs": classifier_config.text_input.pair_column is not None,
        "files": {p: {"file": f, "mb": round((staging / f).stat().st_size / 2**20, 2)} for p, f in files.items()},
        "verified_on": source,
        "verification": forms,
        "seconds": seconds,
        "versions": {**library_versions(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
    }


def summary(result: ExportResult) -> str:
    return json.dumps(
        {
            "verified": result.verified,
            "output": str(result.output_dir),
            **{
                f["precision"]: {"agreement": f["label_agreement"], "passed": f["passed"]}
                for f in result.report["verification"]
            },
        }
    )
