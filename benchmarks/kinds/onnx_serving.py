"""Serving on a CPU: a trained adapter exported to ONNX (fp32 and int8) against PyTorch fp32, on the same texts.

`run_onnx` exports the adapter with the real command (`qlora-bert export --quantize int8`, which verifies the
files against PyTorch on the run's test split), merges it to an fp32 PyTorch model (`qlora-bert merge`), then
times each form in its own process (`time_form`), round after round with the forms alternating, so that load
on a shared machine falls on all of them alike: latency at batch 1 (median and p90 over single texts), texts/s
at batch 32, model file size and peak resident memory. Every timing is end to end: tokenizing, batching by
length, the forward pass and the logits, as `predict` does it.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FORMS = ("pytorch_fp32", "onnx_fp32", "onnx_int8")


def _loader(form: str, directory: str, threads: int):
    if form == "pytorch_fp32":
        import torch

        from qlora_helpers.infer.inference import load_for_inference

        torch.set_num_threads(threads)
        loaded = load_for_inference(directory, "merged", "float32")
        return loaded, Path(directory) / "model.safetensors"
    from qlora_helpers.infer.onnx_model import OnnxClassifier

    loaded = OnnxClassifier.load(directory, form.removeprefix("onnx_"), threads)
    return loaded, loaded.file


def time_form(form: str, directory: str, texts: list[str], latency_texts: int, batch: int, threads: int) -> dict:
    """One form measured in this process: load, latency per single text, throughput at `batch`, memory, size."""
    started = time.perf_counter()
    loaded, weights = _loader(form, directory, threads)
    load_seconds = time.perf_counter() - started
    kwargs = {"progress": False} if form == "pytorch_fp32" else {}
    loaded.logits(texts[:batch], batch, **kwargs)  # warm-up: allocator, kernels, thread pools
    single = []
    for text in texts[:latency_texts]:
        started = time.perf_counter()
        loaded.logits([text], 1, **kwargs)
        single.append(1000 * (time.perf_counter() - started))
    started = time.perf_counter()
    loaded.logits(texts, batch, **kwargs)
    seconds = time.perf_counter() - started
    deciles = statistics.quantiles(single, n=10)
    return {
        "form": form,
        "threads": threads,
        "load_seconds": round(load_seconds, 2),
        "latency_ms_batch1": {"median": round(statistics.median(single), 2), "p90": round(deciles[8], 2)},
        "latency_texts": len(single),
        f"texts_per_second_batch{batch}": round(len(texts) / seconds, 2),
        "throughput_texts": len(texts),
        "file_mb": round(Path(weights).stat().st_size / 2**20, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),  # others' work on a shared machine shows here
    }


def _cli(args: list[str]) -> int:
    return subprocess.run([sys.executable, "-m", "qlora_helpers", *args]).returncode


def run_onnx(spec: dict[str, Any], output: Path, expand) -> dict[str, Any]:
    """Export + verification, then the timing rounds; the result file's body."""
    import pandas as pd

    from benchmarks.harness import record_from_child

    adapter = Path(expand(spec["adapter"]))
    work = Path(tempfile.mkdtemp(prefix="onnx-bench-"))
    export_dir, merged_dir = work / "onnx", work / "merged"
    started = time.perf_counter()
    export_exit = _cli(["export", "--adapter", str(adapter), "--output", str(export_dir), "--quantize", "int8"])
    export_seconds = round(time.perf_counter() - started, 1)
    report = json.loads((export_dir / "export_report.json").read_text())
    merge_exit = _cli(["merge", "--adapter", str(adapter), "--output", str(merged_dir), "--dtype", "float32"])
    timing = spec.get("timing", {})
    n, batch = timing.get("throughput_texts", 512), timing.get("batch", 32)
    texts = pd.read_csv(adapter / "test_predictions.csv")["text"].astype(str).tolist()[:n]
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts))
    dirs = {"pytorch_fp32": merged_dir, "onnx_fp32": export_dir, "onnx_int8": export_dir}
    rounds: list[list[dict]] = []
    for r in range(timing.get("rounds", 3)):
        order = FORMS[r % len(FORMS) :] + FORMS[: r % len(FORMS)]  # who goes first rotates
        measured = []
        for form in order:
            child = [
                sys.executable, "-m", "benchmarks.run", "_serve_form", "--form", form, "--adapter", str(dirs[form]),
                "--texts", str(texts_file), "--repeats", str(timing.get("latency_texts", 100)),
                "--batch", str(batch), "--threads", str(timing.get("threads", os.cpu_count())),
            ]  # fmt: skip
            measured.append(record_from_child(child, "SERVE_RECORD ", {"form": form}))
            print(json.dumps(measured[-1]), flush=True)
        rounds.append(measured)
    return {
        "adapter": spec.get("adapter_about", str(adapter)),
        "export_exit": export_exit,
        "export_seconds": export_seconds,
        "merge_exit": merge_exit,
        "verification": report["verification"],
        "verified": report["verified"],
        "export_files": report["files"],
        "rounds": rounds,
        "summary": summarize(rounds, batch),
    }


def summarize(rounds: list[list[dict]], batch: int) -> dict[str, Any]:
    """Each form's median over the rounds, and int8 against PyTorch fp32: speed-up and size ratio."""
    key = f"texts_per_second_batch{batch}"
    table = {}
    for form in FORMS:
        records = [m for r in rounds for m in r if m.get("form") == form and key in m]
        if not records:
            continue
        table[form] = {
            "latency_ms_batch1_median": statistics.median(m["latency_ms_batch1"]["median"] for m in records),
            "latency_ms_batch1_p90": statistics.median(m["latency_ms_batch1"]["p90"] for m in records),
            key: statistics.median(m[key] for m in records),
            "file_mb": records[0]["file_mb"],
            "peak_rss_mb": statistics.median(m["peak_rss_mb"] for m in records),
            "rounds": len(records),
        }
    if {"pytorch_fp32", "onnx_int8"} <= set(table):
        base, int8 = table["pytorch_fp32"], table["onnx_int8"]
        table["int8_vs_pytorch"] = {
            "throughput_ratio": round(int8[key] / base[key], 2),
            "size_ratio": round(int8["file_mb"] / base["file_mb"], 3),
            "targets": {"throughput_ratio": ">= 2", "size_ratio": "<= 0.25"},
        }
    if {"pytorch_fp32", "onnx_fp32"} <= set(table):
        table["onnx_fp32_vs_pytorch"] = {
            "throughput_ratio": round(table["onnx_fp32"][key] / table["pytorch_fp32"][key], 2)
        }
    return table


def child(args) -> dict:
    texts = json.loads(Path(args.texts).read_text())
    return time_form(args.form, args.adapter, texts, args.repeats, args.batch, args.threads)
