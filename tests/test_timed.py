"""`benchmarks.timed` records what a command took, its exit code, the machine and the metrics it names."""

import json
import sys

from benchmarks import timed


def test_timed_records_duration_exit_code_and_metrics(tmp_path, monkeypatch):
    monkeypatch.setattr(timed, "RUNS", tmp_path / "runs")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"test_accuracy": 0.84, "train_runtime_s": 12.5, "other": 1}))
    code = timed.main(
        [
            "demo",
            "--metrics",
            str(metrics),
            "--",
            sys.executable,
            "-c",
            "import sys, time; time.sleep(0.3); sys.exit(3)",
        ]
    )
    record = json.loads((tmp_path / "runs" / "demo.json").read_text())
    assert code == 3 and record["exit_code"] == 3
    assert record["metrics"]["test_accuracy"] == 0.84 and "other" not in record["metrics"]
    assert 0.3 <= record["seconds"] < 60 and record["machine"]["cores"] >= 1
    assert record["command"].endswith("sys.exit(3)") and record["versions"]["torch"]
