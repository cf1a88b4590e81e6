"""What a trained model needs at prediction, saved beside its weights and read back by one pair of functions.

`ClassifierConfig.save(dir)` / `ClassifierConfig.load(dir)` play the part of `save_pretrained` /
`from_pretrained` for everything that is not a weight: the task, the labels, which columns make a row's
input, how texts were cut, the base model and how it was quantized, and the decision thresholds of a
multi-label model. `predict`, `evaluate`, `merge` and the export all read it; none opens run files itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from qlora_helpers import tasks
from qlora_helpers.data.text_input import TextInput
from qlora_helpers.errors import UserError, require
from qlora_helpers.tasks import thresholds
from qlora_helpers.tasks.labels import LabelSpace

FILE = "classifier_config.json"
LEGACY_FILES = ("label_mapping.json", "training_config.json")  # runs saved before classifier_config.json


@dataclass(frozen=True)
class ClassifierConfig:
    task_name: str  # the task's name (tasks.TASKS); `task` is the task object
    labels: LabelSpace
    text_input: TextInput
    max_length: int
    truncation: str
    base_model: str
    quant_type: str = "nf4"
    double_quant: bool = True
    cudnn_attention: bool = False
    thresholds: dict[str, Any] | None = None  # multi-label: thresholds.tune's record, tuned on validation
    temperature: float | None = None  # classifiers: fitted on validation after training (calibration.py)

    @property
    def task(self):
        """The task object (tasks.py) that scores, decides and writes rows for this model."""
        return tasks.get(self.task_name)

    @property
    def problem_type(self) -> str:
        return self.task.problem_type

    def decision_thresholds(self, mode: str | None = None) -> np.ndarray | None:
        """The decision thresholds (`mode`: per_label, global or 0.5; default the saved choice); None where
        the task decides without thresholds."""
        return self.task.thresholds_from(self.thresholds, self.labels, mode)

    def scores_at_thresholds(self, encoded, logits: np.ndarray, modes: tuple[str, ...]) -> dict[str, dict[str, float]]:
        """A label-set model's set scores at other saved thresholds than its own (`modes`: 0.5, global,
        per_label), for `train`'s metrics and `evaluate`'s report alike."""
        keys = ("f1_macro", "f1_micro", "f1_weighted", "subset_accuracy")
        scored = {
            mode: self.task.scores(encoded, logits, self.labels, self.decision_thresholds(mode)) for mode in modes
        }
        return {mode: {k: m[k] for k in keys} for mode, m in scored.items()}

    def with_thresholds(self, record: dict[str, Any] | None) -> ClassifierConfig:
        return replace(self, thresholds=record)

    def with_temperature(self, temperature: float | None) -> ClassifierConfig:
        return replace(self, temperature=temperature)

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """The model's logits divided by the saved temperature, so every probability shown (and every threshold
        tuned on them) is calibrated; unchanged for a model saved without one and for regression."""
        return logits if not self.temperature else (logits / self.temperature).astype(np.float32)

    def record(self) -> dict[str, Any]:
        return {
            "task": self.task_name,
            "labels": self.labels.record(),
            "input": self.text_input.record(),
            "max_length": self.max_length,
            "truncation": self.truncation,
            "base_model": self.base_model,
            "quant_type": self.quant_type,
            "double_quant": self.double_quant,
            "cudnn_attention": self.cudnn_attention,
            "thresholds": self.thresholds,
            "temperature": self.temperature,
        }

    def save(self, directory: str | Path) -> Path:
        from qlora_helpers.run_files import write_json

        return write_json(Path(directory) / FILE, self.record())

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> ClassifierConfig:
        classifier_config = cls(
            r["task"],
            LabelSpace.from_record(r["labels"]),
            TextInput.from_record(r["input"]),
            int(r["max_length"]),
            r.get("truncation", "head"),
            r["base_model"],
            r.get("quant_type", "nf4"),
            bool(r.get("double_quant", True)),
            bool(r.get("cudnn_attention", False)),
            r.get("thresholds"),
            r.get("temperature"),
        )
        require(
            classifier_config.max_length > 0,
            f"max_length {classifier_config.max_length} must be a positive number of tokens",
        )
        classifier_config.task.check_saved(classifier_config.labels, "the labels' values")
        t = classifier_config.temperature
        number = isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0
        require(
            t is None or (classifier_config.task.classifies and number),
            f"temperature {t!r} must be a positive finite number, and only for a classifier",
        )
        # thresholds in range, one per label: checked at load, not at the first prediction
        classifier_config.decision_thresholds()
        return classifier_config

    @classmethod
    def load(cls, directory: str | Path) -> ClassifierConfig:
        """The saved configuration of a `train` or `merge` output; a missing or damaged file is one line."""
        directory = Path(directory)
        require(directory.is_dir(), f"model directory not found: {directory}")
        path = directory / FILE
        if not path.is_file() and all((directory / f).is_file() for f in LEGACY_FILES):
            return _from_legacy_files(directory)
        require(
            path.is_file(),
            f"{directory} has no {FILE}: it is not the output of a finished `train` (or `merge`); pass the "
            f"--output-dir of a finished run",
        )
        try:
            return cls.from_record(json.loads(path.read_text()))
        except UserError as e:
            raise UserError(f"{path}: {e}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(
                f"{path} is damaged ({type(e).__name__}: {str(e)[:80]}); copy it again from the training run's "
                f"output directory"
            ) from None


def _from_legacy_files(directory: Path) -> ClassifierConfig:
    """A run saved by an earlier version: label_mapping.json, training_config.json and thresholds.json."""
    try:
        mapping = json.loads((directory / "label_mapping.json").read_text())
        trained = json.loads((directory / "training_config.json").read_text())
        names = [mapping["id2label"][str(i)] for i in range(len(mapping["id2label"]))]
        record = (
            json.loads((directory / thresholds.FILE).read_text()) if (directory / thresholds.FILE).is_file() else None
        )
        adapter = directory / "adapter_config.json"
        base = json.loads(adapter.read_text())["base_model_name_or_path"] if adapter.is_file() else str(directory)
        return ClassifierConfig.from_record(
            {
                "task": "multi_label" if mapping.get("multi_label") else "single_label",
                "labels": {
                    "names": names,
                    "values": mapping.get("label_values", names),
                    "column": mapping.get("label_column", "label"),
                    "delimiter": mapping.get("label_delimiter", ","),
                    "columns": mapping.get("label_columns"),
                },
                "input": {
                    "text_columns": mapping.get("text_columns") or [mapping.get("text_column", "text")],
                    "text_pair_column": mapping.get("text_pair_column"),
                    "separator": mapping.get("separator", " [SEP] "),
                },
                "max_length": trained["max_length"],
                "truncation": trained.get("truncation", "head"),
                "base_model": base,
                "quant_type": trained.get("quant_type", "nf4"),
                "double_quant": trained.get("double_quant", True),
                "cudnn_attention": trained.get("cudnn_attention", False),
                "thresholds": record,
            }
        )
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(
            f"{directory} holds damaged run files ({type(e).__name__}: {str(e)[:80]}); retrain, or copy them "
            f"again from the training run's output directory"
        ) from None
