"""The GPU check: the notebook as a user runs it (papermill) in bf16 and again in a T4's fp16, then the README's
commands on the adapter the bf16 notebook trained (predict, evaluate, merge and evaluate the merged model,
export --quantize int8, predict --onnx). Each step writes a run record (command, exit code, seconds, the commit read
when the step started, GPU, versions, its key metric) to OUT/gpu_check_<step>.json; the check passes when every
step exits 0.

    QLORA_MINILM=... QLORA_IMDB=... python -m benchmarks.gpu_check [--out benchmarks/results/runs] [--work DIR]

The notebook runs the full profile on MiniLM (the only real weights offline) and the 20k IMDb reviews, with the
defaults of today; the steps took 4.4 minutes on one H100 and 8.9 on another (the records' seconds, results/runs/).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.timed import METRICS_KEPT, commit, record

NOTEBOOK = "QLoRA_BERT_TextClassification.ipynb"
CLI = [sys.executable, "-m", "qlora_helpers"]


def step(name: str, command: list[str], out: Path, metrics: Path | None = None, keep=(), notebook=None, key=None):
    """Run one step, timed, and write its record; `key` gives the step's key metric once the command is done."""
    at = commit()
    print(f"== {name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    code = subprocess.run(command).returncode
    seconds = time.perf_counter() - started
    extra = {"key_metric": key_metric(key)}
    path = out / f"gpu_check_{name}.json"
    record(f"gpu_check_{name}", command, seconds, code, None, metrics, path, notebook, at, keep or METRICS_KEPT, extra)
    print(f"== {name}: exit {code} in {seconds:.1f} s, key metric {extra['key_metric']} ({path})", flush=True)
    return code


def key_metric(key):
    """The step's key metric, also after a failed step where its files say something (an export that missed its
    targets still writes its report); None where there is nothing to read."""
    try:
        return key() if key else None
    except (OSError, ValueError, KeyError):
        return None


def reload_line(executed: Path) -> str | None:
    """The notebook's reload check, as it printed it."""
    if not executed.is_file():
        return None
    import nbformat

    for cell in nbformat.read(executed, as_version=4).cells:
        for output in cell.get("outputs", []):
            for line in str(output.get("text", "")).splitlines():
                if line.startswith("reloaded adapter:"):
                    return line
    return None


def agreement(predictions: Path, reference: Path, column: str) -> dict:
    """How many predicted labels of `predictions` (a predict --output .csv) equal `reference`'s `column`."""
    mine, theirs = pd.read_csv(predictions), pd.read_csv(reference)
    same = (mine["label"].to_numpy() == theirs[column].to_numpy()).mean() if len(mine) == len(theirs) else None
    return {"rows": len(mine), f"same_label_as_{reference.stem}": None if same is None else round(float(same), 6)}


def notebook_command(executed: Path, work: Path, name: str, dtype: str) -> list[str]:
    """The notebook as a user runs it (papermill), on the shared MiniLM and IMDb reviews, in `dtype`."""
    model, data = os.environ["QLORA_MINILM"], os.environ["QLORA_IMDB"]
    return [
        sys.executable, "-m", "papermill", NOTEBOOK, str(executed), "-p", "PROFILE", "full", "-p", "MODEL", model,
        "-p", "DATASET", data, "-y", "LABEL_NAMES: [negative, positive]", "-p", "COMPUTE_DTYPE", dtype,
        "-p", "GPUS", "1", "-p", "OUTPUT_DIR", str(work / name), "-p", "PLOTS_DIR", str(work / f"plots-{name}"),
        "--cwd", ".", "--log-output",
    ]  # fmt: skip


def notebook_steps(work: Path, out: Path) -> list[int]:
    """The notebook in bf16 (or the GPU's own 16-bit type), then forced to fp16 as a T4 runs it."""
    codes = []
    for name, dtype in (("bf16", "auto"), ("fp16", "float16")):
        executed = work / f"notebook_{name}.ipynb"
        command = notebook_command(executed, work, name, dtype)
        key = lambda e=executed: reload_line(e)  # noqa: E731
        codes.append(step(f"notebook_{name}", command, out, work / name / "metrics.json", notebook=executed, key=key))
    return codes


def command_steps(work: Path, out: Path) -> list[int]:
    """The README's commands on the adapter the bf16 notebook trained."""
    run, table = work / "bf16", work / "bf16" / "test_predictions.csv"
    text = ["--dataset", str(table), "--text-column", "text"]
    pred, onnx = work / "pred.csv", work / "onnx"
    codes = [
        step(
            "predict",
            [*CLI, "predict", "--adapter", str(run), *text, "--output", str(pred)],
            out,
            key=lambda: agreement(pred, table, "predicted"),
        )
    ]
    for name, model_dir in (("evaluate", run), ("evaluate_merged", work / "merged")):
        if name == "evaluate_merged":
            codes.append(step("merge", [*CLI, "merge", "--adapter", str(run), "--output", str(model_dir)], out))
        report = work / name / "evaluation.json"  # its table of mistakes goes beside it: one folder each
        command = [
            *CLI,
            "evaluate",
            "--adapter",
            str(model_dir),
            *text,
            "--label-column",
            "true",
            "--output",
            str(report),
        ]
        codes.append(step(name, command, out, report, keep=("accuracy", "f1_macro", "rows")))
    codes.append(
        step(
            "export",
            [*CLI, "export", "--adapter", str(run), "--output", str(onnx), "--quantize", "int8"],
            out,
            onnx / "export_report.json",
            keep=("verified",),
            key=lambda: [
                {k: f[k] for k in ("precision", "label_agreement", "pytorch", "onnx", "passed")}
                for f in json.loads((onnx / "export_report.json").read_text())["verification"]
            ],
        )
    )
    command = [*CLI, "predict", "--onnx", str(onnx), *text, "--output", str(work / "onnx_pred.csv")]
    codes.append(step("predict_onnx", command, out, key=lambda: agreement(work / "onnx_pred.csv", pred, "label")))
    return codes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/runs"))
    parser.add_argument("--work", type=Path, help="where the runs' outputs go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out, work = args.out, args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    codes = notebook_steps(work, out) + command_steps(work, out)
    failed = sum(1 for c in codes if c)
    print(f"GPU check: {len(codes) - failed} of {len(codes)} steps ended with exit 0")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
