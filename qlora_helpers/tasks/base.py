"""The contract every kind of task fulfils: `Task`, an abstract base class. The rest of the package holds a task
object and asks it; nothing outside tasks/ asks which task it is.

Where two tasks behave alike, the behaviour is written here once; each task module implements the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from qlora_helpers.errors import require
from qlora_helpers.tasks.labels import LabelSpace

if TYPE_CHECKING:
    import torch


class Task(ABC):
    name: str
    problem_type: str  # transformers' name for the head and loss
    selection_metric: str  # picks the checkpoint, and ranks trials in a study
    noun: str
    unit: str
    summary_keys: tuple[str, ...]
    split_note = ""  # how the split was stratified, when it needs saying
    weighable = True  # --class-weights applies
    classifies = True  # decides among labels (a temperature can calibrate its probabilities); a regression does not
    compared = "probability"  # what an export's largest difference is measured on
    judged = ""  # which probabilities calibration judges (the record and the model card say it)
    judged_short = ""  # the same, as the reliability diagram's title says it
    mistakes: str  # what evaluate's table of mistakes lists

    # ---- reading labels ----------------------------------------------------------------------------------------
    @abstractmethod
    def keep(self, cells: pd.Series) -> pd.Series:
        """Rows whose label counts."""

    @abstractmethod
    def label_space(self, cells: pd.Series, names: list[str] | None, column: str, **_: Any) -> LabelSpace:
        """The label space training decides once from the training split's cells."""

    @abstractmethod
    def encode(self, cells: pd.Series, space: LabelSpace, where: str) -> pd.Series: ...

    @abstractmethod
    def targets(self, encoded: pd.Series, space: LabelSpace) -> list: ...

    def check_saved(self, space: LabelSpace, where: str) -> None:
        """A saved label space that an edit could have broken without a word (nothing to check by default)."""
        return None

    def fit_note(self, encoded: pd.Series) -> str | None:
        """A note when the labels look like another task's."""
        return None

    # ---- splitting ----------------------------------------------------------------------------------------------
    @abstractmethod
    def strata(self, encoded: pd.Series, most: int | None = None) -> pd.Series: ...

    @abstractmethod
    def check_splittable(self, encoded: pd.Series, space: LabelSpace, hint: str = "") -> None: ...

    @abstractmethod
    def counts(self, encoded: pd.Series, space: LabelSpace) -> dict[str, int]: ...

    def absent(self, encoded: pd.Series, space: LabelSpace) -> list[str]:
        """The classes (labels) with no row in a split: worth a note, since they cannot be scored there."""
        counts = self.counts(encoded, space)
        return [n for n in space.names if counts.get(n, 0) == 0]

    def median_label_rows(self, targets: Any, num_labels: int) -> float | None:
        """Training rows of a typical class or label: how often one pass shows it (None: nothing to count)."""
        return None

    # ---- training -----------------------------------------------------------------------------------------------
    @abstractmethod
    def trainer_metrics(self, eval_pred) -> dict[str, float]: ...

    @abstractmethod
    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def class_weights(self, setting: str | list[float] | None, targets: list, space: LabelSpace): ...

    # ---- deciding and scoring -----------------------------------------------------------------------------------
    @abstractmethod
    def probabilities(self, logits: np.ndarray, space: LabelSpace) -> np.ndarray:
        """What a user reads: class probabilities, label probabilities, or the score on its own scale."""

    @abstractmethod
    def decide(self, logits: np.ndarray, thresholds: Any = None) -> np.ndarray: ...

    @abstractmethod
    def scores(
        self, encoded: pd.Series, logits: np.ndarray, space: LabelSpace, thresholds: Any = None
    ) -> dict[str, Any]: ...

    @abstractmethod
    def rows(
        self, logits: np.ndarray, space: LabelSpace, thresholds: Any = None, top_k: int | None = None
    ) -> list[dict]: ...

    @abstractmethod
    def table(
        self, encoded: pd.Series, logits: np.ndarray, space: LabelSpace, thresholds: Any = None
    ) -> pd.DataFrame: ...

    def tune(self, encoded: pd.Series, logits: np.ndarray, space: LabelSpace) -> dict[str, Any] | None:
        """A decision rule to fit on validation after training: none unless the task has one."""
        return None

    def thresholds_from(self, record: dict[str, Any] | None, space: LabelSpace, mode: str | None = None):
        """The decision thresholds a saved rule gives (`mode` picks one of a multi-label model's); None here."""
        require(mode is None, f"--thresholds applies to multi-label models; this one is {self.name}")
        return None

    def agreement(self, a: np.ndarray, b: np.ndarray, space: LabelSpace, thresholds: Any = None) -> float:
        """The share of rows two models decide alike (e.g. a 4-bit adapter and its merged or exported form)."""
        da, db = self.decide(a, thresholds), self.decide(b, thresholds)
        return float((da.reshape(len(da), -1) == db.reshape(len(db), -1)).all(axis=1).mean())

    def decision_agreement(self, a: np.ndarray, b: np.ndarray, thresholds: Any = None) -> float | None:
        """The share of single decisions two models make alike, where a row holds several (None: one per row)."""
        return None

    def export_targets(self, targets: dict[str, float], space: LabelSpace) -> dict[str, float]:
        """An export's targets, on this task's scale."""
        return targets

    # ---- calibration (classifiers only) --------------------------------------------------------------------------
    def calibration_truth(self, encoded: pd.Series, space: LabelSpace) -> np.ndarray:
        raise NotImplementedError(f"{self.name} has no probabilities to calibrate")

    def nll(self, truth: np.ndarray, logits: np.ndarray) -> float:
        raise NotImplementedError(f"{self.name} has no probabilities to calibrate")

    def separated(self, truth: np.ndarray, logits: np.ndarray) -> bool:
        raise NotImplementedError(f"{self.name} has no probabilities to calibrate")

    def confidences(self, truth: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError(f"{self.name} has no probabilities to calibrate")

    def brier(self, truth: np.ndarray, logits: np.ndarray, space: LabelSpace) -> float:
        raise NotImplementedError(f"{self.name} has no probabilities to calibrate")

    # ---- reporting ----------------------------------------------------------------------------------------------
    @abstractmethod
    def plot(self, encoded, logits, metrics, space, thresholds, directory, caption) -> dict[str, Any]: ...

    @abstractmethod
    def headline(self, m: dict[str, Any], prefix: str = "test_") -> str: ...

    @abstractmethod
    def report(self, m: dict[str, Any]) -> str: ...
