"""Metrics against values computed by hand."""

import numpy as np
import pytest

from qlora_helpers.metrics import classification_metrics, format_report, softmax, trainer_metrics


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
    assert "weighted F1 0.6778" in format_report(m)


def test_trainer_metrics_take_argmax_of_logits():
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [5.0, 4.0], [-1.0, 1.0]])
    out = trainer_metrics((logits, np.array([0, 1, 1, 1])))
    assert out["accuracy"] == pytest.approx(0.75)


def test_softmax_rows_sum_to_one_and_are_stable():
    p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    assert np.allclose(p, [[0.5, 0.5], [0.25, 0.75]])
