"""The training length that follows the data (`epochs: auto`) and the early-stopping patience that follows the run."""

import math

import numpy as np
import pytest

from qlora_helpers import tasks
from qlora_helpers.presets import make_config
from qlora_helpers.train.schedule import Schedule, climbing_note, still_climbing


def schedule(n_train, label_rows, unit="class", **changes):
    return Schedule.for_run(make_config("full", **changes), n_train, label_rows=label_rows, unit=unit)


def test_small_sets_get_the_step_floor_within_the_epoch_cap():
    s = schedule(3_300, 1_650)  # MRPC as split here: 52 steps an epoch
    assert s.steps_per_epoch == 52 and s.epochs == 10.0 and s.total_steps == 520
    assert "at least 600 optimizer steps -> 11.5 epochs" in s.reason and "(capped at 10)" in s.reason
    assert s.patience == 7  # 20 evaluations: a third of them


def test_rare_labels_get_more_passes_and_large_balanced_sets_keep_three_epochs():
    multi = schedule(39_069, 1_168, unit="label")  # GoEmotions: the median label's positives an epoch
    assert multi.epochs == pytest.approx(10_000 / 1_168) and multi.total_steps == math.ceil(611 * 10_000 / 1_168)
    assert "the median label's 1,168 positive rows an epoch seen 10,000 times -> 8.6 epochs" in multi.reason
    imdb = schedule(15_999, 8_000)  # the data the recipe was measured on: the same run as before the rule
    fixed = schedule(15_999, 8_000, epochs=3.0, early_stopping_patience=2)
    assert (imdb.epochs, imdb.total_steps, imdb.eval_steps, imdb.patience) == (3.0, 750, 125, 2)
    assert (fixed.total_steps, fixed.eval_steps, fixed.patience) == (750, 125, 2)
    assert "(raised to the floor of 3)" in imdb.reason


def test_a_regression_has_no_label_floor_and_explicit_settings_win():
    stsb = schedule(5_174, None)
    assert stsb.total_steps == 600 and "median" not in stsb.reason
    assert schedule(5_174, None, epochs=2.0).total_steps == 162
    assert schedule(5_174, None, max_steps=20).total_steps == 20
    assert schedule(5_174, None, early_stopping_patience=0).patience == 0
    off = schedule(3_300, 1_650, min_label_rows=0, min_steps=100, min_epochs=1.0)
    assert off.epochs == pytest.approx(100 / 52)


def test_median_label_rows_per_task():
    assert tasks.get("single_label").median_label_rows([0, 0, 0, 1, 2, 2], 3) == 2.0
    hot = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert tasks.get("multi_label").median_label_rows(hot.tolist(), 3) == 1.0
    assert tasks.get("regression").median_label_rows([0.5, 1.5], 1) is None


def test_the_reference_preset_keeps_its_fixed_schedule_and_the_offline_one_its_patience():
    ref = make_config("reference")
    assert ref.epochs == 3.0 and ref.early_stopping_patience == 2 and ref.evals_per_epoch == 2
    full = make_config("full")
    assert full.epochs == "auto" and full.early_stopping_patience == "auto"
    offline = Schedule.for_run(make_config("offline"), 1_200)  # 1,200 reviews, 2 epochs of 75 steps
    assert (offline.total_steps, offline.eval_steps, offline.patience) == (150, 37, 2)


def test_epochs_and_patience_flags_take_auto_or_a_number():
    from qlora_helpers.cli import build_parser, config_from_args

    parse = build_parser().parse_args
    args = parse(["train", "--epochs", "auto", "--early-stopping-patience", "3"])
    assert config_from_args(args).epochs == "auto" and config_from_args(args).early_stopping_patience == 3
    assert config_from_args(parse(["train", "--epochs", "4.5"])).epochs == 4.5
    with pytest.raises(SystemExit) as stop:
        parse(["train", "--epochs", "three"])
    assert stop.value.code == 2


def test_auto_length_trains_the_steps_it_printed(tiny_config, capsys):
    from qlora_helpers.run import train_pipeline

    # 192 training rows, 8 x 2 a step: 12 steps an epoch; each class has 96 rows, seen 480 times -> 5 epochs
    cfg = tiny_config(epochs="auto", min_steps=30, min_label_rows=480, min_epochs=1.0, max_epochs=8.0)
    result = train_pipeline(cfg)
    assert result.metrics["optimizer_steps"] == 60 and result.metrics["epochs"] == 5.0
    assert "-> 5.0 epochs: 60 steps" in capsys.readouterr().out
    assert result.metrics["schedule"].startswith("192 training rows, batch 16: 12 steps an epoch")
    check = result.metrics["length_check"]  # every 6 steps: 10 evaluations, the best among them
    assert check["evaluations"] == 10 and check["best_step"] == 6 * check["best_evaluation"]


def curve(*scores, every=40):
    return [{"loss": 0.5, "step": every * (i + 1) - 1} for i in range(len(scores))] + [
        {"eval_spearman": s, "step": every * (i + 1)} for i, s in enumerate(scores)
    ]


def test_a_run_that_ends_while_validation_still_rises_says_so():
    rising = still_climbing(curve(0.70, 0.78, 0.80, 0.82, 0.84, 0.86, 0.87, 0.88), "spearman", planned_steps=320)
    assert rising == {
        "best_step": 320,
        "best_evaluation": 8,
        "evaluations": 8,
        "last_quarter_gain": 0.02,
        "still_climbing": True,
    }  # 8 evaluations: the last quarter starts after the 6th (0.86 -> 0.88)
    note = climbing_note(rising, "spearman", epochs=7.5)
    assert note.startswith("note: validation spearman was still rising when the schedule ended (+0.020")
    assert "try --epochs 15 and compare on validation" in note
    one_before = still_climbing(curve(0.70, 0.78, 0.80, 0.82, 0.84, 0.86, 0.88, 0.88), "spearman", planned_steps=320)
    assert one_before["still_climbing"] and one_before["best_step"] == 280  # equal bests: the first, as kept
    flat = still_climbing(curve(0.30, 0.76, 0.84, 0.849, 0.848, 0.849, 0.851, 0.8515), "spearman", planned_steps=320)
    assert flat["best_evaluation"] == 8 and flat["still_climbing"] is False  # a decaying rate's plateau (STS-B)
    assert climbing_note(flat, "spearman", 7.5) is None
    fell = still_climbing(curve(0.70, 0.80, 0.86, 0.80, 0.79), "spearman", planned_steps=200)
    assert fell["still_climbing"] is False and fell["last_quarter_gain"] == 0.0  # the best came before the quarter
    nan_first = still_climbing(curve(float("nan"), 0.70, 0.80, 0.84, 0.86), "spearman", planned_steps=200)
    assert nan_first["best_step"] == 200 and nan_first["evaluations"] == 4  # a NaN score is no evaluation
    stopped = still_climbing(curve(0.70, 0.80, 0.86), "spearman", planned_steps=600)  # early stopping ended it
    assert stopped["still_climbing"] is False and climbing_note(stopped, "spearman", 7.5) is None
    assert still_climbing(curve(0.7, 0.8), "spearman", planned_steps=80) is None
