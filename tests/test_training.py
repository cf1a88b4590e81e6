"""The whole recipe on the tiny BERT: several epochs with evaluation, outputs, reload, determinism."""

import json

import numpy as np
import pytest
from conftest import tiny_run_config

from qlora_helpers.infer.inference import load_adapter
from qlora_helpers.run import train_pipeline


@pytest.fixture(scope="module")
def finished_run(tiny_bert, easy_csv, tmp_path_factory):
    """Six epochs, two evaluations an epoch, no checkpoints: the AVX512-BF16 in-place repack would
    crash the first training step after an evaluation if it were not disabled."""
    cfg = tiny_run_config(tiny_bert, easy_csv, tmp_path_factory.mktemp("finished") / "run", save_checkpoints=False)
    return cfg, train_pipeline(cfg)


def test_training_lowers_the_loss_and_learns(finished_run):
    cfg, result = finished_run
    history = result.outcome.log_history
    train_losses = [h["loss"] for h in history if "loss" in h]
    evals = [h for h in history if "eval_loss" in h]
    assert len(evals) == 12  # 2 evaluations an epoch x 6 epochs, training went on after each
    assert train_losses[0] == pytest.approx(np.log(2), abs=0.05)  # loss not inflated by grad accumulation
    assert np.mean(train_losses[-5:]) < 0.3 < train_losses[0]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"] - 0.3
    assert result.metrics["test_accuracy"] >= 0.9


def test_outputs_and_metrics_json(finished_run):
    cfg, result = finished_run
    out = result.output_dir
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "classifier_config.json",
        "seen_rows.npz",
        "tokenizer.json",
        "training_config.json",
        "training_log.json",
        "test_predictions.csv",
        "metrics.json",
    ):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    for key in (
        "test_accuracy",
        "test_f1_weighted",
        "trainable_params",
        "total_params",
        "trainable_percent",
        "peak_gpu_memory_mb",
        "train_runtime_s",
        "train_samples_per_second",
        "compute_dtype",
        "device",
        "config",
        "versions",
    ):
        assert key in m, key
    assert m["peak_gpu_memory_mb"] is None and m["device"] == "cpu" and m["compute_dtype"] == "float32"
    assert set(m["versions"]) >= {"torch", "transformers", "peft", "bitsandbytes"}
    assert m["config"]["lora_r"] == 16 and m["config"]["optim"] == "paged_adamw_8bit"
    assert m["task"] == m["data"]["task"] == "single_label" and m["selection_metric"] == "accuracy"
    saved = json.loads((out / "classifier_config.json").read_text())
    assert (saved["task"], saved["labels"]["names"], saved["labels"]["values"]) == (
        "single_label",
        ["negative", "positive"],
        [0, 1],
    )
    assert saved["input"]["text_columns"] == ["review"] and saved["labels"]["column"] == "sentiment"
    assert (saved["max_length"], saved["truncation"], saved["base_model"]) == (32, "head_tail", cfg.model)
    # one class per text: argmax decides
    assert saved["thresholds"] is None and result.classifier_config.decision_thresholds() is None
    assert m["trainable_percent"] == pytest.approx(100 * m["trainable_params"] / m["total_params"], abs=1e-3)
    assert m["data"]["sizes"] == {"train": 192, "validation": 24, "test": 24}
    assert m["test_confusion_matrix"] == result.metrics["test_confusion_matrix"]
    # the timed steps' spread: 72 steps, the first 2 and those that ended with an evaluation left out
    steps = result.outcome.metrics["timed_steps"]
    assert 50 <= steps <= 70 and m["train_step_ms"] == result.outcome.metrics["step_ms"]
    q = m["train_step_ms"]
    assert 0 < q["p10"] <= q["median"] <= q["p90"] <= q["max"]
    assert sum(map(sum, m["test_confusion_matrix"])) == 24
    # the classifier head travels inside the adapter file
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        assert any("classifier" in k for k in f.keys())


def test_plots_are_written(finished_run):
    cfg, _ = finished_run
    from pathlib import Path

    for name in ("dataset_stats.png", "training_curves.png", "confusion_matrix.png"):
        path = Path(cfg.plots_dir) / name
        assert path.is_file() and path.stat().st_size > 10_000, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reloaded_adapter_reproduces_test_logits_exactly(finished_run):
    cfg, result = finished_run
    loaded = load_adapter(result.output_dir)
    test = __import__("pandas").read_csv(result.output_dir / "test_predictions.csv")
    logits = loaded.logits(test["text"].tolist())
    assert np.array_equal(logits, result.test_logits)
    rows = loaded.predict(["great wonderful excellent film", "awful terrible boring waste"], progress=False)
    assert [r["label"] for r in rows] == ["positive", "negative"]
    assert all(0.5 < r["probability"] <= 1 and abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)


def test_same_seed_same_metrics(finished_run, tmp_path):
    cfg, result = finished_run
    again = train_pipeline(cfg.replace(output_dir=str(tmp_path / "again"), plots_dir=str(tmp_path / "plots")))
    assert again.metrics["test_accuracy"] == result.metrics["test_accuracy"]
    assert np.array_equal(again.test_logits, result.test_logits)


def test_early_stopping_restores_the_best_checkpoint(tiny_config):
    cfg = tiny_config(epochs=4.0, evals_per_epoch=1, early_stopping_patience=1, lr=1e-6)  # lr too small: no gains
    result = train_pipeline(cfg)
    evals = [h for h in result.outcome.log_history if "eval_accuracy" in h]
    assert len(evals) < 4  # stopped before the last epoch
    assert result.metrics["best_val_accuracy"] == max(e["eval_accuracy"] for e in evals)
    assert result.metrics["best_checkpoint"] is not None


def test_nan_loss_stops_training_with_advice(tiny_config, monkeypatch):
    """A forward that turns NaN after a few steps ends the run with the step, the lr and the fix."""

    from qlora_helpers import pipeline
    from qlora_helpers.errors import UserError

    cfg = tiny_config(epochs=2.0, save_checkpoints=False)
    original = pipeline.build_model

    def poisoned(*args, **kwargs):
        built = original(*args, **kwargs)
        calls = {"n": 0}

        def hook(module, inputs, output):
            calls["n"] += 1
            return output * float("nan") if calls["n"] > 8 and module.training else output

        built.model.base_model.model.classifier.register_forward_hook(hook)
        return built

    monkeypatch.setattr(pipeline, "build_model", poisoned)
    with pytest.raises(
        UserError, match=r"training stopped at step \d+: the loss became nan \(learning rate .*lower --lr"
    ):
        train_pipeline(cfg)
    from pathlib import Path

    assert not (Path(cfg.output_dir) / "metrics.json").exists()


def test_training_clock_leaves_out_warm_up_and_evaluations():
    import time
    from types import SimpleNamespace

    from qlora_helpers.train.training import TrainingClock

    clock, state = TrainingClock(samples_per_step=10, warmup=2), SimpleNamespace(global_step=0)
    for step in range(1, 8):
        time.sleep(0.2 if step in (2, 4) else 0.02)  # step 2: warm-up; before step 4's end: an evaluation
        if step == 4:
            clock.on_evaluate(None, state, None)
        state.global_step = step
        clock.on_step_end(None, state, None)
    assert clock.steps == 4  # the intervals ending at steps 3, 5, 6, 7
    assert all(0.02 <= d < 0.15 for d in clock.durations)
    assert clock.samples_per_second() == round(40 / clock.seconds, 2)
    assert clock.step_ms_percentiles()["max"] < 150


@pytest.fixture
def restore_attention_kernels():
    import torch

    before = torch.backends.cuda.cudnn_sdp_enabled()
    yield
    torch.backends.cuda.enable_cudnn_sdp(before)


@pytest.mark.parametrize("allowed", [False, True])
def test_start_sets_the_attention_kernels_from_the_config(tiny_config, restore_attention_kernels, allowed):
    """`start` applies `cudnn_attention` to the process (the flag PyTorch's attention dispatch reads);
    on the CPU it prints nothing about it, since only GPUs have those kernels."""
    import torch

    from qlora_helpers.pipeline import start

    torch.backends.cuda.enable_cudnn_sdp(not allowed)
    start(tiny_config(cudnn_attention=allowed))
    assert torch.backends.cuda.cudnn_sdp_enabled() is allowed


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A copy of the finished run's folder, to break, and what the check compares it with."""
    import shutil

    cfg, result = finished_run
    copy = tmp_path / "run"
    shutil.copytree(result.output_dir, copy)
    test = result.outcome.trainer.model, __import__("pandas").read_csv(copy / "test_predictions.csv")
    return copy, *test, result, cfg


def test_reload_check_passes_a_correct_run_exactly(run_copy):
    from qlora_helpers.infer.reload_check import check_reload

    copy, model, test, result, cfg = run_copy
    _, check = check_reload(copy, model, test, result.test_logits, result.classifier_config, cfg.eval_batch_size)
    assert check.passed and check.agreement == 1.0 and check.max_logit_diff == 0.0
    assert check.tensors_compared > 0 and "float32 epsilon" in check.reason and check.describe().endswith("PASSED")


@pytest.mark.parametrize("how", ["left out", "its initial values"])
def test_reload_check_fails_a_head_not_saved_as_trained(run_copy, how):
    from safetensors.torch import load_file, save_file

    from qlora_helpers.infer.reload_check import check_reload

    copy, model, test, result, cfg = run_copy
    weights = load_file(copy / "adapter_model.safetensors")
    if how == "left out":
        weights = {k: v for k, v in weights.items() if "classifier" not in k}
    else:
        weights = {k: v * 0 if "classifier" in k else v for k, v in weights.items()}
    save_file(weights, copy / "adapter_model.safetensors")
    _, check = check_reload(copy, model, test, result.test_logits, result.classifier_config, cfg.eval_batch_size)
    said = "head was not saved" if how == "left out" else "was not saved as trained"
    assert not check.passed and any("classifier" in p and said in p for p in check.problems)


def test_reload_check_fails_reordered_labels(run_copy):
    from qlora_helpers.infer.reload_check import check_reload

    copy, model, test, result, cfg = run_copy
    config = json.loads((copy / "classifier_config.json").read_text())
    config["labels"]["names"] = config["labels"]["names"][::-1]
    (copy / "classifier_config.json").write_text(json.dumps(config))
    _, check = check_reload(copy, model, test, result.test_logits, result.classifier_config, cfg.eval_batch_size)
    assert not check.passed and any(p.startswith("labels differs") for p in check.problems)


@pytest.mark.parametrize("lost", ["temperature", "thresholds"])
def test_reload_check_fails_a_lost_temperature_or_threshold(run_copy, lost):
    """The trained run had a temperature (or thresholds) that its saved file does not bring back."""
    from qlora_helpers.infer.reload_check import check_reload

    copy, model, test, result, cfg = run_copy
    trained = (
        result.classifier_config.with_temperature(1.5)
        if lost == "temperature"
        else result.classifier_config.with_thresholds({"mode": "global", "global": 0.3})
    )
    logits = result.test_logits / 1.5 if lost == "temperature" else result.test_logits
    _, check = check_reload(copy, model, test, logits, trained, cfg.eval_batch_size)
    assert not check.passed and any(p.startswith(f"{lost} differs") for p in check.problems)


def test_a_config_naming_another_label_count_than_the_head_is_one_line(run_copy):
    from qlora_helpers.errors import UserError

    copy, model, test, result, cfg = run_copy
    config = json.loads((copy / "classifier_config.json").read_text())
    config["labels"]["names"] += ["neutral"]
    config["labels"]["values"] += ["neutral"]
    (copy / "classifier_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="does not fit the 3 label"):
        load_adapter(copy)
