"""Calibration of trained adapters, measured on the CPU: the temperature `train` would fit, and ECE and Brier
score before and after, on validation (where T is fitted) and on test (where it is judged).

Adapters trained before calibration existed carry no temperature, so their validation split is rebuilt from the
training data with the run's own settings (same file, fractions and seed) and checked against the row hashes the
run saved (`seen_rows.npz`); test rows come from the run's `test_predictions.csv`. Logits come from the merged
fp32 model on the CPU, which decides as the 4-bit model does (`inference_modes`). For a multi-label adapter the
thresholds are tuned again on the calibrated validation probabilities, as `train` now does, and test macro-F1 is
reported at both sets of thresholds.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np


def validation_split(adapter: Path, data_files: dict[str, str]):
    """The run's validation rows, rebuilt from `data_files` (its dataset, test file and label names file moved to
    this machine) and checked against the hashes the run saved."""
    from qlora_helpers.config import TrainConfig
    from qlora_helpers.data.prepare import DataSettings, prepare_data
    from qlora_helpers.infer.evaluation import SEEN_ROWS, row_hashes
    from qlora_helpers.tasks.labels import read_label_names_file

    trained = json.loads((adapter / "training_config.json").read_text())
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in {**trained, **data_files}.items() if k in known})
    names = read_label_names_file(cfg.label_names_file) if cfg.label_names_file else cfg.label_names
    validation = prepare_data(DataSettings.from_config(cfg, " [SEP] ", names)).splits["validation"]
    with np.load(adapter / SEEN_ROWS) as seen:
        matched = int(np.isin(row_hashes(validation), seen["validation"]).sum())
    return validation, {"rows": len(validation), "rows_matching_the_runs_hashes": matched}


def calibrate_adapter(adapter: Path, data_files: dict[str, str], batch_size: int = 64) -> dict[str, Any]:
    from qlora_helpers.infer.inference import load_for_inference
    from qlora_helpers.infer.verify import verification_frame
    from qlora_helpers.tasks import calibration

    loaded = load_for_inference(adapter, "merged", "float32")
    classifier_config = loaded.classifier_config
    task, space = classifier_config.task, classifier_config.labels
    was_uncalibrated = classifier_config.temperature is None
    validation, check = validation_split(adapter, data_files)
    test, _ = verification_frame(adapter, classifier_config)

    def raw(frame):
        pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
        return loaded.raw_logits(frame["text"].tolist(), batch_size, True, pairs)

    val_logits, test_logits = raw(validation), raw(test)
    record = calibration.calibrate(task, validation["label"], val_logits, space)
    t = record["temperature"]
    record["test"] = calibration.measure(task, test["label"], test_logits, space, t)
    record["validation_split"] = check
    record["saved_without_temperature"] = was_uncalibrated
    if task.name == "multi_label":
        retuned = task.tune(validation["label"], val_logits / t, space)
        before = task.scores(test["label"], test_logits, space, classifier_config.decision_thresholds())["f1_macro"]
        after = task.scores(test["label"], test_logits / t, space, task.thresholds_from(retuned, space))["f1_macro"]
        record["test_f1_macro"] = {
            "saved_thresholds_raw_probabilities": round(float(before), 6),
            "thresholds_tuned_after_calibration": round(float(after), 6),
        }
    print(calibration.describe(record, "test"), flush=True)
    return record


def run_calibration(spec: dict[str, Any], output: Path, expand) -> dict[str, Any]:
    records = {}
    for entry in spec["adapters"]:
        adapter = Path(expand(entry["adapter"]))
        records[entry["name"]] = {
            "adapter": entry.get("about", str(adapter)),
            **calibrate_adapter(adapter, expand(entry.get("data", {}))),
        }
        from qlora_helpers.run_files import write_json

        write_json(output, {"records": records})
    return {"records": records, "not_measured": spec.get("not_measured", {})}
