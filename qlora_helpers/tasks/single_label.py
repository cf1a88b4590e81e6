"""One class per text: softmax over the classes, cross-entropy, accuracy selects the checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from qlora_helpers.errors import UserError, require
from qlora_helpers.tasks import labels as lb
from qlora_helpers.tasks.base import Task
from qlora_helpers.tasks.common import class_table, ranked
from qlora_helpers.tasks.labels import LabelSpace
from qlora_helpers.tasks.metrics import classification_metrics, softmax, trainer_metrics

if TYPE_CHECKING:
    import torch


class SingleLabel(Task):
    """One class per text: softmax over the classes, cross-entropy, accuracy selects the checkpoint."""

    name = "single_label"
    problem_type = "single_label_classification"
    selection_metric = "accuracy"
    noun, unit = "classes", "class"
    summary_keys = ("accuracy", "f1_positive", "f1_macro", "f1_weighted")
    judged, judged_short = "each text's top label", "top label"
    mistakes = "misclassified texts, most confident first"  # what evaluate's table of mistakes lists

    def keep(self, cells: pd.Series) -> pd.Series:
        """Rows whose label counts: a row with no label is dropped (and counted)."""
        return cells.map(lb.present)

    def label_space(self, cells: pd.Series, names: list[str] | None, column: str, **_: Any) -> LabelSpace:
        require(
            not lb.looks_like_scores(cells),
            f"label column {column!r} holds numbers with fractions (e.g. {lb.a_fraction(cells)}); to predict the "
            f"number, pass --task regression; for classes, use whole numbers or names",
        )
        values = lb.class_values(cells, column)
        require(
            len(values) >= 2,
            f"only one class ({values[0]!r}) in label column {column!r}; a classifier needs at least two - "
            f"check --label-column or the file",
        )
        if names is not None:
            require(
                len(names) == len(values),
                f"{len(names)} label names {names} given for {len(values)} classes {values}; give one name per "
                f"class, in sorted order of the values",
            )
        return LabelSpace(tuple(names or map(str, values)), tuple(values), column)

    def check_saved(self, space: LabelSpace, where: str) -> None:
        """A saved model's classes are in the order training made them (integers numerically, text alphabetically):
        an edited order would swap labels without a word."""
        keys = [lb.class_key(v) for v in space.values]
        require(
            keys == sorted(keys, key=lambda k: (isinstance(k, str), k)),
            f"{where} lists the classes out of their sorted order ({', '.join(map(str, space.values[:6]))}): it was "
            f"edited after training, and the labels would be swapped; copy it again from the training run",
        )

    def encode(self, cells: pd.Series, space: LabelSpace, where: str) -> pd.Series:
        return lb.encode_classes(cells, space, where)

    def targets(self, encoded: pd.Series, space: LabelSpace) -> list:
        return encoded.astype(int).tolist()

    def strata(self, encoded: pd.Series, most: int | None = None) -> pd.Series:
        """The class: each keeps its share in every split (`most`, the strata a split has room for, is unused)."""
        return encoded

    def check_splittable(self, encoded: pd.Series, space: LabelSpace, hint: str = "") -> None:
        """A stratified three-way split needs at least 3 rows of every class."""
        counts = encoded.value_counts()
        rare = counts[counts < 3]
        if not rare.empty:
            raise UserError(
                f"class {space.names[int(rare.index[0])]!r} has only {int(rare.iloc[0])} row(s); a stratified "
                f"train/validation/test split needs at least 3 per class - add rows or merge rare classes{hint}"
            )

    def counts(self, encoded: pd.Series, space: LabelSpace) -> dict[str, int]:
        return {space.names[i]: int(n) for i, n in sorted(encoded.value_counts().items())}

    def trainer_metrics(self, eval_pred) -> dict[str, float]:
        return trainer_metrics(eval_pred)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(logits.float(), targets.long(), weight=weights.to(logits.device))

    def class_weights(self, setting: str | list[float] | None, targets: list, space: LabelSpace):
        """auto: N / (K * n_c), so a balanced set gets 1 everywhere (scikit-learn's "balanced")."""
        import torch

        if setting is None or setting != "auto":
            return None if setting is None else torch.tensor(setting, dtype=torch.float32)
        counts = np.bincount(np.asarray(targets, dtype=int), minlength=space.num_labels)
        return torch.tensor(len(targets) / (space.num_labels * np.maximum(counts, 1)), dtype=torch.float32)

    def scores(
        self, encoded: pd.Series, logits: np.ndarray, space: LabelSpace, thresholds: Any = None
    ) -> dict[str, Any]:
        return classification_metrics(encoded.to_numpy(), logits.argmax(-1), space.id2label)

    def probabilities(self, logits: np.ndarray, space: LabelSpace) -> np.ndarray:
        return softmax(logits)

    def median_label_rows(self, targets: Any, num_labels: int) -> float | None:
        """Training rows of the median class."""
        if targets is None or len(targets) == 0:
            return None
        return float(np.median(np.bincount(np.asarray(targets, dtype=int), minlength=num_labels)))

    def calibration_truth(self, encoded: pd.Series, space: LabelSpace) -> np.ndarray:
        """Class ids."""
        return encoded.to_numpy(dtype=np.int64)

    def nll(self, truth: np.ndarray, logits: np.ndarray) -> float:
        from scipy.special import log_softmax

        return float(-log_softmax(logits, axis=1)[np.arange(len(truth)), truth].mean())

    def separated(self, truth: np.ndarray, logits: np.ndarray) -> bool:
        """Every text's top class right."""
        return bool((logits.argmax(axis=1) == truth).all())

    def confidences(self, truth: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The top label's probability, and whether it was right, per text."""
        probs = softmax(logits)
        return probs.max(axis=1), (probs.argmax(axis=1) == truth).astype(np.float64)

    def brier(self, truth: np.ndarray, logits: np.ndarray, space: LabelSpace) -> float:
        """Over the classes of each text."""
        from sklearn.metrics import brier_score_loss

        return float(brier_score_loss(truth, softmax(logits), labels=list(range(space.num_labels))))

    def decide(self, logits: np.ndarray, thresholds: Any = None) -> np.ndarray:
        return logits.argmax(-1)

    def rows(
        self, logits: np.ndarray, space: LabelSpace, thresholds: Any = None, top_k: int | None = None
    ) -> list[dict]:
        return [
            {"label": space.names[int(p.argmax())], "probability": round(float(p.max()), 6), **ranked(space, p, top_k)}
            for p in softmax(logits)
        ]

    def table(self, encoded: pd.Series, logits: np.ndarray, space: LabelSpace, thresholds: Any = None) -> pd.DataFrame:
        """true / predicted / probability per row, and whether the row is a mistake."""
        names, probs = np.array(space.names), softmax(logits)
        return pd.DataFrame(
            {
                "true": names[encoded.to_numpy()],
                "predicted": names[logits.argmax(-1)],
                "probability": probs.max(-1).round(6),
                "_wrong": logits.argmax(-1) != encoded.to_numpy(),
                "_sort": probs.max(-1),
            }
        )

    def plot(self, encoded, logits, metrics, space, thresholds, directory, caption) -> dict[str, Any]:
        """The test split's picture: the confusion matrix."""
        from qlora_helpers.tasks.figures import plot_confusion_matrix

        path = plot_confusion_matrix(metrics["confusion_matrix"], metrics["labels"], directory, caption=caption)
        return {"confusion_matrix": path}

    def headline(self, m: dict[str, Any], prefix: str = "test_") -> str:
        return f"accuracy {m[prefix + 'accuracy']:.4f}, macro F1 {m[prefix + 'f1_macro']:.4f}"

    def report(self, m: dict[str, Any]) -> str:
        """The per-class report as the familiar text table, and the overall scores."""
        base = f"majority-class baseline {m['majority_baseline_accuracy']:.4f}"
        positive = f"   F1 of {m['positive_label']!r} {m['f1_positive']:.4f}" if "positive_label" in m else ""
        return class_table(m) + (
            f"\n{'accuracy':>14} {m['accuracy']:9.4f}   macro F1 {m['f1_macro']:.4f}   weighted F1 "
            f"{m['f1_weighted']:.4f}   {base}{positive}"
        )
