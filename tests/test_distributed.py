"""Data parallelism on the CPU: `torchrun --nproc-per-node 2` with the gloo backend runs the same pipeline,
both processes train, and only the main one writes outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import train_args

from qlora_helpers.train.training import Schedule

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]


def test_two_processes_train_together_and_write_once(tiny_bert, easy_csv, tmp_path):
    out, plots = tmp_path / "run", tmp_path / "plots"
    # checkpointing is off in the recipe; on here to show DDP and (non-reentrant) checkpointing cooperate
    settings = dict(grad_accum=1, gradient_checkpointing=True, plots_dir=str(plots))
    cmd = [*TORCHRUN, "-m", "qlora_helpers", *train_args(tiny_bert, easy_csv, out, **settings)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

    # 192 training texts / (8 per process x 2 processes) = 12 steps per epoch, 6 epochs, on each rank
    for rank in (0, 1):
        assert (
            f"[rank {rank}/2] trained 72 optimizer steps on its share of 192 training texts; peak GPU memory None MiB"
            in r.stderr
        )
    assert (
        r.stdout.count(
            "data parallel: 2 processes (this is rank 0, local rank 0); effective batch "
            "8 per device x 1 accumulation x 2 processes = 16"
        )
        == 1
    )
    assert r.stdout.count("test accuracy ") == 1 and r.stdout.count("trainable parameters:") == 1

    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["world_size"], metrics["effective_batch_size"]) == (2, 16)
    assert (metrics["optimizer_steps"], metrics["steps_per_epoch"]) == (72, 12)
    assert metrics["test_accuracy"] >= 0.85
    assert metrics["train_step_samples_per_second"] > 0
    assert sorted(p.name for p in plots.iterdir()) == [
        "confusion_matrix.png",
        "dataset_stats.png",
        "reliability_diagram.png",
        "training_curves.png",
    ]
    written = sorted(p.name for p in out.iterdir() if p.name != "checkpoints")
    assert written == sorted(
        [
            "README.md",
            "adapter_config.json",
            "adapter_model.safetensors",
            "classifier_config.json",
            "metrics.json",
            "seen_rows.npz",
            "test_predictions.csv",
            "tokenizer.json",
            "tokenizer_config.json",
            "training_config.json",
            "training_log.json",
        ]
    )
    evals = [e for e in json.loads((out / "training_log.json").read_text()) if "eval_accuracy" in e]
    assert len(evals) == 12  # two per epoch, logged once


def test_schedule_counts_every_process(tiny_config):
    """N processes with 1/N of the accumulation take the same optimizer steps as one process."""
    one = Schedule.for_run(tiny_config(batch_size=8, grad_accum=4), 1000, world_size=1)
    two = Schedule.for_run(tiny_config(batch_size=8, grad_accum=2), 1000, world_size=2)
    assert (one.steps_per_epoch, one.total_steps) == (two.steps_per_epoch, two.total_steps) == (32, 192)


def test_each_rank_gets_its_own_half_of_every_epoch(tiny_bert, easy_csv, tmp_path):
    """Length-grouped batches under DDP: the two ranks' rows never overlap, together they are the whole
    training split, and the order changes between epochs. The model is wrapped without the per-forward
    buffer broadcast and without the unused-parameter search."""
    cmd = [
        *TORCHRUN,
        str(ROOT / "tests" / "ddp_shard_probe.py"),
        str(tiny_bert),
        str(easy_csv),
        str(tmp_path),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    probes = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    for probe in probes:
        assert probe["wrapper"] == {
            "class": "DistributedDataParallel",
            "broadcast_buffers": False,
            "find_unused_parameters": False,
        }
    ranks = [probe["rows"] for probe in probes]
    orders = []
    for epoch in (0, 1):
        shares = [[tuple(ids) for e, ids in rows if e == epoch] for rows in ranks]
        assert [len(s) for s in shares] == [96, 96]  # 192 training texts, 12 batches of 8 per rank
        assert len(set(shares[0]) | set(shares[1])) == 192 and not set(shares[0]) & set(shares[1])
        orders.append(shares[0])
    assert orders[0] != orders[1]


def test_weights_and_biases_logs_once(tiny_bert, easy_csv, tmp_path):
    """Under torchrun only the main process logs to W&B (offline files here): one run, with the training
    and evaluation metrics in it."""
    settings = dict(epochs=2.0, report_to="wandb")
    cmd = [*TORCHRUN, "-m", "qlora_helpers", *train_args(tiny_bert, easy_csv, tmp_path / "run", **settings)]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "WANDB_SILENT": "true",
    }
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("logging: Weights & Biases offline") == 1
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    log = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert b"train/loss" in log and b"eval/accuracy" in log
