"""Multi-label classification: label parsing, thresholds, metrics, the real 4-bit path end to end, bad input."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import flags, tiny_settings

from qlora_helpers import tasks
from qlora_helpers.cli import main
from qlora_helpers.data.prepare import DataSettings, prepare_data
from qlora_helpers.data.text_input import TextInput
from qlora_helpers.errors import UserError
from qlora_helpers.modeling.classifier_config import ClassifierConfig
from qlora_helpers.tasks import labels as ml
from qlora_helpers.tasks import thresholds
from qlora_helpers.tasks.labels import LabelSpace
from qlora_helpers.tasks.metrics import multi_label_metrics
from qlora_helpers.train.loss import class_weight_vector

DATA = Path(__file__).parent / "data"
SLICE, NAMES = DATA / "goemotions_train_600.tsv.gz", DATA / "goemotions_labels.txt"
GOEMOTIONS = ["--no-header", "--text-column", "0", "--label-column", "1", "--multi-label"]
MULTI = tasks.get("multi_label")


def prepare(dataset, **settings):
    return prepare_data(DataSettings(str(dataset), task="multi_label", **settings))


def test_goemotions_slice_reads_headerless_with_ids_in_numeric_order():
    names = ml.read_label_names_file(str(NAMES))
    data = prepare(SLICE, text_column="0", label_column="1", label_names=tuple(names), header=False)
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
    values, names = ml.set_values(sets, None, "labels")
    assert names[:3] == ["0", "1", "2"] and names[10] == "10" and len(names) == 11 and values == names
    space = LabelSpace(tuple(names), tuple(values), "labels")
    assert ml.encode_sets(sets, space, "labels") == [(10,), (2, 10), ()]
    assert ml.set_values([("joy", "anger"), ("joy",)], None, "labels") == (["anger", "joy"], ["anger", "joy"])
    assert ml.split_label_cell(" joy , anger ", ",") == ("joy", "anger") and ml.split_label_cell(np.nan, ",") == ()
    # a JSON list (as read from JSONL), or one written as text into a CSV
    assert ml.split_label_cell([4, 15], ",") == ml.split_label_cell("[4, 15]", ",") == ("4", "15")
    assert ml.split_label_cell('["joy", "anger"]', ",") == ("joy", "anger") and ml.split_label_cell([], ",") == ()


def test_zero_one_columns(tmp_path):
    df = pd.DataFrame({"text": ["a b", "c d", "e f"], "sports": [1, 0, 1], "tech": [0, 0, 1]})
    assert ml.sets_from_columns(df, ["sports", "tech"]) == [("sports",), (), ("sports", "tech")]
    df["tech"] = [0, 2, 1]
    with pytest.raises(UserError, match="must hold 0/1"):
        ml.sets_from_columns(df, ["sports", "tech"])


def test_bad_label_input_is_one_clear_error():
    with pytest.raises(UserError, match="label id 5 in column 'labels' is outside the 2 names"):
        ml.set_values([("0",), ("5",)], ["a", "b"], "labels")
    with pytest.raises(UserError, match="label 'rage' in column 'labels' is not among the 2 names"):
        ml.set_values([("joy",), ("rage",)], ["joy", "anger"], "labels")
    with pytest.raises(UserError, match="label id -1 in column 'labels' is negative"):
        ml.set_values([("-1",), ("2",)], None, "labels")
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
    space = LabelSpace(("a", "b", "c"), ("a", "b", "c"), "labels")
    classifier_config = ClassifierConfig(
        "multi_label", space, TextInput(("text",)), 32, "head", "base"
    ).with_thresholds(record)
    classifier_config.save(tmp_path)
    again = ClassifierConfig.load(tmp_path)
    assert again.thresholds == record and list(again.decision_thresholds()) == [record["per_label"][n] for n in "abc"]
    assert (
        list(again.decision_thresholds("global")) == [record["global"]] * 3
        and list(again.decision_thresholds("0.5")) == [0.5] * 3
    )
    (tmp_path / "classifier_config.json").write_text("{not json")
    with pytest.raises(UserError, match="classifier_config.json is damaged"):
        ClassifierConfig.load(tmp_path)


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
    two = LabelSpace(("a", "b"))
    multi = class_weight_vector("auto", MULTI, [[1, 0], [1, 0], [1, 1], [1, 0]], two)
    assert multi.tolist() == pytest.approx([0.0, 3**0.5])
    single = class_weight_vector("auto", tasks.get("single_label"), [0, 0, 0, 1], two)
    assert single.tolist() == pytest.approx([4 / 6, 2.0])
    assert class_weight_vector("none", MULTI, [[1, 0]], two) is None
    assert class_weight_vector("1,2.5", MULTI, [[1, 0]], two).tolist() == [1.0, 2.5]
    with pytest.raises(UserError, match="gives 3 weights for 2 classes"):
        class_weight_vector("1,2,3", tasks.get("single_label"), [0, 1], two)
    with pytest.raises(UserError, match="gives 3 weights for 2 labels"):
        class_weight_vector("1,2,3", MULTI, [[0, 1]], two)


def test_single_label_run_refuses_delimited_labels(tiny_bert, tmp_path, capsys):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": ["a", "b", "c"] * 4, "label": ["4,27", "2", "3"] * 4}).to_csv(path, index=False)
    code = main(["train", "--dataset", str(path), "--model", str(tiny_bert), "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pass --multi-label" in err[0]
    assert not (tmp_path / "o").exists()


def multi_label_args(tiny_bert, dataset, out, *extra, **changes):
    """The tiny run as a short multi-label run: 8 steps of 16 texts, no checkpoints, labels named by NAMES."""
    settings = dict(max_steps=8, batch_size=16, grad_accum=1, save_checkpoints=False, label_names=None)
    settings |= dict(label_names_file=str(NAMES), **changes)
    return ["train", *flags(tiny_settings(tiny_bert, dataset, out, **settings)), *extra]


def test_multi_label_end_to_end_through_the_4bit_path(tiny_bert, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(multi_label_args(tiny_bert, SLICE, out, *GOEMOTIONS, class_weights="auto")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == metrics["data"]["task"] == "multi_label" and metrics["selection_metric"] == "f1_macro"
    assert 0 <= metrics["test_f1_macro"] <= 1 and set(metrics["test_at_threshold_0.5"]) >= {"f1_macro", "f1_micro"}
    saved = json.loads((out / "classifier_config.json").read_text())
    assert saved["task"] == "multi_label" and saved["labels"]["names"] == NAMES.read_text().split()
    assert saved["input"] == {"text_columns": ["0"], "text_pair_column": None, "separator": " [SEP] "}
    record = saved["thresholds"]
    assert len(record["per_label"]) == 28 and all(0.05 <= t <= 0.95 for t in record["per_label"].values())
    assert metrics["thresholds"]["global"] == record["global"]
    for name in ("per_label_scores.png", "label_confusion.png", "training_curves.png"):
        assert (tmp_path / "run-plots" / name).stat().st_size > 10_000
    capsys.readouterr()
    # predict takes the train command's shape flags (--multi-label) and the tuned thresholds decide
    assert main(["predict", "--adapter", str(out), "--top-k", "3", "--multi-label", "thanks so much, I love it"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(row["probabilities"]) == 3 and set(row["labels"]) == set(row["label_probabilities"])
    assert all(p >= record["per_label"][n] for n, p in row["label_probabilities"].items())
    assert main(["predict", "--adapter", str(out), "--thresholds", "0.5", "thanks so much, I love it"]) == 0
    at_half = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert all(p >= 0.5 for p in at_half["label_probabilities"].values())
    # evaluate reads the training file with the train command's own shape flags
    target = tmp_path / "eval.json"
    assert (
        main(["evaluate", "--adapter", str(out), "--dataset", str(SLICE), *GOEMOTIONS, "--output", f"{target}"]) == 0
    )
    written = json.loads(target.read_text())
    assert written["rows"] == 600 and written["task"] == "multi_label" and written["thresholds"] == "per_label"
    assert set(written["at_other_thresholds"]) == {"0.5", "global"}
    assert written["rows_seen_in_training"] == {k: metrics["data"]["sizes"][k] for k in ("train", "validation")}
    capsys.readouterr()
    assert main(["predict", "--adapter", str(out), "--task", "single_label", "hello"]) == 2
    assert "--task single_label given, but this model was trained as multi_label" in capsys.readouterr().err
    merged = tmp_path / "merged"
    assert main(["merge", "--adapter", str(out), "--output", str(merged), "--dtype", "float32"]) == 0
    assert ClassifierConfig.load(merged).thresholds == record  # the merged model decides at the same thresholds
    capsys.readouterr()
    assert main(["predict", "--adapter", str(merged), "thanks so much, I love it"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["labels"] == row["labels"]
    (merged / "classifier_config.json").unlink()
    assert main(["predict", "--adapter", str(merged), "hello"]) == 2
    assert "has no classifier_config.json" in capsys.readouterr().err


def goemotions_jsonl(path: Path, rows: int = 90) -> Path:
    """Label ids as JSON lists, as GoEmotions' own exports hold them: 4 approval, 15 gratitude, 27 neutral."""
    words = {4: "agree", 15: "thanks", 27: "ok"}
    sets = [[4, 15], [27], [15], [4]]
    records = [{"text": " ".join(words[i] for i in s) + f" post {n}", "labels": s} for n, s in enumerate(sets * rows)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records[:rows]))
    return path


def test_jsonl_list_labels_are_read_as_ids(tmp_path):
    path = goemotions_jsonl(tmp_path / "posts.jsonl")
    plain = prepare(path)
    assert plain.num_labels == 28 and plain.id2label[15] == "15"  # ids keep their numbers: 0-27, unnamed
    names = ml.read_label_names_file(str(NAMES))
    named = prepare(path, label_names=tuple(names))
    assert named.num_labels == 28 and (named.id2label[4], named.id2label[15]) == ("approval", "gratitude")
    for data in (plain, named):
        rows = pd.concat(data.splits.values()).set_index("text")["label"]
        assert (rows["agree thanks post 0"], rows["ok post 1"]) == ((4, 15), (27,))
    assert named.label_counts("train")["gratitude"] == sum(15 in ids for ids in named.splits["train"]["label"])


def test_jsonl_list_labels_train_with_multi_label(tiny_bert, tmp_path):
    out = tmp_path / "run"
    path = goemotions_jsonl(tmp_path / "posts.jsonl")
    assert main(multi_label_args(tiny_bert, path, out, "--multi-label", max_steps=2)) == 0
    classifier_config = ClassifierConfig.load(out)
    assert (
        classifier_config.task_name == "multi_label"
        and classifier_config.labels.names[4] == "approval"
        and classifier_config.labels.num_labels == 28
    )
    truth = pd.read_csv(out / "test_predictions.csv").set_index("text")["true"]
    expected = {"agree thanks": "approval,gratitude", "ok": "neutral", "thanks": "gratitude", "agree": "approval"}
    assert all(label == expected[text.rsplit(" post", 1)[0]] for text, label in truth.items())


def test_multi_label_on_plain_classes_trains_but_says_so(tmp_path):
    path = tmp_path / "plain.csv"
    pd.DataFrame({"text": [f"text {i}" for i in range(30)], "label": ["a", "b", "c"] * 10}).to_csv(path, index=False)
    data = prepare(path)
    assert data.task.name == "multi_label" and data.num_labels == 3
    assert {ids for ids in pd.concat(data.splits.values())["label"]} == {(0,), (1,), (2,)}
    assert any("at most one label" in n and "single-label run" in n for n in data.notes)


def test_mrpc_style_tsv_reads_one_row_per_line(tmp_path):
    path = tmp_path / "pairs.tsv"
    header = "\ufeffQuality\t#1 String\t#2 String"
    lines = [header, '1\tHe said " the witness " .\tA " quote', '0\tNo "\tquotes " here']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    from qlora_helpers.data.tables import read_local_file

    df = read_local_file(path)
    assert len(df) == 2 and list(df.columns)[0] == "Quality" and df.iloc[1, 1] == 'No "'
