"""How close and how fast the three inference forms are: 4-bit, 16-bit unmerged, merged.

Agreement between the forms comes from `qlora_helpers.infer.inference.mode_agreement`. `time_mode` measures one
form in the current process: weight memory, latency per batch at batch 1 and 64
(synchronised, after warm-up; median of repeats), throughput and peak memory. `run_modes` starts one
process per form, so each starts with a clean allocator.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import record_from_child
from qlora_helpers.hardware import synchronize
from qlora_helpers.infer.inference import MODES, load_for_inference, mode_agreement

MIB = 2**20


def time_mode(
    adapter_dir: str | Path, mode: str, texts: list[str], batch_sizes: tuple[int, ...] = (1, 64), repeats: int = 20
) -> dict[str, Any]:
    """Latency and memory of one inference form, measured in this process."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else 0
    t = time.perf_counter()
    loaded = load_for_inference(adapter_dir, mode)
    gc.collect()  # the merge's and dequantization's discarded objects must not count as weights
    synchronize()
    record: dict[str, Any] = {
        "mode": mode,
        "device": loaded.hardware.name,
        "load_seconds": round(time.perf_counter() - t, 2),
        "weight_memory_mb": round((torch.cuda.memory_allocated() - before) / MIB, 1) if cuda else None,
        "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch."),
        "max_length": loaded.classifier_config.max_length,
        "batches": {},
    }
    model, tok = loaded.model, loaded.tokenizer
    device = next(p.device for p in model.parameters())
    for bs in batch_sizes:
        batch = tok(
            texts[:bs],
            truncation=True,
            max_length=loaded.classifier_config.max_length,
            padding="max_length",
            return_tensors="pt",
        ).to(device)
        with torch.no_grad():
            for _ in range(3):  # warm-up: kernels, allocator, dequantization buffers
                model(**batch)
            synchronize()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(**batch)
                synchronize()
                times.append(time.perf_counter() - start)
        ms = 1000 * statistics.median(times)
        record["batches"][str(bs)] = {
            "latency_ms": round(ms, 3),
            "samples_per_second": round(bs / ms * 1000, 1),
            "tokens_per_text": loaded.classifier_config.max_length,
        }
    record["peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / MIB, 1) if cuda else None
    return record


def run_modes(
    adapter_dir: str | Path, texts_file: str | Path, output: Path, modes: tuple[str, ...] = MODES, repeats: int = 20
) -> dict[str, Any]:
    """Each mode timed in its own process; plus agreement on the texts; all in one JSON with provenance."""
    records = []
    for mode in modes:
        child = [
            sys.executable,
            "-m",
            "benchmarks.run",
            "_infer_mode",
            "--adapter",
            str(adapter_dir),
            "--mode",
            mode,
            "--texts",
            str(texts_file),
            "--repeats",
            str(repeats),
        ]
        records.append(record_from_child(child, "INFER_RECORD ", {"mode": mode}))
        print(records[-1], flush=True)
    texts = Path(texts_file).read_text(encoding="utf-8").splitlines()
    result = {
        "command": " ".join(sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "adapter": str(adapter_dir),
        "records": records,
        "agreement": mode_agreement(adapter_dir, texts, modes),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    return result
