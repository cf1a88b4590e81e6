"""The model card (README.md) of an ONNX export: what it is, how to use it, how it compares with PyTorch, and
whether it met its targets (an export that missed them says `unverified` at the top)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qlora_helpers.figures import model_display_name
from qlora_helpers.hub import base_model_hub_id
from qlora_helpers.report.model_card import calibration_note, front_matter, local_name
from qlora_helpers.run_files import METRICS


def verification_table(forms: list[dict[str, Any]]) -> str:
    rows = [
        "| file | rows | label agreement | max abs. difference | metric | PyTorch | ONNX | drop (points) | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in forms:
        drop = "undefined" if f["metric_drop_points"] is None else f"{f['metric_drop_points']:.2f}"
        rows.append(
            f"| {f['precision']} | {f['rows']:,} | {f['label_agreement']:.2%} | {f['max_abs_diff']:.2e} "
            f"({f['compared']}) | {f['metric']} | {f['pytorch']:.4f} | {f['onnx']:.4f} "
            f"| {drop} | {'yes' if f['passed'] else 'NO'} |"
        )
    return "\n".join(rows)


def write_export_card(directory: Path, report: dict[str, Any], name: str | None = None) -> Path:
    """The export's README.md, written into `directory` (the staging folder) for the folder `name` it becomes."""
    directory = Path(directory)
    name = name or directory.name
    pair = ' --text-pair "its second text"' if report.get("pairs") else ""
    metrics = json.loads((directory / METRICS).read_text()) if (directory / METRICS).is_file() else {}
    if report["verified"]:
        status = "**Verified**: every file below met its targets against the PyTorch model it was exported from."
    else:
        status = (
            "**Unverified**: at least one file missed its targets against the PyTorch model it was exported from "
            + ("(accepted with --force)." if report["accepted_with_force"] else "(export exited with an error).")
        )
    files = "\n".join(f"- `{v['file']}`: {k}, {v['mb']:,} MiB" for k, v in report["files"].items())
    trained = ""
    if metrics.get("task"):
        from qlora_helpers import tasks

        trained = f"\nOn its run's test split (PyTorch, as trained): {tasks.get(metrics['task']).headline(metrics)}."
    calibration = calibration_note(metrics).strip() if metrics else ""
    if not calibration:
        calibration = (
            "Probabilities are calibrated with the saved temperature."
            if report.get("temperature")
            else "The model was saved without a temperature: probabilities are the model's own."
        )
    hub_id = base_model_hub_id(report["base_model"])
    title = f"{hub_id or model_display_name(report['base_model'])} classifier, exported to ONNX"
    text = f"""{front_matter(hub_id, "onnx")}# {title}

{status}

A {report["task"]} classifier ({report["labels"]} labels) trained with QLoRA, merged (adapter folded into the
dequantized base) and exported with {report["exporter"]}. Exported from `{local_name(report["adapter"])}`.{trained}

## Files
{files}
- `tokenizer.json`, `classifier_config.json` (labels, task, input columns, max_length, truncation, thresholds,
  temperature): everything prediction needs
- `export_report.json`: the verification below, as data

## Use
```
qlora-bert predict --onnx {name} "a text to classify"{pair}
qlora-bert evaluate --onnx {name} --dataset labelled.csv
```
In Python, with only onnxruntime and tokenizers installed:
`from qlora_helpers.infer.onnx_model import OnnxClassifier; OnnxClassifier.load(dir).predict(["a text"])`.
The int8 file is used where it met its targets, else the fp32 one; `--precision` (`OnnxClassifier.load(dir,
"int8")`) picks a file by name.

## Verification against PyTorch
The same {report["verification"][0]["rows"]:,} labelled texts (`{local_name(report["verified_on"])}`) through the
merged PyTorch model (fp32, CPU) and each file; probabilities as `predict` prints them.

{verification_table(report["verification"])}

Targets: fp32 agreement >= 99.9% and max difference < 1e-3; int8 agreement >= 99% (per label decision for label
sets) and a metric at most 0.5 points below PyTorch's.

## Probabilities
{calibration}
"""
    path = directory / "README.md"
    path.write_text(text)
    return path
