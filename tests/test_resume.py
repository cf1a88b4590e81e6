"""An interrupted run resumes from its last complete checkpoint to the same result as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import train_args

ROOT = Path(__file__).resolve().parents[1]


def train_cmd(tiny_bert, easy_csv, out, *extra):
    """The tiny run as a command, two evaluations (and checkpoints) an epoch."""
    return [sys.executable, "-m", "qlora_helpers", *train_args(tiny_bert, easy_csv, out, evals_per_epoch=2), *extra]


ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def test_killed_run_resumes_to_the_same_result(tiny_bert, easy_csv, tmp_path):
    reference = subprocess.run(
        train_cmd(tiny_bert, easy_csv, tmp_path / "ref"), env=ENV, capture_output=True, text=True, timeout=600
    )
    assert reference.returncode == 0, reference.stderr[-2000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        train_cmd(tiny_bert, easy_csv, out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "checkpoints").glob("checkpoint-*/trainer_state.json")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # as a notebook kernel restart or a preempted job would
    proc.wait(timeout=60)
    assert proc.returncode != 0 and not (out / "metrics.json").exists()
    saved = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert saved, "the run was killed before any checkpoint"
    (out / "checkpoints" / "checkpoint-999").mkdir()  # a checkpoint cut off mid-save: no trainer_state.json

    resumed = subprocess.run(
        train_cmd(tiny_bert, easy_csv, out, "--resume"), env=ENV, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "removing" in resumed.stdout and "checkpoint-999" in resumed.stdout and "resuming from" in resumed.stdout
    ref_m, res_m = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "ref", out))
    assert res_m["test_accuracy"] == ref_m["test_accuracy"] and res_m["optimizer_steps"] == ref_m["optimizer_steps"]
    ref_p, res_p = (pd.read_csv(d / "test_predictions.csv") for d in (tmp_path / "ref", out))
    assert (ref_p["predicted"] == res_p["predicted"]).all()
    assert (ref_p["probability"] - res_p["probability"]).abs().max() < 1e-4


def test_resume_refuses_finished_and_empty_runs(tiny_bert, easy_csv, tmp_path):
    empty = subprocess.run(
        train_cmd(tiny_bert, easy_csv, tmp_path / "none", "--resume"),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (
        empty.returncode == 2
        and "nothing to resume" in empty.stderr
        and "start again without --resume" in empty.stderr
    )


def test_an_interrupted_run_is_not_restarted_over_its_checkpoints_unasked(tmp_path):
    from qlora_helpers.errors import UserError
    from qlora_helpers.run_files import check_output_dir

    state = tmp_path / "run" / "checkpoints" / "checkpoint-40" / "trainer_state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    with pytest.raises(UserError, match="interrupted run with checkpoints; pass --resume .* --overwrite"):
        check_output_dir(str(tmp_path / "run"), overwrite=False)
    check_output_dir(str(tmp_path / "run"), overwrite=False, resume=True)
    check_output_dir(str(tmp_path / "run"), overwrite=True)
