"""After training: reload as 4bit / 16bit / merged, merge to a standalone model, batched prediction, model card."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_run_config

from benchmarks.kinds.inference_modes import time_mode
from qlora_helpers.cli import main
from qlora_helpers.errors import UserError
from qlora_helpers.infer.inference import load_for_inference, mode_agreement
from qlora_helpers.infer.merge import merge_adapter
from qlora_helpers.run import train_pipeline

ROOT = Path(__file__).resolve().parents[1]
# Measured on the CPU (fp32 maths): 16bit == 4bit exactly, merged within 7.5e-9. Asserted with 100x margin.
MAX_LOGIT_DIFF_CPU = 1e-6


@pytest.fixture(scope="module")
def adapter(tiny_bert, easy_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("modes") / "adapter"
    result = train_pipeline(tiny_run_config(tiny_bert, easy_csv, out, save_checkpoints=False))
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
    from qlora_helpers.infer.inference import predict_logits

    out, _ = adapter
    loaded = load_for_inference(out, "4bit")
    assert loaded.classifier_config.truncation == "head_tail" and loaded.classifier_config.max_length == 32
    long_review = [" ".join(["boring"] * 40 + ["wonderful"] * 40)]  # the verdict changes at the end
    as_trained = loaded.raw_logits(long_review, progress=False)
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
    assert not torch.backends.cuda.cudnn_sdp_enabled()  # the recipe's default, recorded in classifier_config.json
    allowed = tmp_path / "allowed"
    shutil.copytree(out, allowed)
    settings = json.loads((allowed / "classifier_config.json").read_text())
    assert settings["cudnn_attention"] is False
    (allowed / "classifier_config.json").write_text(json.dumps({**settings, "cudnn_attention": True}))
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
    assert {"config.json", "model.safetensors", "README.md", "classifier_config.json", "metrics.json"} <= {
        p.name for p in merged.iterdir()
    }
    assert (merged / "classifier_config.json").read_text() == (out / "classifier_config.json").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]  # written under a temporary name, then renamed
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
    assert f"Accuracy {metrics['test_accuracy']:.4f}" in card and "merge_and_unload" in card and "float32" in card
    with pytest.raises(UserError, match="already holds files; name a new folder with --output, or pass --overwrite"):
        merge_adapter(out, merged)


def test_merge_refuses_a_run_folder_or_a_file_before_loading_anything(adapter, tmp_path, monkeypatch, capsys):
    import shutil

    from qlora_helpers.infer import inference

    out, _ = adapter

    def never(*args, **kwargs):
        raise AssertionError("merge loaded the model before checking where it writes")

    monkeypatch.setattr(inference, "load_for_inference", never)
    run = tmp_path / "another-run"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("checkpoints"))
    file = tmp_path / "notes.txt"
    file.write_text("mine\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for target, message in [
        (run, "already holds files (a training run); name a new folder with --output"),
        (file, "is a file; name a new folder for the merged model"),
        (out, "--output must be a new folder, not the adapter's own folder"),
    ]:
        for extra in ([], ["--overwrite"]):  # --overwrite replaces an earlier merge only, never a run or a file
            assert main(["merge", "--adapter", str(out), "--output", str(target), *extra]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and message in err[0], err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing written or left


def test_merge_overwrite_replaces_an_earlier_merge(adapter, tmp_path, capsys):
    out, _ = adapter
    merged = tmp_path / "merged"
    assert main(["merge", "--adapter", str(out), "--output", str(merged), "--dtype", "float32"]) == 0
    (merged / "stale.txt").write_text("from the earlier merge")
    assert main(["merge", "--adapter", str(out), "--output", str(merged), "--dtype", "float16"]) == 2
    assert "pass --overwrite to replace this earlier merge" in capsys.readouterr().err
    assert main(["merge", "--adapter", str(out), "--output", str(merged), "--dtype", "float16", "--overwrite"]) == 0
    assert not (merged / "stale.txt").exists()
    assert json.loads((merged / "config.json").read_text())["dtype"] == "float16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
    loaded = load_for_inference(merged, "merged")
    assert [r["label"] for r in loaded.predict(["great wonderful film", "boring awful waste"], progress=False)] == [
        "positive",
        "negative",
    ]


def test_a_run_saved_before_classifier_config_predicts_as_before(adapter, tmp_path):
    """A run directory of the earlier version (label_mapping.json, no classifier_config.json) loads and gives
    the same logits as the run saved now."""
    import shutil

    from qlora_helpers.modeling.classifier_config import ClassifierConfig

    out, trained_logits = adapter
    legacy = tmp_path / "legacy"
    shutil.copytree(out, legacy, ignore=shutil.ignore_patterns("checkpoints", "classifier_config.json"))
    classifier_config = ClassifierConfig.load(out)
    mapping = {
        "id2label": {str(i): n for i, n in classifier_config.labels.id2label.items()},
        "label2id": classifier_config.labels.label2id,
        "label_values": list(classifier_config.labels.values),
        "label_column": classifier_config.labels.column,
        "multi_label": False,
        **classifier_config.text_input.record(),
    }
    (legacy / "label_mapping.json").write_text(json.dumps(mapping))
    # calibration came with classifier_config
    assert ClassifierConfig.load(legacy) == classifier_config.with_temperature(None)
    texts = pd.read_csv(out / "test_predictions.csv")["text"].tolist()
    legacy_logits = load_for_inference(legacy, "4bit").logits(texts, progress=False)
    assert np.array_equal(classifier_config.calibrated(legacy_logits), trained_logits)


def test_adapter_dir_has_a_model_card(adapter):
    out, _ = adapter
    card = (out / "README.md").read_text()
    assert "## Intended use and limits" in card and "LoRA r=16" in card and "| negative |" in card


def test_batched_prediction_over_a_file_keeps_order(adapter, tmp_path, capsys):
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
    assert main(["predict", "--adapter", str(out), "x", "--output", str(tmp_path / "p.txt")]) == 2
    assert "must end in .jsonl or .csv" in capsys.readouterr().err
    assert main(["predict", "--adapter", str(out), "x", "--output", str(tmp_path / "pred.csv")]) == 2
    assert "pred.csv exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert pd.read_csv(tmp_path / "pred.csv")["text"].tolist() == texts  # the earlier predictions are kept


def test_time_mode_record_on_cpu(adapter):
    out, _ = adapter
    record = time_mode(out, "merged", ["a great film"] * 64, batch_sizes=(1, 4), repeats=3)
    assert record["mode"] == "merged" and record["weight_memory_mb"] is None and record["peak_allocated_mb"] is None
    assert set(record["batches"]) == {"1", "4"} and all(b["latency_ms"] > 0 for b in record["batches"].values())
    assert record["batches"]["4"]["samples_per_second"] == pytest.approx(
        4000 / record["batches"]["4"]["latency_ms"], rel=0.01
    )
