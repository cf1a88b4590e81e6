"""A number per text: one output trained on standardised scores, MSE, Spearman selects."""

from __future__ import annotations

import numpy as np
import pandas as pd

from qlora_helpers.errors import require
from qlora_helpers.tasks import labels as lb
from qlora_helpers.tasks.base import Task
from qlora_helpers.tasks.labels import LabelSpace
from qlora_helpers.tasks.metrics import regression_metrics, regression_trainer_metrics


class Regression(Task):
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
    classifies = False
    compared = "score"
    mistakes = "scores, largest error first"
    BINS = 5  # score ranges used for stratified splits and the label-balance plot

    def keep(self, cells):
        return cells.map(lb.present)

    def label_space(self, cells, names=None, column="label", **_):
        require(names is None, "label names name classes; a regression predicts a number: leave --label-names out")
        scores = lb.as_scores(cells, f"label column {column!r}")
        require(scores.nunique() >= 2, f"every score in column {column!r} is {scores.iloc[0]}; nothing to learn")
        spread = float(scores.max()) - float(scores.min())
        require(
            np.isfinite(spread) and np.isfinite(float(scores.std(ddof=0))),
            f"the scores in column {column!r} run from {scores.min():g} to {scores.max():g}: too far apart to "
            f"standardise in floating point; rescale them (e.g. to 0-1 or a log scale)",
        )
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

    def probabilities(self, logits, space):
        return self.values(logits, space)

    def export_targets(self, targets, space):
        """fp32's largest difference scales with the scores' range."""
        if "max_abs_diff" not in targets:
            return targets
        return {**targets, "max_abs_diff": round(1e-3 * (space.extras["max"] - space.extras["min"]), 6)}

    def strata(self, encoded, most=None):
        """Score quintiles (fewer where a small split has room for fewer), so every split covers the range."""
        bins = max(1, min(self.BINS, most or self.BINS, len(encoded) // 2))
        try:
            return pd.qcut(encoded.rank(method="first"), bins, labels=False)
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

    def scores(self, encoded, logits, space, thresholds=None):
        return regression_metrics(encoded.to_numpy(dtype=float), self.values(logits, space))

    def decide(self, logits, thresholds=None):
        return logits[:, 0]

    def rows(self, logits, space, thresholds=None, top_k=None):
        require(top_k is None, "--top-k lists the most probable labels; a regression predicts a score: leave it out")
        return [{"score": round(float(x), 6)} for x in self.values(logits, space)]

    def plot(self, encoded, logits, metrics, space, thresholds, directory, caption):
        from qlora_helpers.tasks.figures import plot_scores_scatter

        values = self.values(logits, space)
        return {
            "scores_scatter": plot_scores_scatter(encoded.to_numpy(dtype=float), values, directory, caption=caption)
        }

    def agreement(self, a, b, space, thresholds=None):
        """Scores agree when they differ by at most 1% of the training scores' range."""
        tolerance = 0.01 * (space.extras.get("max", 1.0) - space.extras.get("min", 0.0))
        return float((np.abs(self.values(a, space) - self.values(b, space)) <= tolerance).mean())

    def table(self, encoded, logits, space, thresholds=None):
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
