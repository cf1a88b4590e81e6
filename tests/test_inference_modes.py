"""After training: reload as 4bit / 16bit / merged, merge to a standalone model, batched prediction, model card."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.inference_modes import time_mode
from qlora_helpers.inference import load_for_inference, merge_adapter, mode_agreement
from qlora_helpers.pipeline import train_pipeline

ROOT = Path(__file__).resolve().parents[1]
# Measured on the CPU (fp32 maths): 16bit == 4bit exactly, merged within 7.5e-9. Asserted with 100x margin.
MAX_LOGIT_DIFF_CPU = 1e-6


@pytest.fixture(scope="module")
def adapter(tiny_bert, easy_csv, tmp_path_factory):
    from qlora_helpers.config import make_config

    out = tmp_path_factory.mktemp("modes")
    cfg = make_config(
        "full",
        model=str(tiny_bert),
        dataset=str(easy_csv),
        max_length=32,
        epochs=6.0,
        lr=5e-3,
        batch_size=8,
        grad_accum=2,
        output_dir=str(out / "adapter"),
        plots_dir=str(out / "plots"),
        report_to="none",
        save_checkpoints=False,
        early_stopping_patience=0,
        label_names=["negative", "positive"],
    )
    result = train_pipeline(cfg)
    return result.output_dir, result.test_logits


def run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )


def test_three_modes_agree_with_the_trained_model(adapter):
    out, trained_logits = adapter
    texts = pd.read_csv(out / "test_predictions.csv")["text"].tolist()
    agreement = mode_agreement(out, texts)
    assert set(agreement) == {"4bit", "16bit", "merged"}
    for mode, a in agreement.items():
        assert a["label_agreement"] == 1.0 and a["max_abs_logit_diff"] <= MAX_LOGIT_DIFF_CPU, (mode, a)
    assert np.array_equal(load_for_inference(out, "4bit").logits(texts, progress=False), trained_logits)


def test_a_reloaded_adapter_cuts_long_texts_as_in_training(adapter):
    from qlora_helpers.inference import predict_logits

    out, _ = adapter
    loaded = load_for_inference(out, "4bit")
    assert loaded.truncation == "head_tail" and loaded.max_length == 32
    long_review = [" ".join(["boring"] * 40 + ["wonderful"] * 40)]  # the verdict changes at the end
    as_trained = loaded.logits(long_review, progress=False)
    head_tail = predict_logits(loaded.model, loaded.tokenizer, long_review, 32, truncation="head_tail", progress=False)
    head_only = predict_logits(loaded.model, loaded.tokenizer, long_review, 32, truncation="head", progress=False)
    assert np.array_equal(as_trained, head_tail) and not np.allclose(as_trained, head_only, atol=1e-3)
    # the kept end is all "wonderful"; what the tiny model makes of 30 x "boring" alone varied between runs
    # (one of six full CI runs read it as positive), so only the end's verdict is asserted
    assert as_trained.argmax() == 1


def test_reloading_chooses_the_attention_kernels_the_run_trained_with(adapter, tmp_path):
    import shutil

    import torch

    out, _ = adapter
    before = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(True)
    load_for_inference(out, "4bit")
    assert not torch.backends.cuda.cudnn_sdp_enabled()  # the recipe's default, recorded in training_config.json
    allowed = tmp_path / "allowed"
    shutil.copytree(out, allowed)
    settings = json.loads((allowed / "training_config.json").read_text())
    assert settings["cudnn_attention"] is False
    (allowed / "training_config.json").write_text(json.dumps({**settings, "cudnn_attention": True}))
    try:
        load_for_inference(allowed, "4bit")
        assert torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)


def test_each_mode_predicts_from_a_fresh_process(adapter, tmp_path):
    out, _ = adapter
    labels = {}
    for mode in ("4bit", "16bit", "merged"):
        r = run(
            "-m",
            "qlora_helpers",
            "predict",
            "--adapter",
            out,
            "--mode",
            mode,
            "great wonderful film",
            "boring awful waste",
        )
        assert r.returncode == 0, r.stderr[-2000:]
        labels[mode] = [json.loads(line)["label"] for line in r.stdout.strip().splitlines()]
    assert labels == {m: ["positive", "negative"] for m in labels}


def test_merged_model_loads_without_peft(adapter, tmp_path):
    out, trained_logits = adapter
    merged = merge_adapter(out, tmp_path / "merged", dtype="float32")
    assert {"config.json", "model.safetensors", "README.md", "label_mapping.json"} <= {
        p.name for p in merged.iterdir()
    }
    script = (
        "import sys, json; sys.modules['peft'] = None\n"  # any import of peft would now fail
        "import torch, pandas as pd\n"
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
        f"m = AutoModelForSequenceClassification.from_pretrained({str(merged)!r}).eval()\n"
        f"t = AutoTokenizer.from_pretrained({str(merged)!r})\n"
        f"texts = pd.read_csv({str(out / 'test_predictions.csv')!r})['text'].tolist()\n"
        "batch = t(texts, truncation=True, max_length=32, padding=True, return_tensors='pt')\n"
        "with torch.no_grad(): ids = m(**batch).logits.argmax(-1).tolist()\n"
        "print(json.dumps([m.config.id2label[i] for i in ids]))\n"
    )
    r = run("-c", script)
    assert r.returncode == 0, r.stderr[-2000:]
    expected = pd.read_csv(out / "test_predictions.csv")["predicted"].tolist()
    assert json.loads(r.stdout.strip().splitlines()[-1]) == expected
    card = (merged / "README.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"Accuracy **{metrics['test_accuracy']:.4f}**" in card and "merge_and_unload" in card and "float32" in card
    with pytest.raises(Exception, match="already holds a model"):
        merge_adapter(out, merged)


def test_adapter_dir_has_a_model_card(adapter):
    out, _ = adapter
    card = (out / "README.md").read_text()
    assert "## Intended use and limits" in card and "LoRA r=16" in card and "| negative |" in card


def test_batched_prediction_over_a_file_keeps_order(adapter, tmp_path):
    out, _ = adapter
    texts = [
        "great",
        "awful terrible worst boring waste of a movie and the plot",
        "wonderful excellent best film ever",
    ]
    pd.DataFrame({"review": texts}).to_csv(tmp_path / "in.csv", index=False)
    for suffix in (".csv", ".jsonl"):
        target = tmp_path / f"pred{suffix}"
        r = run(
            "-m",
            "qlora_helpers",
            "predict",
            "--adapter",
            out,
            "--dataset",
            tmp_path / "in.csv",
            "--batch-size",
            2,
            "--output",
            target,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        rows = pd.read_csv(target) if suffix == ".csv" else pd.read_json(target, lines=True)
        assert rows["text"].tolist() == texts
        assert rows["label"].tolist() == ["positive", "negative", "positive"]
    r = run("-m", "qlora_helpers", "predict", "--adapter", out, "x", "--output", tmp_path / "p.txt")
    assert r.returncode == 2 and "must end in .jsonl or .csv" in r.stderr


def test_time_mode_record_on_cpu(adapter):
    out, _ = adapter
    record = time_mode(out, "merged", ["a great film"] * 64, batch_sizes=(1, 4), repeats=3)
    assert record["mode"] == "merged" and record["weight_memory_mb"] is None and record["peak_allocated_mb"] is None
    assert set(record["batches"]) == {"1", "4"} and all(b["latency_ms"] > 0 for b in record["batches"].values())
    assert record["batches"]["4"]["samples_per_second"] == pytest.approx(
        4000 / record["batches"]["4"]["latency_ms"], rel=0.01
    )
