"""The benchmark runner and harness on the CPU: real arms on the tiny BERT, experiments as data, plots from files."""

import json

import pytest
import torch
from conftest import TINY_RUN, tiny_settings

from benchmarks.draw import draw_all
from benchmarks.harness import ARMS, run_arm, run_arms, weight_arithmetic_mb
from qlora_helpers.presets import make_config


@pytest.fixture
def bench_settings(tiny_bert, easy_csv, tmp_path):
    """The tiny run as a speed run: 6 steps of 4 texts, checkpointing on."""
    changes = dict(batch_size=4, grad_accum=1, max_steps=6, gradient_checkpointing=True, overwrite=True)
    return tiny_settings(tiny_bert, easy_csv, tmp_path / "run", **changes)


@pytest.mark.parametrize("arm", ARMS)
def test_each_arm_trains_only_what_it_should(arm, bench_settings):
    torch.backends.cuda.enable_cudnn_sdp(True)  # PyTorch's default: the arm must switch it off as `train` does
    record = run_arm(arm, make_config("full", **bench_settings), warmup_steps=2)
    assert record["arm"] == arm and record["optimizer_steps"] == 6 and record["timed_steps"] == 4
    # recorded to 0.01 s: a fast arm (0.46 s an epoch) is further than 1% from the unrounded value
    assert record["samples_per_second"] > 0
    assert record["seconds_per_epoch"] == round(record["train_rows"] / record["samples_per_second"], 2)
    assert (
        record["peak_allocated_mb"] is None and record["weight_memory_mb"] is None
    )  # no GPU here: no made-up numbers
    assert record["batch_size"] == 4 and record["max_length"] == 32 and record["gradient_checkpointing"] is True
    assert record["cudnn_attention"] is False and not torch.backends.cuda.cudnn_sdp_enabled()  # the recipe's kernels
    if "lora" in arm:
        assert record["trainable_percent"] < 20 and record["lora_r"] == 16  # tiny model: LoRA on every linear layer
        assert record["optimizer"] == "paged_adamw_8bit"
    else:
        assert record["trainable_params"] == record["total_params"] and record["optimizer"] == "adamw_torch"
    assert record["test_accuracy"] is None  # speed runs are not run to completion


def test_run_to_completion_records_test_accuracy(bench_settings):
    settings = {**bench_settings, **TINY_RUN}  # the whole tiny run: it plateaus at 50% for a few evaluations first
    del settings["max_steps"]
    record = run_arm("qlora", make_config("full", **settings), warmup_steps=2, evaluate_test=True)
    assert record["test_accuracy"] >= 0.9 and 0 < record["test_f1_weighted"] <= 1


def test_arms_run_in_their_own_processes_and_land_in_one_file(bench_settings, tmp_path):
    out = tmp_path / "results" / "eff.json"
    result = run_arms(
        ["qlora", "full_fp32"], bench_settings, out, warmup_steps=2, checkpointing=(True, False), label="t"
    )
    saved = json.loads(out.read_text())
    assert (
        saved == result and saved["gpu"] == "cpu" and saved["label"] == "t" and "command" in saved and "date" in saved
    )
    assert [(r["arm"], r["gradient_checkpointing"]) for r in saved["records"]] == [
        ("qlora", True),
        ("full_fp32", True),
        ("qlora", False),
        ("full_fp32", False),
    ]
    assert all("error" not in r and r["process_seconds"] > 0 for r in saved["records"])


def test_weight_arithmetic():
    mib = 2**20
    assert weight_arithmetic_mb(1_000_000, 1_000_000, 0, "full_fp32") == pytest.approx(4e6 / mib)
    assert weight_arithmetic_mb(1_000_000, 10_000, 0, "lora_16bit") == pytest.approx((990_000 * 2 + 40_000) / mib)
    # 4.127 bits a quantized weight; embeddings and trainable weights at fp32
    assert weight_arithmetic_mb(1_000_000, 10_000, 90_000, "qlora") == pytest.approx(
        (900_000 * 4.127 / 8 + 400_000) / mib
    )


def test_committed_results_draw_both_plots(tmp_path):
    paths = draw_all(directory=tmp_path)
    assert sorted(p.name for p in paths) == ["efficiency_comparison.png", "lora_rank_sensitivity.png"]
    assert all(p.stat().st_size > 30_000 for p in paths)


def test_committed_results_have_provenance():
    for name in ("efficiency_bert_base_shapes.json", "accuracy_minilm_imdb.json", "lora_rank_sensitivity_minilm.json"):
        data = json.loads(open(f"benchmarks/results/{name}").read())
        assert data["gpu"].startswith("NVIDIA") and data["date"] and data["command"]
        for r in data["records"]:
            assert set(r["versions"]) >= {"torch", "transformers", "peft", "bitsandbytes"}
            assert r["peak_allocated_mb"] >= r["weight_memory_mb"] > 0


def test_recipe_summary_groups_presets_and_levers_and_divides_by_the_reference():
    from benchmarks.kinds.recipes import summarise_recipes

    def rec(profile, seed, acc, sps, peak, lr, targets=("query", "value"), batch=16):
        return {
            "profile": profile,
            "arm": "qlora",
            "seed": seed,
            "test_accuracy": acc,
            "samples_per_second": sps,
            "seconds_per_epoch": 100 / sps,
            "peak_allocated_mb": peak,
            "lr": lr,
            "batch_size": batch,
            "target_modules": list(targets),
        }

    records = [
        rec("reference", 1, 0.70, 50.0, 250.0, 2e-4, batch=32),  # the preset with a lever changed: not the base
        rec("reference", 1, 0.80, 100.0, 500.0, 2e-4),
        rec("full", 1, 0.90, 400.0, 2000.0, 5e-4, ("dense",)),
        rec("full", 2, 0.92, 500.0, 2000.0, 5e-4, ("dense",)),
        rec("full", 1, 0.85, 600.0, 1000.0, 1e-3),
        {"profile": "full", "arm": "qlora", "error": "boom"},
    ]
    summary = {(s["profile"], s["lr"], s["batch_size"]): s for s in summarise_recipes(records)}
    assert set(summary) == {
        ("reference", 2e-4, 32),
        ("reference", 2e-4, 16),
        ("full", 5e-4, 16),
        ("full", 1e-3, 16),
    }  # a lever is its own group
    full = summary[("full", 5e-4, 16)]
    assert full["seeds"] == [1, 2] and full["test_accuracy_mean"] == pytest.approx(0.91)
    assert full["test_accuracy_sd"] == pytest.approx(0.0141, abs=1e-4)
    assert (full["speedup_vs_reference"], full["peak_memory_vs_reference"]) == (4.5, 4.0)


def run_runner(*args):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=600,
    )


def test_an_experiment_file_runs_each_preset_in_its_own_process(tiny_bert, easy_csv, tmp_path, monkeypatch):
    spec = {
        "kind": "recipes",
        "about": "tiny",
        "model": "${MINILM}",  # a location variable, read from the environment
        "dataset": str(easy_csv),
        "settings": {"max_steps": 4, "max_length": 32, "label_names": ["negative", "positive"]},
        "set": {"full": {"batch_size": 8}},
        "runs": ["full:qlora", "reference:qlora"],
        "warmup_steps": 1,
    }
    experiment, out = tmp_path / "tiny.json", tmp_path / "out" / "recipes.json"
    experiment.write_text(json.dumps(spec))
    monkeypatch.setenv("QLORA_MINILM", str(tiny_bert))
    r = run_runner(experiment, "--output", out)
    assert r.returncode == 0, r.stderr[-2000:]
    saved = json.loads(out.read_text())
    assert saved["experiment"] == "tiny" and saved["locations"]["MINILM"] == str(tiny_bert)
    assert saved["command"].startswith("python -m benchmarks.run") and saved["gpu"] == "cpu"
    assert set(saved["versions"]) >= {"torch", "transformers", "peft", "bitsandbytes", "accelerate"}
    full, reference = saved["records"]
    assert (full["profile"], full["batch_size"], full["max_length"], full["truncation"]) == (
        "full",
        8,
        32,
        "head_tail",
    )
    assert full["model"] == str(tiny_bert) and full["optimizer_steps"] == 4 and full["test_accuracy"] is None
    # the reference preset computes in fp16, which needs a GPU: its run fails alone, with the reason, and is kept
    assert reference["profile"] == "reference" and "float16 needs a GPU" in reference["error"]
    assert [(s["profile"], s["runs"]) for s in saved["summary"]] == [("full", 1)]


def test_every_committed_experiment_is_valid_and_names_its_result():
    from benchmarks.run import EXPERIMENTS, KINDS

    specs = sorted(EXPERIMENTS.glob("*.json"))
    assert len(specs) >= 8
    for path in specs:
        spec = json.loads(path.read_text())
        assert spec["kind"] in KINDS and spec["about"] and spec["output"].endswith(".json"), path.name
        text = path.read_text()
        assert ".carry" not in text and "/tmp" not in text and "$OUT" not in text  # no one machine's layout


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"bogus": 1}, "unexpected keyword argument 'bogus'"),
        ({"lr": -1}, "lr must be a positive number, got -1"),
    ],
)
def test_bad_settings_fail_before_any_run(tiny_bert, easy_csv, tmp_path, settings, message):
    spec = {"kind": "arms", "about": "bad", "model": str(tiny_bert), "dataset": str(easy_csv), "settings": settings}
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    r = run_runner(tmp_path / "bad.json", "--output", tmp_path / "out.json")
    assert r.returncode == 2 and message in r.stderr and not (tmp_path / "out.json").exists()


def test_the_runner_lists_experiments_and_locations():
    r = run_runner("--list")
    assert r.returncode == 0 and "efficiency_bert_base_shapes" in r.stdout and "$QLORA_IMDB" in r.stdout


def test_the_time_probe_buckets_kernels_and_accounts_for_the_wall_time(bench_settings):
    from benchmarks.kinds.time_breakdown import bucket

    assert bucket("void kDequantizeBlockwise<__nv_bfloat16, 512, 64, 8, 2>(...)") == "dequantization"
    assert bucket("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64") == "matmul"
    assert bucket("void kOptimizer32bit2State<float, 1>(...)") == "optimizer"
    assert bucket("triton_poi_fused_add_native_layer_norm_0") == "elementwise and norms"
    assert bucket("fmha_cutlassF_bf16_aligned_64x128_rf_sm80") == "attention" and bucket("mystery") == "other"
    settings = {**bench_settings, "max_steps": 14, "gradient_checkpointing": False}
    record = run_arm("qlora", make_config("full", **settings), warmup_steps=2, probes=("time",))
    profile = record["time_breakdown"]  # steps 3-12 on the CPU: no kernels, so all of the wall time is host time
    assert profile["steps"] == 10 and profile["wall_ms_per_step"] > 0 and profile["gpu_busy_ms_per_step"] == 0
    assert profile["host_ms_per_step"] == profile["wall_ms_per_step"] and profile["gpu_ms_per_step_by_kind"] == {}


def test_a_train_record_keeps_the_curve_of_the_score_the_run_selected_by(tmp_path):
    from benchmarks.experiment import run_fields

    check = {
        "best_step": 80,
        "best_evaluation": 2,
        "evaluations": 2,
        "last_quarter_gain": 0.0,
        "still_climbing": False,
    }
    metrics = {"selection_metric": "accuracy", "best_val_accuracy": 0.8, "length_check": check}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    log = [{"loss": 0.6, "step": 20}, {"eval_f1_macro": 0.5, "eval_accuracy": 0.7, "step": 40}]
    log += [{"eval_f1_macro": 0.4, "eval_accuracy": 0.8, "step": 80}, {"train_runtime": 3.0, "step": 80}]
    (tmp_path / "training_log.json").write_text(json.dumps(log))
    record = run_fields(str(tmp_path))
    assert record["val_curve"] == [[40, 0.7], [80, 0.8]] and record["val_curve_metric"] == "eval_accuracy"
    assert record["length_check"] == check and record["best_val_accuracy"] == 0.8
    assert run_fields(str(tmp_path / "unfinished")) is None
