"""Metrics against values computed by hand."""

import numpy as np
import pytest

from qlora_helpers import tasks
from qlora_helpers.tasks.metrics import (
    classification_metrics,
    regression_metrics,
    regression_trainer_metrics,
    softmax,
    trainer_metrics,
)


def test_classification_metrics_match_hand_computation():
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 2, 2])
    m = classification_metrics(labels, preds, {0: "neg", 1: "neu", 2: "pos"})
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per class F1: neg P=1 R=2/3 -> 0.8; neu P=1/2 R=1/2 -> 0.5; pos P=1/2 R=1 -> 2/3; weights 3,2,1
    assert m["f1_weighted"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * (2 / 3)) / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["report"]["neg"]["recall"] == pytest.approx(2 / 3)
    assert m["labels"] == ["neg", "neu", "pos"]
    report = tasks.get("single_label").report(m)
    assert "weighted F1 0.6778" in report and "majority-class baseline 0.5000" in report
    assert report.splitlines()[1].split() == ["neg", "1.0000", "0.6667", "0.8000", "3"]


def test_trainer_metrics_take_argmax_of_logits():
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [5.0, 4.0], [-1.0, 1.0]])
    out = trainer_metrics((logits, np.array([0, 1, 1, 1])))
    assert out["accuracy"] == pytest.approx(0.75)


def test_softmax_rows_sum_to_one_and_are_stable():
    p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    assert np.allclose(p, [[0.5, 0.5], [0.25, 0.75]])


def test_regression_metrics_match_hand_computation():
    targets = np.array([1.0, 2.0, 3.0, 4.0])
    preds = np.array([1.5, 2.0, 2.5, 5.0])
    m = regression_metrics(targets, preds)
    # errors 0.5, 0, -0.5, 1: MSE (0.25 + 0 + 0.25 + 1) / 4, MAE 2 / 4; the ranks agree exactly
    assert (m["mse"], m["mae"], m["spearman"]) == pytest.approx((0.375, 0.5, 1.0))
    assert m["pearson"] == pytest.approx(np.corrcoef(targets, preds)[0, 1])
    assert m["mean_baseline_mse"] == pytest.approx(1.25) and m["rows"] == 4  # the variance of the targets
    flat = regression_metrics(targets, np.full(4, 2.5))  # a constant has no correlation: 0, not NaN
    assert (flat["pearson"], flat["spearman"], flat["mse"]) == (0.0, 0.0, pytest.approx(1.25))
    trainer = regression_trainer_metrics((preds.reshape(-1, 1), targets))
    assert trainer == {k: pytest.approx(m[k]) for k in ("spearman", "pearson", "mse", "mae")}
    report = tasks.get("regression").report(m)
    assert report.startswith("4 scores: Pearson") and report.endswith("(predicting the mean: MSE 1.2500)")


def test_a_model_that_gives_every_row_one_answer_is_called_the_majority_baseline():
    import numpy as np

    from qlora_helpers.infer.evaluation import one_answer_note
    from qlora_helpers.modeling.classifier_config import ClassifierConfig

    classifier_config = ClassifierConfig.from_record(
        {"task": "single_label", "labels": {"names": ["neg", "pos"], "values": ["0", "1"]},
         "input": {"text_columns": ["text"]}, "max_length": 32, "base_model": "x"}
    )  # fmt: skip
    same = np.array([[0.1, 0.9], [0.3, 0.7], [0.2, 0.8]])
    assert "all 3 rows the same answer (pos)" in one_answer_note(classifier_config, same)
    assert one_answer_note(classifier_config, np.array([[0.1, 0.9], [0.9, 0.1]])) is None
