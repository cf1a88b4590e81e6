"""A number per text, end to end on the real 4-bit path: `train` chooses regression for scores with fractions,
scores it with Pearson/Spearman/MSE/MAE, and predict and evaluate read the model back as a regression."""

import io
import json
import random
from contextlib import redirect_stdout

import pandas as pd
import pytest
from conftest import NEGATIVE, NEUTRAL, POSITIVE, train_args

from qlora_helpers.cli import main
from qlora_helpers.modeling.classifier_config import ClassifierConfig

SHAPE = ["--text-columns", "title", "body"]  # the scores' texts come in two columns, joined as in training


def scored_reviews(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """easy_reviews' words, scored: six sentiment words of which 2k are positive, scored k (0-3) plus noise of up
    to a quarter point, so every score has a fraction."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = i % 4
        words = rng.choices(NEUTRAL, k=7) + rng.choices(POSITIVE, k=2 * k) + rng.choices(NEGATIVE, k=6 - 2 * k)
        rng.shuffle(words)
        score = round(k + rng.uniform(-0.25, 0.25), 2)
        rows.append({"title": " ".join(words[:5]), "body": " ".join(words[5:]), "score": score})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def scored_run(tiny_bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("regression")
    data = root / "scores.csv"
    scored_reviews().to_csv(data, index=False)
    out = root / "run"
    args = train_args(tiny_bert, data, out, label_names=None, label_column="score", save_checkpoints=False)
    printed = io.StringIO()
    with redirect_stdout(printed):  # `train` as on the command line, task left to auto
        assert main([*args, *SHAPE]) == 0
    return out, data, printed.getvalue()


def test_train_chooses_regression_and_scores_it(scored_run):
    out, data, printed = scored_run
    scores = pd.read_csv(data)["score"]
    assert f"task regression; text='title+body', label='score', scores {scores.min():g} to {scores.max():g}" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == metrics["data"]["task"] == "regression" and metrics["labels"] == ["score"]
    assert metrics["selection_metric"] == "spearman" and metrics["best_val_spearman"] is not None
    # it learnt to count the words (measured: Pearson 0.70, Spearman 0.70, MSE 0.59 against 1.16 for the mean)
    assert metrics["test_pearson"] > 0.5 and metrics["test_spearman"] > 0.4
    assert 0 < metrics["test_mae"] and metrics["test_mse"] < 0.75 * metrics["test_mean_baseline_mse"]
    summary = json.loads(printed.strip().splitlines()[-1])
    assert {k: summary[k] for k in ("test_pearson", "test_spearman", "test_mse", "test_mae")} == {
        k: metrics[k] for k in ("test_pearson", "test_spearman", "test_mse", "test_mae")
    }
    classifier_config = ClassifierConfig.load(out)
    assert (classifier_config.task_name, classifier_config.labels.names, classifier_config.labels.column) == (
        "regression",
        ("score",),
        "score",
    )
    assert (
        classifier_config.text_input.columns == ("title", "body") and classifier_config.decision_thresholds() is None
    )
    table = pd.read_csv(out / "test_predictions.csv")
    assert list(table.columns) == ["text", "true", "predicted", "abs_error"] and len(table) == 24
    assert ((table["true"] - table["predicted"]).abs() - table["abs_error"]).abs().max() < 1e-5
    assert (out.parent / "run-plots" / "scores_scatter.png").stat().st_size > 10_000
    card = (out / "README.md").read_text()
    assert "- Task: regression; labels: score" in card and f"Pearson {metrics['test_pearson']:.4f}" in card


def test_predict_prints_a_score(scored_run, tmp_path, capsys):
    out, data, _ = scored_run
    texts = ["wonderful excellent perfect great best loved film", "awful boring worst bad poor waste of a film"]
    assert main(["predict", "--adapter", str(out), *texts]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [set(r) for r in rows] == [{"text", "score"}] * 2 and rows[0]["score"] > rows[1]["score"] + 1
    # a file with the training columns, read with the train command's own shape flags
    target = tmp_path / "scores.csv"
    assert main(["predict", "--adapter", str(out), "--dataset", str(data), *SHAPE, "--output", str(target)]) == 0
    written, truth = pd.read_csv(target), pd.read_csv(data)
    assert len(written) == 240 and written["score"].corr(truth["score"]) > 0.5
    assert written["text"].iloc[0] == f"{truth['title'].iloc[0]} [SEP] {truth['body'].iloc[0]}"


def test_evaluate_reports_pearson_and_spearman(scored_run, tmp_path, capsys):
    out, data, _ = scored_run
    target = tmp_path / "eval.json"
    assert main(["evaluate", "--adapter", str(out), "--dataset", str(data), *SHAPE, "--output", str(target)]) == 0
    printed = capsys.readouterr().out
    written = json.loads(target.read_text())
    assert written["task"] == "regression" and written["rows"] == 240 and written["pearson"] > 0.5
    assert f"240 scores: Pearson {written['pearson']:.4f}   Spearman {written['spearman']:.4f}" in printed
    assert json.loads(printed.strip().splitlines()[-1])["spearman"] == written["spearman"]
    assert written["rows_seen_in_training"] == {"train": 192, "validation": 24}
    worst = pd.read_csv(written["misclassified_file"])  # every score misses a little: largest error first
    assert len(worst) == 240 and worst["abs_error"].is_monotonic_decreasing


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "--multi-label", "fine"], "--task multi_label given, but this model was trained as regression"),
        (["predict", "--text-separator", " | ", "fine"], "differs from training's ' [SEP] '"),
        (
            ["predict", "--thresholds", "0.5", "fine"],
            "--thresholds applies to multi-label models; this one is regression",
        ),
        (
            ["evaluate", "--dataset", "{data}", "--text-columns", "title"],
            "trained on 2 text column(s) ['title', 'body']",
        ),
    ],
)
def test_a_regression_model_refuses_other_shapes(scored_run, args, message, capsys):
    out, data, _ = scored_run
    code = main([args[0], "--adapter", str(out), *[str(data) if a == "{data}" else a for a in args[1:]]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_class_weights_with_a_regression_is_one_line(tiny_bert, tmp_path, capsys):
    data = tmp_path / "scores.csv"
    scored_reviews(60).to_csv(data, index=False)
    out = tmp_path / "never"
    args = train_args(tiny_bert, data, out, label_names=None, label_column="score", class_weights="auto")
    assert main([*args, *SHAPE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --class-weights weighs classes or labels; a regression task has none: leave it out"]
    assert not out.exists()
