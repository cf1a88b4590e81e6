"""Multi-label classification: label parsing, thresholds, metrics, the real 4-bit path end to end, bad input."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlora_helpers import labels as ml
from qlora_helpers import thresholds
from qlora_helpers.cli import main
from qlora_helpers.data import prepare_data
from qlora_helpers.errors import UserError
from qlora_helpers.loss import class_weight_vector
from qlora_helpers.metrics import multi_label_metrics

DATA = Path(__file__).parent / "data"
SLICE, NAMES = DATA / "goemotions_train_600.tsv.gz", DATA / "goemotions_labels.txt"
GOEMOTIONS = ["--no-header", "--text-column", "0", "--label-column", "1", "--multi-label"]


def test_goemotions_slice_reads_headerless_with_ids_in_numeric_order():
    names = ml.read_label_names_file(str(NAMES))
    data = prepare_data(str(SLICE), "0", "1", names, header=False, multi_label=True)
    assert data.num_labels == 28 and data.id2label[27] == "neutral" and data.id2label[2] == "anger"
    assert sum(len(v) for v in data.splits.values()) == 600
    first = pd.read_csv(SLICE, sep="\t", header=None, quoting=3)
    expected = tuple(sorted(int(i) for i in str(first.iloc[0, 1]).split(",")))
    row = pd.concat(data.splits.values()).set_index("text").loc[first.iloc[0, 0], "label"]
    assert row == expected
    counts = data.summary()["label_counts"]["train"]
    assert counts["neutral"] > counts["grief"] and "(no label)" in counts


def test_ids_sort_numerically_names_and_empty_sets():
    sets = [("10",), ("2", "10"), ()]
    value_to_id, id2label = ml.build_multi_label_mapping(sets, None, "labels")
    assert list(id2label.values())[:3] == ["0", "1", "2"] and id2label[10] == "10" and len(id2label) == 11
    assert ml.encode_label_sets(sets, value_to_id, "labels") == [(10,), (2, 10), ()]
    value_to_id, id2label = ml.build_multi_label_mapping([("joy", "anger"), ("joy",)], None, "labels")
    assert id2label == {0: "anger", 1: "joy"}
    assert ml.split_label_cell(" joy , anger ", ",") == ("joy", "anger") and ml.split_label_cell(np.nan, ",") == ()


def test_zero_one_columns(tmp_path):
    df = pd.DataFrame({"text": ["a b", "c d", "e f"], "sports": [1, 0, 1], "tech": [0, 0, 1]})
    assert ml.sets_from_columns(df, ["sports", "tech"]) == [("sports",), (), ("sports", "tech")]
    df["tech"] = [0, 2, 1]
    with pytest.raises(UserError, match="must hold 0/1"):
        ml.sets_from_columns(df, ["sports", "tech"])


def test_bad_label_input_is_one_clear_error():
    with pytest.raises(UserError, match="outside the 2 names"):
        ml.build_multi_label_mapping([("0",), ("5",)], ["a", "b"], "labels")
    with pytest.raises(UserError, match="not among the 2 names"):
        ml.build_multi_label_mapping([("joy",), ("rage",)], ["joy", "anger"], "labels")
    with pytest.raises(UserError, match="holds ';' but the label delimiter is ','"):
        ml.check_delimiter(pd.Series(["a,b", "a;b"]), ",", "labels")


def test_thresholds_tuned_saved_and_reloaded(tmp_path):
    rng = np.random.default_rng(0)
    y = np.zeros((400, 3), dtype=int)
    y[:200, 0], y[:40, 1], y[::2, 2] = 1, 1, 1
    probs = np.clip(0.25 * y + rng.uniform(0, 0.3, y.shape), 0, 1)  # positives sit at 0.25-0.55
    y[:, 2] = 0
    y[:3, 2] = 1  # too few positives to tune its own threshold
    record = thresholds.tune(y, probs, ["a", "b", "c"])
    assert record["fallback_labels"] == ["c"] and record["per_label"]["c"] == record["global"]
    assert 0.2 <= record["per_label"]["a"] <= 0.35
    assert record["validation_f1_macro"]["per_label"] >= record["validation_f1_macro"]["0.5"]
    thresholds.save(record, tmp_path)
    again = thresholds.load(tmp_path, ["a", "b", "c"])
    assert list(thresholds.vector(again, ["a", "b", "c"])) == [record["per_label"][n] for n in "abc"]
    (tmp_path / "thresholds.json").write_text("{not json")
    with pytest.raises(UserError, match="damaged"):
        thresholds.load(tmp_path, ["a", "b", "c"])


def test_metrics_on_a_hand_built_case():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    probs = np.array([[0.9, 0.2], [0.8, 0.4], [0.1, 0.7], [0.6, 0.1]])
    m = multi_label_metrics(y, probs, 0.5, {0: "a", 1: "b"})
    # a: tp 2, fp 1, fn 0 -> F1 0.8; b: tp 1, fp 0, fn 1 -> F1 2/3; rows 1 and 3 are right as a whole
    assert m["f1_macro"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["f1_micro"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["subset_accuracy"] == pytest.approx(0.5) and m["roc_auc_macro"] == pytest.approx(1.0)
    assert m["report"]["b"]["support"] == 2


def test_class_weights_from_frequencies():
    multi = class_weight_vector("auto", [[1, 0], [1, 0], [1, 1], [1, 0]], 2, True)
    assert multi.tolist() == pytest.approx([0.0, 3**0.5])
    single = class_weight_vector("auto", [0, 0, 0, 1], 2, False)
    assert single.tolist() == pytest.approx([4 / 6, 2.0])
    with pytest.raises(UserError, match="gives 3 weights for 2 classes"):
        class_weight_vector("1,2,3", [0, 1], 2, False)


def test_single_label_run_refuses_delimited_labels(tmp_path, capsys):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": ["a", "b", "c"] * 4, "label": ["4,27", "2", "3"] * 4}).to_csv(path, index=False)
    code = main(["train", "--dataset", str(path), "--model", "x", "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pass --multi-label" in err[0]
    assert not (tmp_path / "o").exists()


def test_multi_label_end_to_end_through_the_4bit_path(tiny_bert, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--model", str(tiny_bert), "--label-names-file", str(NAMES), "--report-to", "none"]
    code = main(
        ["train", "--dataset", str(SLICE), *GOEMOTIONS, *common, "--max-length", "32", "--max-steps", "8",
         "--batch-size", "16", "--lr", "5e-3", "--class-weights", "auto", "--output-dir", str(out),
         "--plots-dir", str(tmp_path / "plots")]
    )  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selection_metric"] == "f1_macro" and 0 <= metrics["test_f1_macro"] <= 1
    assert set(metrics["test_at_threshold_0.5"]) >= {"f1_macro", "f1_micro"} and metrics["data"]["multi_label"]
    record = json.loads((out / "thresholds.json").read_text())
    assert len(record["per_label"]) == 28 and all(0.05 <= t <= 0.95 for t in record["per_label"].values())
    for name in ("per_label_scores.png", "label_confusion.png", "training_curves.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 10_000
    capsys.readouterr()
    assert main(["predict", "--adapter", str(out), "--top-k", "3", "thanks so much, I love it"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(row["probabilities"]) == 3 and set(row["labels"]) == set(row["label_probabilities"])
    cut = dict(zip(record["per_label"], record["per_label"].values()))
    assert all(p >= cut[n] for n, p in row["label_probabilities"].items())
    assert main(["merge", "--adapter", str(out), "--output", str(tmp_path / "merged"), "--dtype", "float32"]) == 0
    capsys.readouterr()
    assert main(["predict", "--adapter", str(tmp_path / "merged"), "thanks so much, I love it"]) == 0
    merged = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert merged["labels"] == row["labels"]
    (tmp_path / "merged" / "thresholds.json").unlink()
    assert main(["predict", "--adapter", str(tmp_path / "merged"), "hello"]) == 2
    assert "has no thresholds.json" in capsys.readouterr().err


def test_multi_label_on_plain_classes_trains_but_says_so(tmp_path):
    path = tmp_path / "plain.csv"
    pd.DataFrame({"text": [f"text {i}" for i in range(30)], "label": ["a", "b", "c"] * 10}).to_csv(path, index=False)
    data = prepare_data(str(path), multi_label=True)
    assert data.multi_label and data.num_labels == 3
    assert any("at most one label" in n and "single-label run" in n for n in data.notes)


def test_mrpc_style_tsv_reads_one_row_per_line(tmp_path):
    path = tmp_path / "pairs.tsv"
    header = "\ufeffQuality\t#1 String\t#2 String"
    lines = [header, '1\tHe said " the witness " .\tA " quote', '0\tNo "\tquotes " here']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    from qlora_helpers.data import read_local_file

    df = read_local_file(path)
    assert len(df) == 2 and list(df.columns)[0] == "Quality" and df.iloc[1, 1] == 'No "'
