"""The efficiency harness on the CPU: real arms on the tiny BERT, record fields and units, plots from files."""

import json

import pytest

from qlora_helpers.bench import ARMS, run_arm, run_arms, weight_arithmetic_mb
from qlora_helpers.bench_plots import draw_all
from qlora_helpers.config import make_config


@pytest.fixture
def bench_settings(tiny_bert, easy_csv, tmp_path):
    return dict(model=str(tiny_bert), dataset=str(easy_csv), max_length=32, batch_size=4, grad_accum=1, max_steps=6,
                gradient_checkpointing=True,
                output_dir=str(tmp_path / "run"), plots_dir=str(tmp_path / "plots"), report_to="none", overwrite=True,
                label_names=["negative", "positive"])


@pytest.mark.parametrize("arm", ARMS)
def test_each_arm_trains_only_what_it_should(arm, bench_settings):
    record = run_arm(arm, make_config("full", **bench_settings), warmup_steps=2)
    assert record["arm"] == arm and record["optimizer_steps"] == 6 and record["timed_steps"] == 4
    assert record["samples_per_second"] > 0 and record["seconds_per_epoch"] == pytest.approx(
        record["train_rows"] / record["samples_per_second"], rel=0.01)
    assert record["peak_allocated_mb"] is None and record["weight_memory_mb"] is None  # no GPU here: no made-up numbers
    assert record["batch_size"] == 4 and record["max_length"] == 32 and record["gradient_checkpointing"] is True
    if "lora" in arm:
        assert record["trainable_percent"] < 20 and record["lora_r"] == 16  # tiny model: LoRA on every linear layer
        assert record["optimizer"] == "paged_adamw_8bit"
    else:
        assert record["trainable_params"] == record["total_params"] and record["optimizer"] == "adamw_torch"
    assert record["test_accuracy"] is None  # speed runs are not run to completion


def test_run_to_completion_records_test_accuracy(bench_settings):
    settings = {**bench_settings, "max_steps": None, "epochs": 6.0, "lr": 5e-3, "batch_size": 8, "grad_accum": 2,
                "early_stopping_patience": 0}  # the tiny model plateaus at 50% for a few evaluations first
    record = run_arm("qlora", make_config("full", **settings), warmup_steps=2, evaluate_test=True)
    assert record["test_accuracy"] >= 0.9 and 0 < record["test_f1_weighted"] <= 1


def test_arms_run_in_their_own_processes_and_land_in_one_file(bench_settings, tmp_path):
    out = tmp_path / "results" / "eff.json"
    result = run_arms(["qlora", "full_fp32"], bench_settings, out, warmup_steps=2, checkpointing=(True, False), label="t")
    saved = json.loads(out.read_text())
    assert saved == result and saved["gpu"] == "cpu" and saved["label"] == "t" and "command" in saved and "date" in saved
    assert [(r["arm"], r["gradient_checkpointing"]) for r in saved["records"]] == [
        ("qlora", True), ("full_fp32", True), ("qlora", False), ("full_fp32", False)]
    assert all("error" not in r and r["process_seconds"] > 0 for r in saved["records"])


def test_weight_arithmetic():
    mib = 2**20
    assert weight_arithmetic_mb(1_000_000, 1_000_000, 0, "full_fp32") == pytest.approx(4e6 / mib)
    assert weight_arithmetic_mb(1_000_000, 10_000, 0, "lora_16bit") == pytest.approx((990_000 * 2 + 40_000) / mib)
    # 4.127 bits a quantized weight; embeddings and trainable weights at fp32
    assert weight_arithmetic_mb(1_000_000, 10_000, 90_000, "qlora") == pytest.approx((900_000 * 4.127 / 8 + 400_000) / mib)


def test_committed_results_draw_both_plots(tmp_path):
    paths = draw_all("benchmarks/results", tmp_path)
    assert sorted(p.name for p in paths) == ["efficiency_comparison.png", "lora_rank_sensitivity.png"]
    assert all(p.stat().st_size > 30_000 for p in paths)


def test_committed_results_have_provenance():
    for name in ("efficiency_bert_base_shapes.json", "accuracy_minilm_imdb.json", "lora_rank_sensitivity_minilm.json"):
        data = json.loads(open(f"benchmarks/results/{name}").read())
        assert data["gpu"].startswith("NVIDIA") and data["date"] and data["command"]
        for r in data["records"]:
            assert set(r["versions"]) >= {"torch", "transformers", "peft", "bitsandbytes"}
            assert r["peak_allocated_mb"] >= r["weight_memory_mb"] > 0
