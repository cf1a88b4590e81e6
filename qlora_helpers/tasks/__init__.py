"""What differs between kinds of task, decided once and carried by the data and by the saved model.

A task turns label cells into targets, names the model's `problem_type` and loss, scores predictions,
picks the checkpoint by its own metric, turns logits into decisions (argmax, per-label thresholds, the
number itself), and writes prediction rows and tables. The package also owns what those need: label spaces
(labels), metrics, multi-label thresholds, temperature calibration, and the task's own figures.
A new kind of task is one new module here with its class (a `Task`, base.py), and its entry in TASKS. torch is
imported only where a loss or a weight tensor is made: predicting from an ONNX export reads the task without it.
May import: errors, config, figures. Never data, modeling or anything above.
"""

from __future__ import annotations

import pandas as pd

from qlora_helpers.config import TASK_CHOICES
from qlora_helpers.errors import UserError, require
from qlora_helpers.tasks import labels as lb
from qlora_helpers.tasks.multi_label import MultiLabel
from qlora_helpers.tasks.regression import Regression
from qlora_helpers.tasks.single_label import SingleLabel

__all__ = ["TASKS", "TASK_CHOICES", "MultiLabel", "Regression", "SingleLabel", "choose", "get"]


TASKS = {t.name: t for t in (SingleLabel(), MultiLabel(), Regression())}


def get(name: str):
    require(name in TASKS, f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


def choose(setting: str, cells: pd.Series, delimiter: str = ",", label_columns: list[str] | None = None):
    """The task `setting` names; `auto` reads the labels: label columns -> multi-label, numbers with
    fractions -> regression, else one class per row (several labels in a cell: say to pass --multi-label)."""
    if setting != "auto":
        return get(setting)
    if label_columns:
        return TASKS["multi_label"]
    present = cells[cells.map(lb.present)]
    several = lb.looks_multi_label(present, delimiter)
    if several is not None:
        raise UserError(
            f"label cell {several!r} holds several labels; pass --multi-label to train one output per label "
            f"(or another --label-delimiter if {delimiter!r} is part of a class name)"
        )
    if lb.looks_like_scores(present):
        return TASKS["regression"]
    return TASKS["single_label"]
