"""Does an exported model decide as the PyTorch model it came from? Measured at export on labelled texts.

The same texts go through the merged model (PyTorch, fp32, CPU) and through each ONNX file. A form passes when
it meets its targets: fp32 must be the same model (agreement >= 99.9%, probabilities within 1e-3); int8 may round
but must keep the decisions and the score (agreement >= 99%, a task metric at most 0.5 points lower; multi-label:
macro-F1 at the saved thresholds). A label set agrees only if all its labels do, so for label sets the agreement
is counted per label decision: one flip among 28 labels is not a changed set of 28. Probabilities are compared as
`predict` prints them: calibrated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlora_helpers.errors import UserError, require

TARGETS = {
    "fp32": {"min_agreement": 0.999, "max_abs_diff": 1e-3},
    "int8": {"min_agreement": 0.99, "max_metric_drop_points": 0.5},
}
TEST_TABLE = "test_predictions.csv"  # what `train` wrote: every test row's text(s) and true label


def verification_frame(
    adapter_dir: Path, classifier_config, verify_file: str | None = None
) -> tuple[pd.DataFrame, str]:
    """The labelled rows to verify on, and where they came from: `verify_file` (a labelled file with training's
    columns, or a `test_predictions.csv`), else the run's own test split."""
    from qlora_helpers.data.prepare import read_labelled_file
    from qlora_helpers.data.tables import read_local_file

    path = Path(verify_file).expanduser() if verify_file else adapter_dir / TEST_TABLE
    require(
        path.is_file(),
        f"--verify-file {path} not found"
        if verify_file
        else f"{adapter_dir} has no {TEST_TABLE} (the test split "
        f"`train` writes) to verify the export on; pass a labelled file with --verify-file FILE",
    )
    columns = set(read_local_file(path, True).columns)
    if {"text", "true"} <= columns:  # the test table `train` wrote: label names in `true`
        pair = "text_pair" if "text_pair" in columns else None
        require(
            (pair is None) == (classifier_config.text_input.pair_column is None),
            f"{path} is the test table of a "
            + (
                "sentence-pair model, and this model reads single texts"
                if pair
                else "single-text model, and this model reads sentence pairs"
            )
            + "; pass this model's own test_predictions.csv or a labelled file of its columns with --verify-file",
        )
        frame = read_labelled_file(str(path), classifier_config, "text", "true", True, pair)
    else:
        try:
            frame = read_labelled_file(str(path), classifier_config)
        except UserError:  # its advice names train's column flags, which export does not take
            wanted = [
                *classifier_config.text_input.columns,
                classifier_config.text_input.pair_column,
                classifier_config.labels.column,
            ]
            raise UserError(
                f"--verify-file {path} cannot be read as this model's data: it has the columns "
                f"{sorted(map(str, columns))[:8]}, and export reads a labelled file with a header and the model's own "
                f"columns {[c for c in wanted if c]}; rename its columns so, or pass the run's test_predictions.csv"
            ) from None
    return frame, str(path)


def metric_drop(reference: float, exported: float) -> float | None:
    """How many points the export's metric lies below PyTorch's; None where only one of them is defined (a
    correlation of scores that are all tied is NaN: the export lost what PyTorch had)."""
    if np.isnan(reference) and np.isnan(exported):
        return 0.0
    if np.isnan(reference) or np.isnan(exported):
        return None
    return round(100 * (reference - exported), 4)


def compare(
    classifier_config, frame: pd.DataFrame, reference: np.ndarray, exported: np.ndarray, precision: str
) -> dict:
    """Agreement, largest probability difference and the task metric of both, against the precision's targets.

    Both sets of logits are the models' raw ones; the saved temperature is applied to both."""
    task, space, thresholds = classifier_config.task, classifier_config.labels, classifier_config.decision_thresholds()
    ref, out = classifier_config.calibrated(reference), classifier_config.calibrated(exported)
    metric = task.selection_metric
    ref_score = float(task.scores(frame["label"], ref, space, thresholds)[metric])
    out_score = float(task.scores(frame["label"], out, space, thresholds)[metric])
    diff = float(np.abs(task.probabilities(out, space) - task.probabilities(ref, space)).max())
    targets = task.export_targets(dict(TARGETS[precision]), space)
    record: dict[str, Any] = {
        "precision": precision,
        "rows": int(len(frame)),
        "label_agreement": round(task.agreement(out, ref, space, thresholds), 6),
        "compared": task.compared,
        "max_abs_diff": diff,
        "metric": metric + (" at the saved thresholds" if classifier_config.thresholds else ""),
        "pytorch": round(ref_score, 6),
        "onnx": round(out_score, 6),
        "metric_drop_points": metric_drop(ref_score, out_score),
        "targets": targets,
    }
    per_decision = task.decision_agreement(out, ref, thresholds)
    if per_decision is not None:
        record["per_label_decision_agreement"] = round(per_decision, 6)
    decisions = record.get("per_label_decision_agreement", record["label_agreement"])
    checks = [decisions >= targets["min_agreement"]]
    if "max_abs_diff" in targets:
        checks.append(diff < targets["max_abs_diff"])
    if "max_metric_drop_points" in targets:
        drop = record["metric_drop_points"]
        checks.append(drop is not None and drop <= targets["max_metric_drop_points"])
    record["passed"] = all(checks)
    return record


def describe(record: dict[str, Any]) -> str:
    verdict = "meets its targets" if record["passed"] else "MISSES its targets"
    return (
        f"{record['precision']}: {record['label_agreement']:.2%} of {record['rows']} decisions agree with PyTorch, "
        f"largest {record['compared']} difference {record['max_abs_diff']:.2e}, {record['metric']} "
        f"{record['pytorch']:.4f} (PyTorch) vs {record['onnx']:.4f} (ONNX): {verdict} {record['targets']}"
    )
