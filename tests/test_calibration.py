"""Calibrated probabilities: the temperature fit, ECE and Brier score, and a real tiny run that saves, reports and
plots them, with multi-label thresholds tuned after calibration."""

import json
import random

import numpy as np
import pandas as pd
import pytest

from qlora_helpers import tasks
from qlora_helpers.errors import UserError
from qlora_helpers.modeling.classifier_config import ClassifierConfig
from qlora_helpers.tasks import calibration, thresholds
from qlora_helpers.tasks.labels import LabelSpace
from qlora_helpers.tasks.metrics import sigmoid, softmax

SINGLE, MULTI, REGRESSION = tasks.get("single_label"), tasks.get("multi_label"), tasks.get("regression")
TOPICS = {"sport": ["goal", "match", "team"], "music": ["song", "band", "guitar"], "food": ["pasta", "bread", "soup"]}


def overconfident(n=4000, k=3, scale=3.0, seed=0):
    """Labels drawn from softmax(z) and logits `scale` * z: a model exactly `scale` times too sure of itself."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 1.5
    p = softmax(z)
    y = np.array([rng.choice(k, p=row) for row in p])
    return pd.Series(y), scale * z, LabelSpace(tuple("abc"[:k]), tuple(range(k)), "label")


def test_the_fitted_temperature_undoes_a_known_overconfidence():
    encoded, logits, space = overconfident()
    t = calibration.fit_temperature(SINGLE, encoded, logits, space)
    assert 2.7 < t < 3.3, t
    m = calibration.measure(SINGLE, encoded, logits, space, t)
    assert m["ece_after"] < 0.03 < 0.1 < m["ece_before"] and m["brier_after"] < m["brier_before"]
    # decisions do not change: only how sure the model says it is
    assert (softmax(logits / t).argmax(1) == logits.argmax(1)).all()


def test_a_multi_label_model_gets_one_temperature_for_all_its_sigmoids():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3000, 4)) * 2
    truth = rng.random(z.shape) < sigmoid(z)
    encoded = pd.Series([tuple(np.flatnonzero(row)) for row in truth])
    space = LabelSpace(tuple("wxyz"), tuple("wxyz"), "labels", ",")
    t = calibration.fit_temperature(MULTI, encoded, 0.5 * z, space)  # under-confident: T below 1
    assert 0.45 < t < 0.56, t
    record = calibration.calibrate(MULTI, encoded, 0.5 * z, space)
    assert record["temperature"] == t and record["validation"]["ece_after"] < record["validation"]["ece_before"]


def test_a_validation_split_without_a_wrong_decision_keeps_t_at_1():
    """There the log-likelihood only falls as T shrinks: a fit would sit on the floor of its range."""
    encoded, logits, space = overconfident()
    right = logits.copy()
    right[np.arange(len(encoded)), encoded.to_numpy()] += 100  # every top label now the true one
    assert calibration.fit_temperature(SINGLE, encoded, right, space) == 1.0
    record = calibration.calibrate(SINGLE, encoded, right, space)
    assert record["temperature"] == 1.0 and "T stays 1" in record["method"]
    one_wrong = right.copy()
    one_wrong[0, encoded[0]] -= 300
    assert calibration.fit_temperature(SINGLE, encoded, one_wrong, space) != 1.0
    multi = LabelSpace(tuple("wxyz"), tuple("wxyz"), "labels", ",")
    truth = np.eye(4, dtype=bool)[np.arange(40) % 4]
    signs = np.where(truth, 5.0, -5.0)
    sets = pd.Series([tuple(np.flatnonzero(row)) for row in truth])
    assert calibration.fit_temperature(MULTI, sets, signs, multi) == 1.0
    assert calibration.fit_temperature(MULTI, sets, -signs, multi) != 1.0


def test_ece_and_brier_by_hand():
    confidence, hit = np.array([0.9, 0.9, 0.6, 0.6]), np.array([1.0, 0.0, 1.0, 1.0])
    # bin of 0.9: accuracy 0.5, gap 0.4; bin of 0.6: accuracy 1.0, gap 0.4; each holds half the predictions
    assert calibration.expected_calibration_error(confidence, hit) == pytest.approx(0.4)
    space = LabelSpace(("a", "b"), (0, 1), "label")
    logits = np.log(np.array([[0.8, 0.2], [0.3, 0.7]]))
    # scikit-learn's binary Brier: mean of (p(b) - [b is true])^2 = ((0.2 - 0)^2 + (0.7 - 0)^2) / 2
    assert calibration.brier(SINGLE, pd.Series([0, 0]), logits, space) == pytest.approx((0.04 + 0.49) / 2)


def test_regression_has_nothing_to_calibrate():
    space = LabelSpace(("score",), (), "label", extras={"mean": 0.0, "std": 1.0, "min": 0.0, "max": 5.0})
    assert calibration.calibrate(REGRESSION, pd.Series([1.0, 2.0]), np.ones((2, 1)), space) is None
    record = {
        "task": "regression",
        "labels": space.record(),
        "input": {"text_columns": ["text"]},
        "max_length": 8,
        "base_model": "m",
        "temperature": 2.0,
    }
    with pytest.raises(UserError, match="only for a classifier"):
        ClassifierConfig.from_record(record)


def easy_topics(n=300, seed=0) -> pd.DataFrame:
    """Texts whose topics (any of three, or none) are named by obvious words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        chosen = [t for t in TOPICS if rng.random() < 0.4]
        words = rng.choices(["the", "a", "it", "was", "and", "today", "we", "had"], k=8)
        for t in chosen:
            words += rng.choices(TOPICS[t], k=2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": ",".join(chosen)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def multi_run(tiny_bert, tmp_path_factory):
    from conftest import tiny_run_config

    from qlora_helpers.run import train_pipeline

    tmp = tmp_path_factory.mktemp("calibrated")
    easy_topics().to_csv(tmp / "topics.csv", index=False)
    cfg = tiny_run_config(
        tiny_bert, tmp / "topics.csv", tmp / "run", label_names=None, task="multi_label", save_checkpoints=False
    )
    return cfg, train_pipeline(cfg)


def test_a_run_saves_reports_and_plots_its_calibration(multi_run):
    from qlora_helpers.infer.inference import load_for_inference, predict_logits

    cfg, result = multi_run
    out = result.output_dir
    metrics = json.loads((out / "metrics.json").read_text())
    classifier_config = ClassifierConfig.load(out)
    record = metrics["calibration"]
    assert classifier_config.temperature == record["temperature"] and 0.05 <= classifier_config.temperature <= 20
    for split in ("validation", "test"):
        assert set(record[split]) == {"rows", "ece_before", "ece_after", "brier_before", "brier_after"}
    assert (result.plots["reliability"]).name == "reliability_diagram.png" and result.plots["reliability"].is_file()
    assert f"temperature of {classifier_config.temperature:.3f}" in (out / "README.md").read_text()

    # predict gives the calibrated probabilities: the model's raw logits divided by the saved temperature
    loaded = load_for_inference(out, "4bit")
    texts = ["goal match team and song", "we had pasta today"]
    raw = predict_logits(
        loaded.model, loaded.tokenizer, texts, classifier_config.max_length, truncation=classifier_config.truncation
    )
    rows = loaded.predict(texts, progress=False)
    shown = [[r["probabilities"][n] for n in classifier_config.labels.names] for r in rows]
    assert np.allclose(shown, sigmoid(raw / classifier_config.temperature), atol=1e-6)
    assert not np.allclose(shown, sigmoid(raw), atol=1e-3) or abs(classifier_config.temperature - 1) < 0.01

    # thresholds were tuned on the calibrated validation probabilities
    from qlora_helpers.data.prepare import DataSettings, prepare_data

    validation = prepare_data(DataSettings.from_config(cfg, " [SEP] ", None)).splits["validation"]
    val_raw = predict_logits(
        loaded.model,
        loaded.tokenizer,
        validation["text"].tolist(),
        classifier_config.max_length,
        truncation=classifier_config.truncation,
    )
    truth = MULTI.targets(validation["label"], classifier_config.labels)
    names = list(classifier_config.labels.names)
    retuned = thresholds.tune(np.array(truth), sigmoid(val_raw / classifier_config.temperature), names)
    # the temperature minimises the validation log-loss (ECE on 31 rows may go either way), so that never rises
    assert (
        MULTI.nll(np.array(truth), val_raw / classifier_config.temperature)
        <= MULTI.nll(np.array(truth), val_raw) + 1e-6
    )
    assert (
        retuned["per_label"] == classifier_config.thresholds["per_label"]
        and retuned["global"] == classifier_config.thresholds["global"]
    )
