"""`qlora-bert tune` on the tiny BERT: ranges, bad input, trials (in this process and in their own), resume after
a kill. Trials are a few optimizer steps each."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY_RUN, flags

from qlora_helpers import cli
from qlora_helpers.errors import UserError
from qlora_helpers.tune import study as tune
from qlora_helpers.tune.space import Param, parse

optuna = pytest.importorskip("optuna")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
# every trial: the tiny run's batches, tokens and lr (8 x 2 rows a step, 32 tokens, 5e-3); searched: epochs, rank,
# warm-up
TRIAL = ("batch_size", "grad_accum", "eval_batch_size", "max_length", "lr", "report_to")
FAST = flags({k: TINY_RUN[k] for k in TRIAL})
FAST += ["--epochs", "1:2", "--lora-r", "4,8", "--lora-alpha-ratio", "2", "--target-modules", "all-linear"]
FAST += ["--warmup", "0:0.1"]


def args_for(model, dataset, out, *extra):
    return ["tune", "--model", str(model), "--dataset", str(dataset), "--output-dir", str(out), "--plots-dir"] + [
        str(Path(out).parent / "plots"),
        *FAST,
        *extra,
    ]


def in_process(spec_path, log_path):
    """The trial as its child process runs it, in this process (so a test can patch what it calls)."""
    from qlora_helpers.tune import trial as tune_trial

    return tune_trial.main([str(spec_path)])


def load(out):
    return optuna.load_study(study_name=tune.STUDY_NAME, storage=tune.StudyFiles(Path(out)).storage)


def test_ranges_choices_and_fixed_values():
    lr = parse("lr", "1e-4:1e-3")
    assert lr == Param("lr", 1e-4, 1e-3, log=True)
    assert parse("epochs", "3:10") == Param("epochs", 3, 10, integer=True)
    assert parse("epochs", "2.5:8").integer is False
    assert parse("lora_r", "8,16,32", integer=True).choices == (8, 16, 32)
    assert parse("lora_r", "16", integer=True) == 16  # one value: fixed, not searched
    assert parse("target_modules", "all-linear,query+value").choices == ("all-linear", "query+value")
    for name, text, message in [
        ("lr", "1e-3:1e-4", "is an empty range"),
        ("lr", "0:1e-3", "must start above 0"),
        ("lr", "a:b", "is not a number"),
        ("lora_r", "8,,16", "an empty choice"),
        ("lora_r", "8.5", "is not a whole number"),
        ("warmup", " ", "is empty"),
    ]:
        with pytest.raises(UserError, match=message):
            parse(name, text, integer=name == "lora_r")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--trials", "0"], "--trials must be at least 1"),
        (["--lr", "1e-3:1e-4"], "--lr 1e-3:1e-4 is an empty range"),
        (["--lora-r", "0,8"], "--lora-r: lora_r must be a positive whole number"),
        (["--max-length", "64:1024"], "beyond this model's 512 positions"),
        (["--target-modules", "attention,wq"], "'wq' is neither a group"),
        (["--resume"], "no study to resume"),
        (["--lora-alpha-ratio", "-2"], "--lora-alpha-ratio: alpha/r must be above 0, got -2.0"),
        (["--lora-r", ""], "--lora-r is empty"),  # not quietly the default space
        (["--lora-r", "8,64"], "--lora-r 64 is not below this model's smallest adapted layer (64 wide)"),
        (
            ["--trials", "1", "--plots-dir", str(ROOT / "README.md")],
            "README.md is a file; pass a directory",
        ),  # before any trial
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(extra, message, tiny_bert, easy_csv, tmp_path, capsys):
    out = tmp_path / "study"
    assert cli.main(args_for(tiny_bert, easy_csv, out, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_missing_extra_names_the_install(tiny_bert, easy_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    assert cli.main(args_for(tiny_bert, easy_csv, tmp_path / "study")) == 2
    assert "pip install -r requirements-tune.txt" in capsys.readouterr().err


def test_trials_score_validation_only_and_oom_is_one_failed_trial(tiny_bert, easy_csv, tmp_path, capsys, monkeypatch):
    import torch

    from qlora_helpers import pipeline
    from qlora_helpers.train import training

    tokenized, calls = [], {"n": 0}
    real_tokenize, real_train = pipeline.tokenize_splits, training._train_once

    def spy_tokenize(data, *args, **kwargs):
        tokenized.append(sorted(data.splits))
        return real_tokenize(data, *args, **kwargs)

    def second_runs_out(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(pipeline, "tokenize_splits", spy_tokenize)
    monkeypatch.setattr(training, "_train_once", second_runs_out)
    monkeypatch.setattr(tune, "child_launcher", in_process)
    out = tmp_path / "study"
    assert cli.main(args_for(tiny_bert, easy_csv, out, "--trials", "3")) == 0
    printed = capsys.readouterr().out
    assert tokenized == [["train", "validation"]] * 3  # the test split never reaches a trial
    states = [t.state.name for t in load(out).trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"]  # pruning waits for two finished trials
    assert load(out).trials[1].user_attrs["failure"].startswith("out of GPU memory during training")
    assert "trial 1: " in printed and "-> out of GPU memory" in printed
    best = json.loads((out / "best_trial.json").read_text())
    assert best["metric"] == "accuracy" and best["value"] == load(out).best_value
    # the saved command rebuilds the best trial's configuration
    command = (out / "best_command.txt").read_text().split()
    assert command[:2] == ["qlora-bert", "train"] and best["command"] == " ".join(command)
    rebuilt = cli.config_from_args(cli.build_parser().parse_args(command[1:]))
    spec = json.loads((out / "trials" / f"{best['number']:03d}" / "spec.json").read_text())["config"]
    assert {k: v for k, v in rebuilt.to_dict().items() if k not in ("output_dir", "plots_dir", "overwrite")} == {
        k: v for k, v in spec.items() if k not in ("output_dir", "plots_dir", "overwrite")
    }
    assert (tmp_path / "plots" / "tune_study.png").stat().st_size > 10_000
    assert not (out / "trials" / "000" / "run").exists()  # checkpoints go; scores stay in the study
    # the same folder again: refused without --resume, and a study of other data is not resumed
    before = (out / "study.db").read_bytes()
    assert cli.main(args_for(tiny_bert, easy_csv, out, "--trials", "3")) == 2
    other = tmp_path / "other.csv"
    pd.read_csv(easy_csv).head(200).to_csv(other, index=False)
    assert cli.main(args_for(tiny_bert, other, out, "--trials", "4", "--resume")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "already holds a study" in err[0] and "tunes other data or another task" in err[1]
    assert (out / "study.db").read_bytes() == before


@pytest.mark.parametrize("shape", ["multi_label", "regression_pairs"])
def test_multi_label_and_regression_pairs_are_tuned_on_their_own_metric(
    shape, tiny_bert, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(tune, "child_launcher", in_process)
    if shape == "multi_label":
        dataset = DATA / "goemotions_train_600.tsv.gz"
        extra = ["--no-header", "--text-column", "0", "--label-column", "1", "--multi-label"]
        extra += ["--label-names-file", str(DATA / "goemotions_labels.txt")]
    else:  # MRPC's pairs with a score in place of the 0/1 label
        rows = pd.read_csv(DATA / "mrpc_train_300.tsv.gz", sep="\t", quoting=3, encoding="utf-8-sig")
        dataset = tmp_path / "scores.csv"
        frame = rows[["#1 String", "#2 String"]].set_axis(["text", "text_pair"], axis=1)
        frame.assign(score=rows["Quality"] * 4 + 0.5).to_csv(dataset, index=False)
        extra = ["--text-pair-column", "text_pair", "--label-column", "score"]
    out = tmp_path / "study"
    train_best = ["--train-best"] if shape == "regression_pairs" else []
    assert cli.main(args_for(tiny_bert, dataset, out, *extra, "--trials", "1", *train_best)) == 0
    study = load(out)
    expected = {"multi_label": ("f1_macro", "multi_label"), "regression_pairs": ("spearman", "regression")}[shape]
    assert (study.user_attrs["selection_metric"], study.user_attrs["data"]["task"]) == expected
    best = json.loads((out / "best_trial.json").read_text())
    assert study.trials[0].state.name == "COMPLETE" and best["value"] == study.best_value
    if shape == "regression_pairs":  # --train-best ran the saved command: the test split, scored once
        assert "class_weights" not in best["params"] and "--text-pair-column text_pair" in best["command"]
        metrics = json.loads((out / "best" / "metrics.json").read_text())
        assert metrics["command"].endswith(f"--output-dir {out / 'best'}") and "test_spearman" in metrics
        assert f'"test_spearman": {metrics["test_spearman"]}' in capsys.readouterr().out
    else:
        assert best["params"]["class_weights"] in ("none", "auto")


def test_no_trial_runs_past_the_timeout(tiny_bert, easy_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tune, "child_launcher", in_process)
    out = tmp_path / "study"
    # 50 epochs (600 steps, about half a minute here), a 2-second limit: the first trial is cut, no other starts
    assert cli.main(args_for(tiny_bert, easy_csv, out, "--trials", "5", "--timeout", "2", "--epochs", "50")) == 0
    trials = load(out).trials
    assert len(trials) == 1 and "the study's time limit" in capsys.readouterr().out
    assert trials[0].state.name in ("PRUNED", "FAIL") and trials[0].duration.total_seconds() < 15


def test_a_killed_study_resumes_without_counting_a_trial_twice(tiny_bert, easy_csv, tmp_path, capsys):
    """The study and its running trial killed together (as `kill` on the process group does), then --resume."""
    out = tmp_path / "study"
    args = args_for(tiny_bert, easy_csv, out, "--trials", "3")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(
        [sys.executable, "-m", "qlora_helpers", *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, holding the study and its trial's process
    )
    try:
        deadline = time.time() + 300
        while not (out / "trials" / "001" / "log.txt").exists():  # trial 0 done, trial 1's process started
            assert first.poll() is None and time.time() < deadline, (tmp_path / "first.log").read_text()[-2000:]
            time.sleep(0.5)
        time.sleep(2)
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    before = load(out).trials
    assert [t.state.name for t in before] == ["COMPLETE", "RUNNING"]  # killed in the middle of trial 1
    assert cli.main([*args, "--resume"]) == 0
    assert "resuming: trial(s) [1] were cut off by the stop" in capsys.readouterr().out
    after = load(out).trials
    assert [t.number for t in after] == [0, 1, 2, 3]
    assert after[1].state.name == "FAIL" and load(out).user_attrs["interrupted"] == [1]
    assert (after[0].state, after[0].value, after[0].params) == (before[0].state, before[0].value, before[0].params)
    assert len(tune.counted(load(out))) == 3  # trials 0, 2 and 3: the interrupted one is not counted
    assert cli.main([*args, "--resume"]) == 0 and len(load(out).trials) == 4  # nothing left to add


@pytest.mark.parametrize("changed", ["4,16", "4:16"])
def test_resuming_with_other_choices_is_one_line_and_leaves_the_study_as_it_was(
    tiny_bert, easy_csv, tmp_path, capsys, changed
):
    """Optuna cannot change a searched setting's choices (or make them a range) in a study; said before a trial."""
    from optuna.distributions import CategoricalDistribution

    out = tmp_path / "study"
    out.mkdir()
    study = optuna.create_study(study_name=tune.STUDY_NAME, storage=tune.StudyFiles(out).storage, direction="maximize")
    recorded = {"lora_r": CategoricalDistribution([4, 8])}
    study.add_trial(optuna.trial.create_trial(params={"lora_r": 4}, distributions=recorded, value=0.5))
    before = (out / "study.db").read_bytes()
    args = [a if a != "4,8" else changed for a in args_for(tiny_bert, easy_csv, out, "--resume")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lora-r: the study in" in err[0] and "searched choices 4,8" in err[0], err
    assert (out / "study.db").read_bytes() == before and len(load(out).trials) == 1


def test_resuming_with_another_range_is_refused_not_mixed_into_the_study(tiny_bert, easy_csv, tmp_path, capsys):
    from optuna.distributions import FloatDistribution

    out = tmp_path / "study"
    out.mkdir()
    study = optuna.create_study(study_name=tune.STUDY_NAME, storage=tune.StudyFiles(out).storage, direction="maximize")
    recorded = {"lr": FloatDistribution(1e-4, 2e-3, log=True)}
    study.add_trial(optuna.trial.create_trial(params={"lr": 5e-4}, distributions=recorded, value=0.5))
    assert cli.main(args_for(tiny_bert, easy_csv, out, "--resume", "--lr", "1e-2:2e-2")) == 2
    assert "--lr: the study in" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "another program's"])
def test_resuming_a_damaged_or_foreign_study_file_is_one_line(tiny_bert, easy_csv, tmp_path, capsys, damage):
    import sqlite3

    out = tmp_path / "study"
    out.mkdir()
    db = tune.StudyFiles(out).db
    if damage == "truncated":
        optuna.create_study(study_name=tune.STUDY_NAME, storage=tune.StudyFiles(out).storage)
        db.write_bytes(db.read_bytes()[:3000])
    else:
        with sqlite3.connect(db) as con:
            con.execute("create table notes (text)")
    before = db.read_bytes()
    assert cli.main(args_for(tiny_bert, easy_csv, out, "--resume")) == 2
    assert "cannot be resumed: it is damaged or holds no study of this tool" in capsys.readouterr().err
    assert db.read_bytes() == before  # the file is left as it was


def test_a_trial_process_dies_with_the_study_process_even_by_sigkill(tmp_path):
    """The parent here stands for `tune`: killed with -9, the child it started with die_with_parent goes too."""
    import textwrap

    child_pid = tmp_path / "child.pid"
    parent = textwrap.dedent(f"""
        import subprocess, sys, time
        from qlora_helpers.tune.processes import die_with_parent
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=die_with_parent)
        open({str(child_pid)!r}, "w").write(str(child.pid))
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=ROOT)
    for _ in range(200):
        if child_pid.exists() and child_pid.read_text():
            break
        time.sleep(0.05)
    pid = int(child_pid.read_text())
    proc.kill()
    proc.wait()
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the trial process outlived the study process")
