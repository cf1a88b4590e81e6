"""Times a command and records what it took: `python -m benchmarks.timed NAME [--metrics FILE] -- CMD ...`.

`make demo` and `.ci/run` go through it, so the durations the docs quote come from a record that names the
machine, the versions, the commit and the date. Records go to `outputs/runs/NAME.json` (ignored: a user's
`make demo` leaves the checkout clean); the ones the docs quote are copied to `benchmarks/results/runs/` on
purpose, or written there with `--output`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RUNS = Path(__file__).resolve().parents[1] / "outputs" / "runs"
METRICS_KEPT = (
    "task",
    "test_accuracy",
    "test_f1_macro",
    "test_spearman",
    "train_runtime_s",
    "train_samples_per_second",
    "train_step_samples_per_second",
    "train_step_ms",
    "first_step_seconds",
    "optimizer_steps",
    "world_size",
    "compiled_layers",
    "cuda_graphs",
    "compute_dtype",
    "device",
)


def commit() -> str | None:
    """The commit a run starts from, read before it starts: the sender's where one is named (a copy of the tree
    sent to another machine may carry a stale .git, or none), else this checkout's HEAD, with `-dirty` when
    tracked files differ from it, so a figure from uncommitted code says so."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    here = Path(__file__).parent
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here)
    if head.returncode or not head.stdout.strip():
        return None
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=here
    )
    return head.stdout.strip() + ("-dirty" if changed.stdout.strip() else "")


def machine() -> dict[str, object]:
    """What the durations depend on: cores, memory, CPU model (and its AVX512-BF16 support), GPU."""
    info: dict[str, object] = {"cores": os.cpu_count(), "platform": platform.platform()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text()
        model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line), None)
        info |= {"cpu": model, "avx512_bf16": "avx512_bf16" in text}
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(meminfo.read_text().split()[1])
        info["memory_gib"] = round(kb / 2**20, 1)
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    return info


def notebook_cells(path: Path) -> dict[str, object]:
    """How much of an executed notebook ran: code cells, those that ran, those that ended in an error."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [c for c in code if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    return {
        "notebook": str(path),
        "code_cells": len(code),
        "cells_run": sum(1 for c in code if c.get("execution_count") is not None),
        "cells_with_errors": len(errors),
    }


def record(
    name: str,
    command: list[str],
    seconds: float,
    exit_code: int,
    started: float | None,
    metrics: Path | None,
    output: Path | None = None,
    notebook: Path | None = None,
    at_commit: str | None = None,
    keep: tuple[str, ...] = METRICS_KEPT,
    extra: dict | None = None,
):
    """The run record; `at_commit` is the commit read when the run started (`commit()` now, if not given)."""
    from qlora_helpers.run_files import library_versions, write_json

    payload = {
        "name": name,
        "command": " ".join(command),
        "exit_code": exit_code,
        "seconds": round(seconds, 1),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": at_commit or commit(),
        "machine": machine(),
        "versions": library_versions(),
    }
    if started is not None:
        payload["seconds_since_start"] = round(time.time() - started, 1)
    if metrics is not None and metrics.is_file():
        found = json.loads(metrics.read_text())
        payload["metrics"] = {k: found.get(k) for k in keep}
    if notebook is not None and notebook.is_file():
        payload["cells"] = notebook_cells(notebook)
    payload |= extra or {}
    return write_json(output or RUNS / f"{name}.json", payload)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.timed",
        description=__doc__.splitlines()[0],
        usage="%(prog)s NAME [--metrics FILE] [--started SECONDS] -- COMMAND ...",
    )
    parser.add_argument("name", help="record name: benchmarks/results/runs/NAME.json")
    parser.add_argument("--metrics", type=Path, help="a metrics.json whose scores go into the record")
    parser.add_argument("--started", type=float, help="epoch seconds when the whole job began (CI: before install)")
    parser.add_argument("--output", type=Path, help="where the record goes (default: outputs/runs/NAME.json)")
    parser.add_argument("--notebook", type=Path, help="an executed notebook: count the cells that ran")
    parser.add_argument("--keep", help="comma-separated keys of --metrics to record (default: a training run's)")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args, command = parser.parse_args(argv[:cut]), argv[cut + 1 :]
    if not command:
        parser.error("give the command to time after --")
    at_commit = commit()  # before the run: what it runs, not what the tree holds when it ends
    keep = tuple(args.keep.split(",")) if args.keep else METRICS_KEPT
    start = time.perf_counter()
    exit_code = subprocess.run(command).returncode
    seconds = time.perf_counter() - start
    path = record(
        args.name, command, seconds, exit_code, args.started, args.metrics, args.output, args.notebook, at_commit, keep
    )
    print(f"timed: {' '.join(command)} took {json.loads(path.read_text())['seconds']} s (exit {exit_code}): {path}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
