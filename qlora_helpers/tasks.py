"""What differs between kinds of task, decided once and carried by the data and by the saved model.

A task turns label cells into targets, names the model's `problem_type` and loss, scores predictions,
picks the checkpoint by its own metric, turns logits into decisions (argmax, per-label thresholds, the
number itself), and writes prediction rows and tables. Nothing outside this module asks which task it is.
A new kind of task is one new class here (and its entry in TASKS).

torch is imported only where a loss or a weight tensor is made: predicting from an ONNX export reads the task
without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import labels as lb
from .errors import UserError, require
from .labels import LabelSpace
from .metrics import (
    classification_metrics,
    multi_label_metrics,
    multi_label_trainer_metrics,
    regression_metrics,
    regression_trainer_metrics,
    sigmoid,
    softmax,
    trainer_metrics,
)

if TYPE_CHECKING:
    import torch

TASK_CHOICES = ("auto", "single_label", "multi_label", "regression")


class SingleLabel:
    """One class per text: softmax over the classes, cross-entropy, accuracy selects the checkpoint."""

    name = "single_label"
    problem_type = "single_label_classification"
    selection_metric = "accuracy"
    noun, unit = "classes", "class"
    summary_keys = ("accuracy", "f1_positive", "f1_macro", "f1_weighted")
    split_note = ""  # how the split was stratified, when it needs saying
    weighable = True  # --class-weights applies

    def keep(self, cells: pd.Series) -> pd.Series:
        """Rows whose label counts: a row with no label is dropped (and counted)."""
        return cells.map(lb.present)

    def label_space(self, cells: pd.Series, names: list[str] | None, column: str, **_: Any) -> LabelSpace:
        require(
            not lb.looks_like_scores(cells),
            f"label column {column!r} holds numbers with fractions (e.g. {cells.iloc[0]!r}); to predict the "
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

    def encode(self, cells: pd.Series, space: LabelSpace, where: str) -> pd.Series:
        return lb.encode_classes(cells, space, where)

    def targets(self, encoded: pd.Series, space: LabelSpace) -> list:
        return encoded.astype(int).tolist()

    def strata(self, encoded: pd.Series) -> pd.Series:
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

    def absent(self, encoded: pd.Series, space: LabelSpace) -> list[str]:
        """The classes (labels) with no row in a split: worth a note, since they cannot be scored there."""
        counts = self.counts(encoded, space)
        return [n for n in space.names if counts.get(n, 0) == 0]

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

    def scores(self, encoded: pd.Series, logits: np.ndarray, space: LabelSpace, cut: Any = None) -> dict[str, Any]:
        return classification_metrics(encoded.to_numpy(), logits.argmax(-1), space.id2label)

    def decide(self, logits: np.ndarray, cut: Any = None) -> np.ndarray:
        return logits.argmax(-1)

    def rows(self, logits: np.ndarray, space: LabelSpace, cut: Any = None, top_k: int | None = None) -> list[dict]:
        return [
            {"label": space.names[int(p.argmax())], "probability": round(float(p.max()), 6), **ranked(space, p, top_k)}
            for p in softmax(logits)
        ]

    def table(self, encoded: pd.Series, logits: np.ndarray, space: LabelSpace, cut: Any = None) -> pd.DataFrame:
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

    def tune(self, encoded: pd.Series, logits: np.ndarray, space: LabelSpace) -> dict[str, Any] | None:
        """A decision rule to fit on validation after training: none for one class per row."""
        return None

    def cut(self, record: dict[str, Any] | None, space: LabelSpace, mode: str | None = None):
        """The decision thresholds a saved rule gives (`mode` picks one of a multi-label model's); None here."""
        require(mode is None, f"--thresholds applies to multi-label models; this one is {self.name}")
        return None

    def plot(self, encoded, logits, metrics, space, cut, directory, caption) -> dict[str, Any]:
        """The test split's picture: the confusion matrix."""
        from .plots import plot_confusion_matrix

        path = plot_confusion_matrix(metrics["confusion_matrix"], metrics["labels"], directory, caption=caption)
        return {"confusion_matrix": path}

    def agreement(self, a: np.ndarray, b: np.ndarray, space: LabelSpace, cut: Any = None) -> float:
        """The share of rows two models decide alike (e.g. a 4-bit adapter and its merged or exported form)."""
        da, db = self.decide(a, cut), self.decide(b, cut)
        return float((da.reshape(len(da), -1) == db.reshape(len(db), -1)).all(axis=1).mean())

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


class MultiLabel(SingleLabel):
    """Any number of labels per text: a sigmoid per label, BCE, thresholds tuned on validation."""

    name = "multi_label"
    problem_type = "multi_label_classification"
    selection_metric = "f1_macro"
    noun, unit = "labels", "label"
    summary_keys = ("f1_macro", "f1_micro", "subset_accuracy", "roc_auc_macro")
    split_note = "; label sets stratified by each row's rarest label"

    def keep(self, cells: pd.Series) -> pd.Series:
        return pd.Series(True, index=cells.index)  # an empty cell is a valid row: no label applies

    def label_space(
        self,
        cells: pd.Series,
        names: list[str] | None,
        column: str,
        delimiter: str = ",",
        columns: list[str] | None = None,
        **_: Any,
    ) -> LabelSpace:
        if columns:
            given = list(names) if names is not None else list(columns)
            require(
                len(given) == len(columns),
                f"{len(given)} label names given for {len(columns)} label columns; give one name per column",
            )
            return LabelSpace(tuple(given), tuple(columns), column, delimiter, tuple(columns))
        lb.check_delimiter(cells, delimiter, column)
        sets = [lb.split_label_cell(c, delimiter) for c in cells]
        values, label_names = lb.set_values(sets, names, column)
        return LabelSpace(tuple(label_names), tuple(values), column, delimiter)

    def encode(self, cells: pd.Series, space: LabelSpace, where: str) -> pd.Series:
        sets = [c if isinstance(c, tuple) else lb.split_label_cell(c, space.delimiter) for c in cells]
        return pd.Series(lb.encode_sets(sets, space, where), index=cells.index, dtype=object)

    def targets(self, encoded: pd.Series, space: LabelSpace) -> list:
        return lb.multi_hot(list(encoded), space.num_labels).tolist()

    def strata(self, encoded: pd.Series) -> pd.Series:
        """Each row's rarest label (-1: no label); labels with fewer than 3 such rows share one stratum,
        so rare labels reach every split in proportion and the split still works."""
        counts: dict[int, int] = {}
        for ids in encoded:
            for i in ids:
                counts[i] = counts.get(i, 0) + 1
        key = encoded.map(lambda ids: min(ids, key=lambda i: (counts[i], i)) if ids else -1)
        return key.where(key.map(key.value_counts()) >= 3, -2)

    def check_splittable(self, encoded, space, hint=""):
        return None  # rare labels share a stratum (strata)

    def counts(self, encoded: pd.Series, space: LabelSpace) -> dict[str, int]:
        """Positives per label, plus the rows with no label at all."""
        hot = lb.multi_hot(list(encoded), space.num_labels)
        return {**dict(zip(space.names, hot.sum(0).astype(int).tolist())), "(no label)": int((hot.sum(1) == 0).sum())}

    def trainer_metrics(self, eval_pred) -> dict[str, float]:
        return multi_label_trainer_metrics(eval_pred)

    def loss(self, logits, targets, weights):
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(
            logits.float(), targets.float(), pos_weight=weights.to(logits.device)
        )

    def class_weights(self, setting, targets, space):
        """auto: each label's positives weighed by sqrt(negatives / positives), which lifts rare labels
        without letting one with a few dozen examples swamp the rest."""
        import torch

        if setting is None or setting != "auto":
            return None if setting is None else torch.tensor(setting, dtype=torch.float32)
        y = np.asarray(targets)
        positives = y.sum(axis=0)
        return torch.tensor(np.sqrt((len(y) - positives) / np.maximum(positives, 1)), dtype=torch.float32)

    def scores(self, encoded, logits, space, cut=0.5):
        hot = lb.multi_hot(list(encoded), space.num_labels)
        return multi_label_metrics(hot, sigmoid(logits), 0.5 if cut is None else cut, space.id2label)

    def decide(self, logits, cut=0.5):
        return sigmoid(logits) >= (0.5 if cut is None else cut)

    def rows(self, logits, space, cut=0.5, top_k=None):
        out = []
        for p, chosen in zip(sigmoid(logits), self.decide(logits, cut)):
            order = [j for j in np.argsort(-p, kind="stable") if chosen[j]]
            out.append(
                {
                    "labels": [space.names[j] for j in order],
                    "label_probabilities": {space.names[j]: round(float(p[j]), 6) for j in order},
                    **ranked(space, p, top_k),
                }
            )
        return out

    def table(self, encoded, logits, space, cut=0.5):
        """A row is wrong when its predicted set differs; its confidence is the largest distance between a
        probability and the truth, so the most confidently wrong label set comes first."""
        names, probs = np.array(space.names), sigmoid(logits)
        truth = lb.multi_hot(list(encoded), space.num_labels).astype(bool)
        chosen = self.decide(logits, cut)
        d = space.delimiter
        return pd.DataFrame(
            {
                "true": [d.join(names[row]) for row in truth],
                "predicted": [d.join(names[row]) for row in chosen],
                "probabilities": [d.join(f"{x:.4f}" for x in p[c]) for p, c in zip(probs, chosen)],
                "_wrong": (chosen != truth).any(axis=1),
                "_sort": np.abs(probs - truth).max(axis=1),
            }
        )

    def plot(self, encoded, logits, metrics, space, cut, directory, caption):
        """Per-label scores, and which labels the model mixes up."""
        from .plots import plot_label_confusion, plot_per_label_scores

        truth = lb.multi_hot(list(encoded), space.num_labels)
        return {
            "per_label_scores": plot_per_label_scores(metrics, directory, caption=caption),
            "label_confusion": plot_label_confusion(
                truth, self.decide(logits, cut), list(space.names), directory, caption
            ),
        }

    def tune(self, encoded, logits, space):
        """Per-label decision thresholds (and one global), tuned on the validation split (thresholds.py)."""
        from . import thresholds

        return thresholds.tune(lb.multi_hot(list(encoded), space.num_labels), sigmoid(logits), list(space.names))

    def cut(self, record, space, mode=None):
        from . import thresholds

        return thresholds.vector(record or {"mode": "0.5"}, list(space.names), mode)

    def headline(self, m, prefix="test_"):
        return f"macro-F1 {m[prefix + 'f1_macro']:.4f}, micro-F1 {m[prefix + 'f1_micro']:.4f}"

    def report(self, m):
        return class_table(m) + (
            f"\n{'macro F1':>14} {m['f1_macro']:9.4f}   micro F1 {m['f1_micro']:.4f}   subset accuracy "
            f"{m['subset_accuracy']:.4f}   macro ROC-AUC {m['roc_auc_macro'] or 0:.4f}"
        )


class Regression(SingleLabel):
    """A number per text (a rating, a similarity score): one linear output, MSE, Spearman selects.

    The model learns the training scores standardised (mean 0, sd 1), so the new head starts on the right scale
    whatever the range; every number shown is mapped back (`values`)."""

    name = "regression"
    problem_type = "regression"
    selection_metric = "spearman"
    noun, unit = "scores", "score"
    summary_keys = ("pearson", "spearman", "mse", "mae")
    split_note = "; stratified by score quintile"
    weighable = False
    BINS = 5  # score ranges used for stratified splits and the label-balance plot

    def keep(self, cells):
        return cells.map(lb.present)

    def label_space(self, cells, names=None, column="label", **_):
        scores = lb.as_scores(cells, f"label column {column!r}")
        require(scores.nunique() >= 2, f"every score in column {column!r} is {scores.iloc[0]}; nothing to learn")
        edges = np.linspace(scores.min(), scores.max(), self.BINS + 1).round(6).tolist()
        extras = {
            "min": float(scores.min()),
            "max": float(scores.max()),
            "mean": float(scores.mean()),
            "std": float(scores.std(ddof=0)),
            "bins": edges,
        }
        return LabelSpace(("score",), (), column, extras=extras)

    def encode(self, cells, space, where):
        return lb.as_scores(cells, where)

    def targets(self, encoded, space):
        return ((encoded.astype(float) - space.extras["mean"]) / space.extras["std"]).tolist()

    def values(self, logits: np.ndarray, space: LabelSpace) -> np.ndarray:
        """The model's outputs on the scores' own scale."""
        return logits[:, 0] * space.extras["std"] + space.extras["mean"]

    def strata(self, encoded):
        """Score quintiles, so every split covers the range."""
        try:
            return pd.qcut(encoded.rank(method="first"), self.BINS, labels=False)
        except ValueError:
            return pd.Series(0, index=encoded.index)

    def check_splittable(self, encoded, space, hint=""):
        return None

    def absent(self, encoded, space):
        return []

    def counts(self, encoded, space):
        edges = np.asarray(space.extras.get("bins") or np.linspace(encoded.min(), encoded.max(), self.BINS + 1))
        which = np.clip(np.searchsorted(edges, encoded.to_numpy(), side="right") - 1, 0, len(edges) - 2)
        return {f"{edges[i]:g}-{edges[i + 1]:g}": int((which == i).sum()) for i in range(len(edges) - 1)}

    def trainer_metrics(self, eval_pred):
        """Spearman (the selection metric) and Pearson: unchanged by the standardisation the model trains on."""
        return {k: v for k, v in regression_trainer_metrics(eval_pred).items() if k in ("spearman", "pearson")}

    def loss(self, logits, targets, weights):
        import torch.nn.functional as F

        return F.mse_loss(logits.float().squeeze(-1), targets.float())

    def class_weights(self, setting, targets, space):
        require(setting is None, "--class-weights weighs classes; a regression has none: leave it out")
        return None

    def scores(self, encoded, logits, space, cut=None):
        return regression_metrics(encoded.to_numpy(dtype=float), self.values(logits, space))

    def decide(self, logits, cut=None):
        return logits[:, 0]

    def rows(self, logits, space, cut=None, top_k=None):
        return [{"score": round(float(x), 6)} for x in self.values(logits, space)]

    def plot(self, encoded, logits, metrics, space, cut, directory, caption):
        from .plots import plot_scores_scatter

        values = self.values(logits, space)
        return {
            "scores_scatter": plot_scores_scatter(encoded.to_numpy(dtype=float), values, directory, caption=caption)
        }

    def agreement(self, a, b, space, cut=None):
        """Scores agree when they differ by at most 1% of the training scores' range."""
        tolerance = 0.01 * (space.extras.get("max", 1.0) - space.extras.get("min", 0.0))
        return float((np.abs(self.values(a, space) - self.values(b, space)) <= tolerance).mean())

    def table(self, encoded, logits, space, cut=None):
        values = self.values(logits, space)
        error = np.abs(values - encoded.to_numpy(dtype=float))
        return pd.DataFrame(
            {
                "true": encoded.to_numpy(dtype=float),
                "predicted": values.round(6),
                "abs_error": error.round(6),
                "_wrong": error > 0,
                "_sort": error,
            }
        )

    def headline(self, m, prefix="test_"):
        return (
            f"Pearson {m[prefix + 'pearson']:.4f}, Spearman {m[prefix + 'spearman']:.4f}, MSE {m[prefix + 'mse']:.4f}"
        )

    def report(self, m):
        return (
            f"{m['rows']} scores: Pearson {m['pearson']:.4f}   Spearman {m['spearman']:.4f}   MSE {m['mse']:.4f}   "
            f"MAE {m['mae']:.4f}   (predicting the mean: MSE {m['mean_baseline_mse']:.4f})"
        )


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


def class_table(m: dict[str, Any]) -> str:
    width = max(14, *(len(n) for n in m["labels"]))
    rows = [f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"]
    for name in m["labels"]:
        r = m["report"][name]
        rows.append(
            f"{name:>{width}} {r['precision']:9.4f} {r['recall']:9.4f} {r['f1-score']:9.4f} {int(r['support']):9d}"
        )
    return "\n".join(rows)


def ranked(space: LabelSpace, probs: np.ndarray, top_k: int | None) -> dict[str, Any]:
    """Every label's probability (in label order), or the `top_k` most probable, highest first."""
    if not top_k:
        return {"probabilities": {n: round(float(x), 6) for n, x in zip(space.names, probs)}}
    best = np.argsort(-probs, kind="stable")[:top_k]
    return {"probabilities": {space.names[j]: round(float(probs[j]), 6) for j in best}}
