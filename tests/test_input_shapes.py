"""Data as users bring it: sentence pairs (real MRPC rows), several text columns, long texts read through
windows, class weights in the loss, and the one-line errors for the usual mistakes."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import flags, tiny_settings

from qlora_helpers import tasks
from qlora_helpers.data.prepare import DataSettings, prepare_data
from qlora_helpers.data.tables import read_local_file
from qlora_helpers.data.text_input import separator_text
from qlora_helpers.data.tokens import encode_texts
from qlora_helpers.data.windows import combine, encode_windows
from qlora_helpers.modeling.quantization import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
MRPC = ROOT / "tests" / "data" / "mrpc_train_300.tsv.gz"  # the first 300 pairs of GLUE's MRPC train.tsv, as shipped
PAIR_FLAGS = ["--text-column", "#1 String", "--text-pair-column", "#2 String", "--label-column", "Quality"]


def cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    run = [sys.executable, "-m", "qlora_helpers", *map(str, args)]
    return subprocess.run(run, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def test_mrpc_reads_one_row_per_line_and_drops_the_bom():
    lines = gzip.open(MRPC, "rt", encoding="utf-8").read().splitlines()
    assert lines[0].startswith("\ufeffQuality")
    df = read_local_file(MRPC)
    assert len(df) == len(lines) - 1 == 300
    assert list(df.columns) == ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    assert df.loc[0, "#1 String"].count('"') == 2  # bare quotes stay text instead of merging rows
    assert sorted(df["Quality"].unique()) == [0, 1]


def test_a_pair_is_two_segments_that_share_the_budget(tiny_bert):
    tok = load_tokenizer(str(tiny_bert))
    first = "the movie was long and the story was slow " * 6
    second = "a great film"
    enc = encode_texts(tok, [first], 24, "head_tail", pairs=[second])
    ids, types = enc["input_ids"][0], enc["token_type_ids"][0]
    second_ids = tok(second, add_special_tokens=False)["input_ids"]
    assert len(ids) == 24 and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert ids.count(tok.sep_token_id) == 2
    boundary = ids.index(tok.sep_token_id) + 1
    assert types == [0] * boundary + [1] * (24 - boundary)
    assert ids[boundary:-1] == second_ids  # the short text is kept whole; the long one gave up the tokens


def test_text_columns_join_with_the_separator_token_or_text(tiny_bert, tmp_path):
    rows = [{"title": f"title {i}", "description": "" if i == 0 else f"words {i}", "label": i % 2} for i in range(30)]
    path = tmp_path / "news.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    tok = load_tokenizer(str(tiny_bert))
    sep = separator_text("sep", tok)
    assert sep == " [SEP] "
    data = prepare_data(DataSettings(str(path), text_columns=("title", "description"), text_separator=sep))
    texts = set(pd.concat(data.splits.values())["text"])
    assert "title 3 [SEP] words 3" in texts and "title 0" in texts  # an empty part is skipped, not joined
    assert data.summary()["text_columns"] == ["title", "description"]
    ids = encode_texts(tok, ["title 3 [SEP] words 3"], 32)["input_ids"][0]
    assert ids.count(tok.sep_token_id) == 2  # the joining [SEP] is the special token, not the letters
    plain = prepare_data(DataSettings(str(path), text_columns=("title", "description"), text_separator=" | "))
    assert "title 3 | words 3" in set(pd.concat(plain.splits.values())["text"])


def test_class_weights_scale_each_class_in_the_loss():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    per_row = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    weighted = tasks.get("single_label").loss(logits, labels, torch.tensor([1.0, 3.0]))
    assert weighted.item() == pytest.approx(((1 * per_row[0] + 3 * per_row[1]) / 4).item())
    assert weighted.item() > torch.nn.functional.cross_entropy(logits, labels).item()  # the harder row weighs more
    # label sets: each label's positives weighed by its own weight (BCE's pos_weight)
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    positives = tasks.get("multi_label").loss(logits, targets, torch.tensor([1.0, 3.0]))
    assert positives.item() == pytest.approx((bce[0, 0] + bce[0, 1] + bce[1, 0] + 3 * bce[1, 1]).item() / 4)


def test_windows_cover_a_long_text_and_their_logits_are_averaged(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    from qlora_helpers.infer.inference import predict_logits

    tok = load_tokenizer(str(tiny_bert))
    text = " ".join(f"film{i % 7} was great" for i in range(40))
    n = len(tok(text, add_special_tokens=False)["input_ids"])
    encoded, owner = encode_windows(tok, [text, "short one"], 16, 4)
    content, step = 16 - 2, 16 - 2 - 4
    expected = 1 + -(-(n - content) // step)
    assert owner.tolist() == [0] * expected + [1]
    assert all(len(w) <= 16 and w[0] == tok.cls_token_id for w in encoded["input_ids"])
    windows = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert combine(windows, np.array([0, 0, 1]), 2).tolist() == [[2.0, 3.0], [5.0, 6.0]]

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    texts = [text, "short one"]
    window = predict_logits(model, tok, texts, 16, long_text="window", stride=4, progress=False)
    truncated = predict_logits(model, tok, texts, 16, progress=False)
    assert np.allclose(window[1], truncated[1], atol=1e-5)  # a text that fits is one window
    each = predict_logits(
        model, tok, [tok.decode(w[1:-1]) for w in encoded["input_ids"][:expected]], 16, progress=False
    )
    assert np.allclose(window[0], each.mean(axis=0), atol=1e-5)  # the long text: the mean of its windows


class SecondTextReader(torch.nn.Module):
    """A stand-in classifier that reads only the second segment of a pair: label `great` when the token "great"
    is among the tokens of type 1, else `other`. Fed first texts alone, it can only ever say `other`."""

    def __init__(self, token_id: int):
        super().__init__()
        self.token_id, self.config = token_id, type("Config", (), {"num_labels": 2})
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # where the batches go (the model's device)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **_):
        hit = ((input_ids == self.token_id) & (token_type_ids == 1)).any(-1).float() * 8 - 4
        return type("Output", (), {"logits": torch.stack([hit, -hit], dim=-1)})


def test_thresholds_of_a_multi_label_pair_task_are_tuned_on_both_texts(tiny_bert, monkeypatch):
    """tune_decision reads validation as the model was trained to read it, pairs included (the old
    tune_thresholds dropped the second texts, so a label carried by them was tuned on noise)."""
    from qlora_helpers.data.text_input import TextInput
    from qlora_helpers.infer import evaluation
    from qlora_helpers.modeling.classifier_config import ClassifierConfig
    from qlora_helpers.tasks.labels import LabelSpace

    tok = load_tokenizer(str(tiny_bert))
    great = tok.convert_tokens_to_ids("great")
    assert great != tok.unk_token_id
    rows = 40  # the first text says nothing (or misleads); the second carries the label
    validation = pd.DataFrame(
        {
            "text": ["was the film great ?" if i % 3 else "what did you think ?" for i in range(rows)],
            "text_pair": ["a great film" if i % 2 else "a dull film" for i in range(rows)],
            "label": [(0,) if i % 2 else (1,) for i in range(rows)],
        }
    )
    space = LabelSpace(("great", "other"), ("great", "other"), "label")
    classifier_config = ClassifierConfig("multi_label", space, TextInput(("question",), "answer"), 32, "head", "tiny")
    from qlora_helpers.infer import inference

    seen, real = [], inference.predict_logits
    monkeypatch.setattr(inference, "predict_logits", lambda *a, **kw: seen.append(kw["pairs"]) or real(*a, **kw))
    record = evaluation.tune_decision(SecondTextReader(great), tok, validation, classifier_config, batch_size=16)
    assert seen == [validation["text_pair"].tolist()]
    assert record["validation_rows"] == rows and record["tuned_labels"] == ["great", "other"]
    assert record["validation_f1_macro"]["per_label"] == record["validation_f1_macro"]["0.5"] == 1.0
    # fed the first texts alone, the same model can only say `other`: macro-F1 of chance or below
    alone = evaluation.evaluate_split(
        SecondTextReader(great), tok, validation.drop(columns="text_pair"), classifier_config, 16
    )[0]
    assert alone["f1_macro"] <= 0.5


@pytest.mark.slow
def test_pairs_train_predict_and_evaluate_on_real_mrpc_rows(tiny_bert, tmp_path):
    out = tmp_path / "pairs"
    pairs = dict(max_length=64, batch_size=16, grad_accum=1, max_steps=12, eval_batch_size=64, label_names=None)
    r = cli("train", *flags(tiny_settings(tiny_bert, MRPC, out, **pairs)), *PAIR_FLAGS)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["text_pair_column"] == "#2 String" and metrics["data"]["sizes"]["test"] == 30
    assert 0 <= metrics["test_f1_positive"] <= 1 and metrics["labels"] == ["0", "1"]
    assert json.loads((out / "classifier_config.json").read_text())["input"]["text_pair_column"] == "#2 String"
    predictions = pd.read_csv(out / "test_predictions.csv")
    assert list(predictions.columns[:2]) == ["text", "text_pair"]

    r = cli("predict", "--adapter", out, "The cat sat .", "It rained .", "--text-pair", "A cat sat .", "Sun .")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert [row["text_pair"] for row in rows] == ["A cat sat .", "Sun ."]

    target = tmp_path / "dev.json"
    r = cli("evaluate", "--adapter", out, "--dataset", MRPC, "--output", target)
    assert r.returncode == 0, r.stderr[-2000:]
    written = json.loads(target.read_text())
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    assert printed["f1_positive"] == written["f1_positive"] and written["positive_label"] == "1"
    assert written["rows"] == 300  # every row was in the run's splits: a pair counts as seen when both texts were
    assert written["rows_seen_in_training"] == {k: metrics["data"]["sizes"][k] for k in ("train", "validation")}
    mistakes = pd.read_csv(written["misclassified_file"])
    assert "text_pair" in mistakes.columns and len(mistakes) == written["misclassified"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--no-header", "--text-column", "9", "--label-column", "0"], "text column index 9 is out of range"),
        (["--no-header", "--text-column", "#1 String"], "with --no-header columns are 0-based indices"),
        (
            ["--text-column", "#1 String", "--text-pair-column", "#3 String", "--label-column", "Quality"],
            "text-pair column '#3 String' not found",
        ),
        ([*PAIR_FLAGS, "--dataset", "{gaps}"], "2 of 300 rows of split 'all' have no second text in column"),
        ([*PAIR_FLAGS, "--class-weights", "1,2,3"], "class_weights gives 3 weights for 2 classes"),
        (["--text-column", "#1 String", "--text-columns", "#1 String", "#2 String"], "not both"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(args, message, tiny_bert, tmp_path):
    gaps = tmp_path / "gaps.tsv"
    frame = read_local_file(MRPC)
    frame.loc[[4, 9], "#2 String"] = ""
    frame.to_csv(gaps, sep="\t", index=False)
    args = [str(gaps) if a == "{gaps}" else a for a in args]
    dataset = [] if "--dataset" in args else ["--dataset", MRPC]
    never = tmp_path / "never"
    r = cli("train", "--model", tiny_bert, *dataset, *args, "--output-dir", never, "--plots-dir", never / "plots")
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr[-2000:]
    assert not never.exists()
