"""Past one machine, on one CPU host: torchrun as 2 nodes x 1 process (gloo, rendezvous on localhost) trains
like one process with the same effective batch, on disjoint shards; `predict --dataset` under torchrun splits
the rows across processes and writes one output in the input's order."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import train_args

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def two_nodes(*command: str) -> list[subprocess.CompletedProcess]:
    """The README's multi-node command, both nodes on this host: node ranks 0 and 1, one process each."""
    port, launched = free_port(), []
    for node in (0, 1):
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
        rendezvous = ["--node-rank", str(node), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}"]
        launched.append(
            subprocess.Popen(
                [*torchrun, *rendezvous, "--rdzv-id", "qlora-test", *command],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=ENV,
            )
        )
    done = []
    for p in launched:
        out, err = p.communicate(timeout=900)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


@pytest.mark.slow
def test_two_nodes_train_on_disjoint_shards_like_one_process(tiny_bert, easy_csv, tmp_path):
    probe = two_nodes(str(ROOT / "tests" / "ddp_shard_probe.py"), str(tiny_bert), str(easy_csv), str(tmp_path))
    assert all(r.returncode == 0 for r in probe), probe[0].stderr[-2000:] + probe[1].stderr[-2000:]
    shares = [json.loads((tmp_path / f"rank{i}.json").read_text())["rows"] for i in (0, 1)]
    first_epoch = [{tuple(ids) for e, ids in rows if e == 0} for rows in shares]
    assert len(first_epoch[0]) == len(first_epoch[1]) == 96 and not first_epoch[0] & first_epoch[1]

    # the same effective batch (8 per node x 2 nodes, and 8 x 2 accumulated on one process), the same lr
    nodes = two_nodes(
        "-m", "qlora_helpers", *train_args(tiny_bert, easy_csv, tmp_path / "nodes", grad_accum=1, lr_scaling="none")
    )
    assert all(r.returncode == 0 for r in nodes), nodes[0].stderr[-3000:]
    single = subprocess.run(
        [sys.executable, "-m", "qlora_helpers", *train_args(tiny_bert, easy_csv, tmp_path / "one", grad_accum=2)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=900,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    both = json.loads((tmp_path / "nodes" / "metrics.json").read_text())
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert (both["world_size"], both["effective_batch_size"]) == (2, one["effective_batch_size"]) == (2, 16)
    assert both["optimizer_steps"] == one["optimizer_steps"]
    assert abs(both["test_accuracy"] - one["test_accuracy"]) <= 0.1 and min(both["test_accuracy"], 1) >= 0.8
    assert "data parallel: 2 processes" in nodes[0].stdout + nodes[1].stdout


@pytest.mark.slow
def test_predict_under_torchrun_splits_the_rows_and_writes_them_once_in_order(tiny_bert, easy_csv, tmp_path):
    run = tmp_path / "run"
    trained = subprocess.run(
        [sys.executable, "-m", "qlora_helpers", *train_args(tiny_bert, easy_csv, run, epochs=1.0)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=900,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    predict = ["predict", "--adapter", str(run), "--dataset", str(easy_csv)]
    alone = subprocess.run(
        [sys.executable, "-m", "qlora_helpers", *predict, "--output", str(tmp_path / "one.jsonl")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert alone.returncode == 0, alone.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    split = subprocess.run(
        [*torchrun, "-m", "qlora_helpers", *predict, "--output", str(tmp_path / "two.jsonl")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert split.returncode == 0, split.stderr[-2000:]
    one = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert len(two) == len(one) == 240 and split.stdout.count("wrote 240 predictions") == 1
    assert [r["text"] for r in two] == [r["text"] for r in one]  # the input's order
    assert [r["label"] for r in two] == [r["label"] for r in one]
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(one, two)) < 1e-4
