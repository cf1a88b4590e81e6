"""Loading every file format, finding columns, cleaning, label mapping and stratified splits."""

import numpy as np
import pandas as pd
import pytest

from qlora_helpers.config import SAMPLE_DATA
from qlora_helpers.data import prepare as D
from qlora_helpers.data.prepare import DataSettings
from qlora_helpers.data.tables import read_local_file
from qlora_helpers.data.tokens import encode_texts, token_lengths
from qlora_helpers.errors import UserError


def prepare(dataset, **settings):
    """`prepare_data` of a file, with the data settings a run would pass."""
    return D.prepare_data(DataSettings(str(dataset), **settings))


def prepare_frames(tables, **settings):
    """`prepare_data_from_frames` of tables in memory."""
    return D.prepare_data_from_frames(tables, DataSettings("mem", **settings))


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    n = 200
    return pd.DataFrame(
        {
            "text": [f"review number {i} " + "word " * int(rng.integers(1, 20)) for i in range(n)],
            "label": ["pos" if i % 4 else "neg" for i in range(n)],
        }
    )  # 150 pos / 50 neg


@pytest.mark.parametrize(
    "name, writer",
    [
        ("d.csv", lambda df, p: df.to_csv(p, index=False)),
        ("d.csv.gz", lambda df, p: df.to_csv(p, index=False)),
        ("d.tsv", lambda df, p: df.to_csv(p, sep="\t", index=False)),
        ("d.json", lambda df, p: df.to_json(p, orient="records")),
        ("d.jsonl", lambda df, p: df.to_json(p, orient="records", lines=True)),
        ("d.jsonl.gz", lambda df, p: df.to_json(p, orient="records", lines=True)),
        ("d.parquet", lambda df, p: df.to_parquet(p)),
    ],
)
def test_every_file_format_gives_the_same_splits(tmp_path, frame, name, writer):
    writer(frame, tmp_path / name)
    data = prepare(tmp_path / name)
    reference = prepare_frames({"all": frame})
    for split in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(data.splits[split], reference.splits[split])


def test_split_sizes_and_stratification(frame):
    data = prepare_frames({"all": frame})
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert sizes == {"train": 160, "validation": 20, "test": 20}
    for split in data.splits.values():  # 25% negatives everywhere
        assert (split["label"] == 0).mean() == pytest.approx(0.25)
    texts = [set(s["text"]) for s in data.splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    again = prepare_frames({"all": frame})
    assert data.splits["test"]["text"].tolist() == again.splits["test"]["text"].tolist()  # fixed seed
    other = prepare_frames({"all": frame}, seed=7)
    assert data.splits["test"]["text"].tolist() != other.splits["test"]["text"].tolist()


def test_string_labels_are_mapped_in_sorted_order(frame):
    data = prepare_frames({"all": frame})
    assert data.id2label == {0: "neg", 1: "pos"} and data.labels.label2id == {"neg": 0, "pos": 1}
    assert data.labels.values == ("neg", "pos") and data.task.name == "single_label"


def test_numeric_labels_keep_order_and_take_names():
    df = pd.DataFrame({"review": [f"t{i}" for i in range(60)], "stars": [1, 3, 5] * 20})
    data = prepare_frames({"all": df}, label_column="stars", label_names=("bad", "ok", "good"))
    assert data.id2label == {0: "bad", 1: "ok", 2: "good"} and data.labels.values == (1, 3, 5)
    assert data.text_input.name == "review" and data.labels.column == "stars" and data.task.name == "single_label"
    stars = df.set_index("review")["stars"]
    train = data.splits["train"]
    assert train["label"].tolist() == [[1, 3, 5].index(stars[t]) for t in train["text"]]


def test_empty_and_missing_texts_are_dropped_and_counted():
    df = pd.DataFrame(
        {"text": ["good one", "", "   ", None, "bad one", "fine", np.nan] * 10, "label": [1, 0, 1, 0, 0, 1, 1] * 10}
    )
    data = prepare_frames({"all": df})
    assert data.dropped_rows == 40
    assert sum(len(s) for s in data.splits.values()) == 30
    assert "40 rows with empty text or label dropped" in data.describe()


def test_the_datasets_own_splits_are_used():
    df = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": [0, 1] * 50})
    both = prepare_frames({"train": df, "validation": df[:10], "test": df[10:30]})
    assert [len(both.splits[k]) for k in ("train", "validation", "test")] == [100, 10, 20]
    assert both.split_origin == "the dataset's own splits"
    only_test = prepare_frames({"train": df, "test": df[:20]})
    assert [len(only_test.splits[k]) for k in ("train", "validation", "test")] == [90, 10, 20]
    assert "validation carved from train" in only_test.split_origin


def test_max_samples_takes_a_stratified_sample(frame):
    data = prepare_frames({"all": frame}, max_samples=100)
    assert sum(len(s) for s in data.splits.values()) == 100
    assert (data.splits["train"]["label"] == 0).mean() == pytest.approx(0.25)


def test_shipped_sample_is_real_balanced_imdb():
    data = prepare(SAMPLE_DATA, label_names=("negative", "positive"))
    assert (data.text_input.name, data.labels.column) == ("review", "sentiment")
    assert [len(data.splits[k]) for k in ("train", "validation", "test")] == [1200, 150, 150]
    assert data.summary()["label_counts"]["test"] == {"negative": 75, "positive": 75}


@pytest.mark.parametrize(
    "content, kwargs, message",
    [
        ("text,label\n" + "a,1\n" * 30, {}, "only one class (1)"),
        ("body,label\nx,1\ny,0\n", {}, "no text column found among ['body', 'label']"),
        ("text,label\nx,1\ny,0\n", {"label_column": "sentiment"}, "label column 'sentiment' not found"),
        ("", {}, "dataset file is empty"),
        ("text,label\n" + "a,1\nb,0\n" * 5 + "c,2\n", {}, "class '2' has only 1 row(s)"),
        ("text,label\n" + "a,0.5\nb,1\n" * 5, {"task": "single_label"}, "pass --task regression"),
        ("text,label\n" + "a,1\nb,0\n" * 5, {"label_names": ("x", "y", "z")}, "3 label names"),
        ("text,label\n" + "a,1\nb,neg\n" * 5, {}, "mixes numbers [1] and names ['neg']"),
        ("text,label\n" + "a,0.5\nb,x\n" * 5, {"task": "regression"}, "are not numbers (first: 'x')"),
        ("text,label\n" + "a,0.5\nb,0.5\n" * 5, {"task": "regression"}, "every score in column 'label' is 0.5"),
    ],
)
def test_bad_data_gives_one_line_errors(tmp_path, content, kwargs, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UserError) as err:
        prepare(path, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(UserError, match="dataset file not found"):
        prepare(tmp_path / "nope.csv")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(UserError, match="cannot read .*xlsx"):
        read_local_file(tmp_path / "d.xlsx")


def test_hub_dataset_offline_names_the_fix(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match="could not load the dataset 'someone/not-cached'.*or pass a local file"):
        prepare("someone/not-cached")


def test_token_lengths_are_untruncated(tiny_bert):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    lengths = token_lengths(["a great movie", "great " * 600], tok)
    assert lengths[0] == 5 and lengths[1] == 602  # [CLS] ... [SEP]
    assert tok.convert_tokens_to_ids("great") != tok.unk_token_id


def test_duplicate_rows_across_splits_are_reported():
    df = pd.DataFrame({"text": [f"t{i % 50}" for i in range(200)], "label": [i % 2 for i in range(200)]})
    data = prepare_frames({"all": df})
    note = next(n for n in data.notes if n.startswith("texts also in train"))
    expected = {
        k: int(data.splits[k]["text"].isin(set(data.splits["train"]["text"])).sum()) for k in ("validation", "test")
    }
    assert note.startswith(f"texts also in train: {expected['validation']} validation, {expected['test']} test")
    assert expected["test"] > 0 and note in data.describe()
    assert not any(n.startswith("texts also") for n in prepare_frames({"all": df.drop_duplicates("text")}).notes)


def test_head_tail_truncation_keeps_the_start_and_the_end(tiny_bert):
    from conftest import NEUTRAL, POSITIVE

    from qlora_helpers.modeling.quantization import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_bert))
    long_text = " ".join(NEUTRAL * 3 + POSITIVE)  # 68 words, one token each
    full = tokenizer([long_text])["input_ids"][0]
    assert len(full) == 70
    cut = encode_texts(tokenizer, [long_text, "great film"], 16, "head_tail")
    head = 1 + (16 - 2) // 4  # [CLS] and the first quarter of the 14 text tokens
    assert cut["input_ids"][0] == full[:head] + full[-(16 - head) :]  # ... and the end, closing [SEP] included
    assert cut["input_ids"][0][0] == tokenizer.cls_token_id and cut["input_ids"][0][-1] == tokenizer.sep_token_id
    assert all(len(cut[key][0]) == 16 for key in cut)
    assert cut["input_ids"][1] == tokenizer(["great film"])["input_ids"][0]  # short texts untouched
    assert encode_texts(tokenizer, [long_text], 16, "head")["input_ids"][0] == full[:15] + [tokenizer.sep_token_id]
    with pytest.raises(UserError, match="truncation must be one of"):
        encode_texts(tokenizer, [long_text], 16, "middle")


def test_split_seed_fixes_the_split_across_training_seeds(easy_csv, capsys):
    """--seed alone draws a new split for every seed; --split-seed keeps one split while the seed changes."""
    from qlora_helpers.pipeline import load_data
    from qlora_helpers.presets import make_config

    def test_texts(**settings):
        cfg = make_config("full", dataset=str(easy_csv), label_names=["negative", "positive"], **settings)
        return load_data(cfg).splits["test"]["text"].tolist()

    assert test_texts(seed=1) != test_texts(seed=2)
    assert test_texts(seed=1, split_seed=7) == test_texts(seed=2, split_seed=7) != test_texts(seed=7, split_seed=8)
    assert test_texts(seed=7, split_seed=7) == test_texts(seed=7)  # split_seed=seed changes nothing
    assert "seed 7" in capsys.readouterr().out  # the split's description names the seed it used


# ---- the task, decided from the labels --------------------------------------------------------------------


def test_numbers_with_fractions_are_scores_and_whole_numbers_are_classes():
    texts = [f"review number {i}" for i in range(80)]
    scores = prepare_frames({"all": pd.DataFrame({"text": texts, "label": [i / 16 for i in range(80)]})})
    assert scores.task.name == "regression" and scores.id2label == {0: "score"}
    assert (scores.labels.extras["min"], scores.labels.extras["max"]) == (0.0, 79 / 16)
    every = pd.concat(scores.splits.values())
    assert sorted(every["label"]) == [i / 16 for i in range(80)]  # the target is the score itself
    assert "stratified by score quintile" in scores.split_origin and "scores 0 to 4.9375" in scores.describe()
    test = scores.splits["test"]["label"]  # quintiles reach every split: the test scores span the range
    assert test.min() < 1 and test.max() > 4
    whole = prepare_frames({"all": pd.DataFrame({"text": texts, "label": [float(i % 4) for i in range(80)]})})
    assert whole.task.name == "single_label" and whole.labels.values == (0, 1, 2, 3)
    assert whole.id2label == {0: "0", 1: "1", 2: "2", 3: "3"}


def test_labels_that_differ_only_by_spaces_are_one_class():
    df = pd.DataFrame({"text": [f"t{i}" for i in range(40)], "label": [" pos", "pos", "neg ", "neg"] * 10})
    data = prepare_frames({"all": df})
    assert data.id2label == {0: "neg", 1: "pos"}
    counts = [data.label_counts(k) for k in data.splits]
    assert sum(c["neg"] for c in counts) == sum(c["pos"] for c in counts) == 20


def test_integer_labels_sort_numerically():
    df = pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": ["2", "10", "1"] * 10})
    data = prepare_frames({"all": df})
    assert data.labels.values == (1, 2, 10) and data.id2label == {0: "1", 1: "2", 2: "10"}  # 10 after 2
    row = pd.concat(data.splits.values()).set_index("text")["label"]
    assert (row["t1"], row["t0"], row["t2"]) == (2, 1, 0)  # "10" is id 2, "2" id 1, "1" id 0


# ---- a separate test file ----------------------------------------------------------------------------------


@pytest.fixture
def train_and_test(tmp_path):
    """200 training rows labelled 0/1 (named negative/positive) and a test file of 100 more."""
    train = pd.DataFrame({"text": [f"train text {i}" for i in range(200)], "label": [i % 2 for i in range(200)]})
    train.to_csv(tmp_path / "train.csv", index=False)
    test = pd.DataFrame({"text": [f"test text {i}" for i in range(100)], "label": [i % 2 for i in range(100)]})
    return tmp_path / "train.csv", test, tmp_path / "test.csv"


def test_a_test_file_may_spell_labels_as_names_or_as_values(train_and_test):
    train, test, path = train_and_test
    spelled = {0: ["negative", "0"], 1: ["positive", "1"]}  # names where training read values, and values
    test.assign(label=[spelled[y][i % 4 // 2] for i, y in enumerate(test["label"])]).to_csv(path, index=False)
    data = prepare(train, test_file=str(path), label_names=("negative", "positive"))
    assert len(data.splits["test"]) == 100 and data.splits["test"]["text"].str.startswith("test text").all()
    assert data.splits["test"]["label"].tolist() == test["label"].tolist()
    assert data.id2label == {0: "negative", 1: "positive"} and data.labels.values == (0, 1)
    assert not set(data.splits["train"]["text"]) & set(data.splits["test"]["text"])


@pytest.mark.parametrize("unknown", [lambda i, y: "neutral" if i == 7 else y, lambda i, y: "neutral"])
def test_a_test_file_label_training_never_saw_is_one_line(train_and_test, unknown):
    train, test, path = train_and_test
    test.assign(label=[unknown(i, y) for i, y in enumerate(test["label"])]).to_csv(path, index=False)
    with pytest.raises(UserError) as err:
        prepare(train, test_file=str(path), label_names=("negative", "positive"))
    message = str(err.value)
    assert "label(s) ['neutral'] in the test file" in message and "not among the classes" in message
    assert "\n" not in message


def test_max_samples_leaves_the_test_file_whole(train_and_test):
    train, test, path = train_and_test
    test.to_csv(path, index=False)
    data = prepare(train, test_file=str(path), max_samples=40)
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert sizes == {"train": 36, "validation": 4, "test": 100}
    assert any("stratified sample of 200 rows; the test file is kept whole" in n for n in data.notes)


def test_a_hub_dataset_names_its_configuration_and_evaluate_picks_a_split(monkeypatch):
    """glue:mrpc loads the configuration mrpc of glue; evaluate scores its test split, or the one --split names."""
    import datasets

    from qlora_helpers.data.prepare import read_evaluation_table
    from qlora_helpers.data.tables import read_source

    calls = []

    class Split:
        def __init__(self, name):
            self.name = name

        def to_pandas(self):
            return pd.DataFrame({"sentence": [f"a {self.name} row"], "label": [1]})

    def fake_load(name, config=None):
        calls.append((name, config))
        return {s: Split(s) for s in ("train", "validation", "test")}

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert set(read_source("glue:mrpc")) == {"train", "validation", "test"} and calls == [("glue", "mrpc")]
    assert read_evaluation_table("glue:mrpc")["sentence"].tolist() == ["a test row"]
    assert read_evaluation_table("glue:mrpc", split="validation")["sentence"].tolist() == ["a validation row"]
    with pytest.raises(UserError, match=r"has the splits \['test', 'train', 'validation'\], not 'dev'"):
        read_evaluation_table("glue:mrpc", split="dev")
