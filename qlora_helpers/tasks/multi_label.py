"""Any number of labels per text: a sigmoid per label, BCE, thresholds tuned on validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from qlora_helpers.errors import require
from qlora_helpers.tasks import labels as lb
from qlora_helpers.tasks.base import Task
from qlora_helpers.tasks.common import class_table, ranked
from qlora_helpers.tasks.labels import LabelSpace
from qlora_helpers.tasks.metrics import multi_label_metrics, multi_label_trainer_metrics, sigmoid


class MultiLabel(Task):
    """Any number of labels per text: a sigmoid per label, BCE, thresholds tuned on validation."""

    name = "multi_label"
    problem_type = "multi_label_classification"
    selection_metric = "f1_macro"
    noun, unit = "labels", "label"
    summary_keys = ("f1_macro", "f1_micro", "subset_accuracy", "roc_auc_macro")
    split_note = "; label sets stratified by each row's rarest label"
    judged = judged_short = "every (text, label) probability"
    mistakes = "misclassified texts, most confident first"  # what evaluate's table of mistakes lists

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

    def check_saved(self, space: LabelSpace, where: str) -> None:
        """Label ids keep the numbers their files gave them: no order to check."""

    def encode(self, cells: pd.Series, space: LabelSpace, where: str) -> pd.Series:
        sets = [c if isinstance(c, tuple) else lb.split_label_cell(c, space.delimiter) for c in cells]
        return pd.Series(lb.encode_sets(sets, space, where), index=cells.index, dtype=object)

    def targets(self, encoded: pd.Series, space: LabelSpace) -> list:
        return lb.multi_hot(list(encoded), space.num_labels).tolist()

    def strata(self, encoded: pd.Series, most: int | None = None) -> pd.Series:
        """Each row's rarest label (-1: no label); labels with fewer than 3 such rows share one stratum,
        so rare labels reach every split in proportion and the split still works. Where a small split has
        room for fewer strata (`most`), the smallest share one too."""
        counts: dict[int, int] = {}
        for ids in encoded:
            for i in ids:
                counts[i] = counts.get(i, 0) + 1
        key = encoded.map(lambda ids: min(ids, key=lambda i: (counts[i], i)) if ids else -1)
        sizes = key.value_counts()  # largest first
        kept = sizes[sizes >= 3].index[: None if most is None else max(most - 1, 0)]
        key = key.where(key.isin(kept), -2)
        return key.replace(-2, kept[0]) if (key == -2).sum() == 1 and len(kept) else key

    def fit_note(self, encoded: pd.Series) -> str | None:
        if any(len(ids) > 1 for ids in encoded):
            return None
        return (
            "multi-label, but no row has more than one label: each text has at most one label; a single-label run "
            "(one class per text, softmax) fits such data better: leave out --multi-label"
        )

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

    def scores(self, encoded, logits, space, thresholds=0.5):
        hot = lb.multi_hot(list(encoded), space.num_labels)
        return multi_label_metrics(hot, sigmoid(logits), 0.5 if thresholds is None else thresholds, space.id2label)

    def probabilities(self, logits, space):
        return sigmoid(logits)

    def median_label_rows(self, targets, num_labels):
        """Positives of the median label."""
        if targets is None or len(targets) == 0:
            return None
        return float(np.median(np.asarray(targets, dtype=float).sum(axis=0)))

    def decision_agreement(self, a, b, thresholds=0.5):
        """A set agrees only if all its labels do; each label's decision, for scale."""
        return float((self.decide(a, thresholds) == self.decide(b, thresholds)).mean())

    def calibration_truth(self, encoded, space):
        """The multi-hot matrix."""
        return lb.multi_hot(list(encoded), space.num_labels).astype(np.float64)

    def nll(self, truth, logits):
        from scipy.special import log_expit

        return float(-(truth * log_expit(logits) + (1 - truth) * log_expit(-logits)).mean())

    def separated(self, truth, logits):
        """Every label's sign right."""
        return bool(((logits > 0) == (truth > 0.5)).all())

    def confidences(self, truth, logits):
        """Every (text, label) pair's probability, and whether the label applies."""
        return sigmoid(logits).ravel(), truth.ravel()

    def brier(self, truth, logits, space):
        """Over every (text, label) pair."""
        from sklearn.metrics import brier_score_loss

        return float(brier_score_loss(truth.ravel(), sigmoid(logits).ravel()))

    def decide(self, logits, thresholds=0.5):
        return sigmoid(logits) >= (0.5 if thresholds is None else thresholds)

    def rows(self, logits, space, thresholds=0.5, top_k=None):
        out = []
        for p, chosen in zip(sigmoid(logits), self.decide(logits, thresholds)):
            order = [j for j in np.argsort(-p, kind="stable") if chosen[j]]
            out.append(
                {
                    "labels": [space.names[j] for j in order],
                    "label_probabilities": {space.names[j]: round(float(p[j]), 6) for j in order},
                    **ranked(space, p, top_k),
                }
            )
        return out

    def table(self, encoded, logits, space, thresholds=0.5):
        """A row is wrong when its predicted set differs; its confidence is the largest distance between a
        probability and the truth, so the most confidently wrong label set comes first."""
        names, probs = np.array(space.names), sigmoid(logits)
        truth = lb.multi_hot(list(encoded), space.num_labels).astype(bool)
        chosen = self.decide(logits, thresholds)
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

    def plot(self, encoded, logits, metrics, space, thresholds, directory, caption):
        """Per-label scores, and which labels the model mixes up."""
        from qlora_helpers.tasks.figures import plot_label_confusion, plot_per_label_scores

        truth = lb.multi_hot(list(encoded), space.num_labels)
        return {
            "per_label_scores": plot_per_label_scores(metrics, directory, caption=caption),
            "label_confusion": plot_label_confusion(
                truth, self.decide(logits, thresholds), list(space.names), directory, caption
            ),
        }

    def tune(self, encoded, logits, space):
        """Per-label decision thresholds (and one global), tuned on the validation split (thresholds.py)."""
        from qlora_helpers.tasks import thresholds

        return thresholds.tune(lb.multi_hot(list(encoded), space.num_labels), sigmoid(logits), list(space.names))

    def thresholds_from(self, record, space, mode=None):
        from qlora_helpers.tasks import thresholds

        return thresholds.vector(record or {"mode": "0.5"}, list(space.names), mode)

    def headline(self, m, prefix="test_"):
        return f"macro-F1 {m[prefix + 'f1_macro']:.4f}, micro-F1 {m[prefix + 'f1_micro']:.4f}"

    def report(self, m):
        return class_table(m) + (
            f"\n{'macro F1':>14} {m['f1_macro']:9.4f}   micro F1 {m['f1_micro']:.4f}   subset accuracy "
            f"{m['subset_accuracy']:.4f}   macro ROC-AUC {m['roc_auc_macro'] or 0:.4f}"
        )
