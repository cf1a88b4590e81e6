"""Bad input as a new user gives it: each case ends in one `error:` line and exit 2 with nothing written, or is read
correctly and said so; nothing overwrites a finished run or a file the command did not create (issue: 85 bad
inputs). One tiny run per task is trained once for the module and shared."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from qlora_helpers.cli import main
from qlora_helpers.data.prepare import DataSettings, prepare_data
from qlora_helpers.data.tables import read_local_file
from qlora_helpers.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--max-length", "32", "--batch-size", "8", "--early-stopping-patience", "0"]
TINY += ["--report-to", "none", "--eval-batch-size", "32"]


def train_argv(model, dataset, out: Path, *more) -> list[str]:
    where = ["--output-dir", str(out), "--plots-dir", str(out.parent / f"{out.name}-plots")]
    return ["train", "--model", str(model), "--dataset", str(dataset), *where, *TINY, *map(str, more)]


def fails(capsys, argv: list, *fragments: str) -> str:
    """Run the command in this process; it must end in exit 2 with one `error:` line holding every fragment."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err[-5:]
    assert err[-1].startswith("error: "), err[-5:]
    for fragment in fragments:
        assert fragment in err[-1], err[-1]
    return err[-1]


def succeeds(capsys, argv: list) -> str:
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    return captured.out


# ---- what a file looks like (tables.py) -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reviews(easy_csv) -> pd.DataFrame:
    return pd.read_csv(easy_csv)


@pytest.mark.parametrize(
    "name, write, note",
    [
        ("semicolon.csv", lambda df, p: df.to_csv(p, sep=";", index=False), "delimiter ';'"),
        ("pipes.csv", lambda df, p: df.to_csv(p, sep="|", index=False), "delimiter '|'"),
        ("tabs.csv", lambda df, p: df.to_csv(p, sep="\t", index=False), "delimiter '\\t'"),
        ("commas.tsv", lambda df, p: df.to_csv(p, index=False), "delimiter ','"),
        ("utf16.csv", lambda df, p: df.to_csv(p, index=False, encoding="utf-16"), "UTF-16 (its byte-order mark)"),
        ("utf16le.csv", lambda df, p: df.to_csv(p, index=False, encoding="utf-16-le"), "UTF-16-LE (NUL bytes"),
    ],
)
def test_a_table_in_another_dialect_is_read_and_said_so(reviews, tmp_path, name, write, note):
    path = tmp_path / name
    write(reviews, path)
    df = read_local_file(path)
    assert list(df.columns) == ["review", "sentiment"]
    assert df["review"].tolist() == reviews["review"].tolist()
    assert df["sentiment"].tolist() == reviews["sentiment"].tolist()
    assert any(note in n for n in df.attrs["notes"]), df.attrs["notes"]


def test_a_comma_csv_is_read_as_before_without_a_note(reviews, tmp_path):
    path = tmp_path / "plain.csv"
    reviews.assign(review=reviews["review"] + "; really").to_csv(path, index=False)  # semicolons in the text only
    df = read_local_file(path)
    assert list(df.columns) == ["review", "sentiment"] and df.attrs["notes"] == []


def _xlsx(path: Path, reviews) -> None:
    with zipfile.ZipFile(path, "w") as z:  # what Excel writes: a zip of XML parts under xl/
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")


@pytest.mark.parametrize(
    "name, write, message",
    [
        ("sheet.csv", _xlsx, "is an Excel workbook (.xlsx), not a CSV file: save the sheet as CSV"),
        ("table.csv", lambda p, df: df.to_parquet(p), "is a Parquet file, not a CSV file: rename it"),
        ("packed.csv", lambda p, df: p.write_bytes(gzip.compress(b"review,sentiment\n")), "rename it to end in .gz"),
        ("nul.csv", lambda p, df: p.write_bytes(b"review,label\n\x00\x01\x02\x00x,1\n"), "holds NUL bytes"),
    ],
)
def test_a_file_that_is_not_a_text_table_is_named(reviews, tmp_path, name, write, message):
    path = tmp_path / name
    write(path, reviews)
    with pytest.raises(UserError) as e:
        read_local_file(path)
    assert message in str(e.value)


def test_a_header_naming_a_column_twice_stops_the_run(tmp_path, tiny_bert, capsys):
    path = tmp_path / "dup.csv"
    path.write_text("review,review,sentiment\n" + "".join(f"note {i},great film {i},{i % 2}\n" for i in range(60)))
    out = tmp_path / "run"
    fails(capsys, train_argv(tiny_bert, path, out), "names the column 'review' 2 times", "columns [0, 1]")
    assert not out.exists() and not (tmp_path / "run-plots").exists()


# ---- columns, headers and splits (data.py, splits.py) -------------------------------------------------------------


def test_label_columns_that_do_not_exist_are_listed_with_those_that_do(easy_csv):
    with pytest.raises(UserError) as e:
        prepare_data(DataSettings(str(easy_csv), label_columns=("a", "b", "zz")))
    assert "lacks column(s) ['a', 'b', 'zz']; its columns are ['review', 'sentiment']" in str(e.value)


def test_no_header_on_a_file_with_one_says_the_first_row_looks_like_a_header(easy_csv):
    with pytest.raises(UserError) as e:  # 0/1 labels: the header's 'sentiment' mixes a name into the numbers
        prepare_data(DataSettings(str(easy_csv), text_column="0", label_column="1", header=False))
    assert "mixes numbers [0, 1] and names ['sentiment']" in str(e.value)
    assert str(e.value).endswith("the first row looks like a header: drop --no-header")


@pytest.mark.parametrize("task, rows", [("multi_label", 200), ("regression", 40)])
def test_a_small_sample_of_many_label_sets_or_scores_still_splits(tmp_path, task, rows):
    """28 label sets (or 5 score ranges) in a 20-row (4-row) test split: sklearn wants a row of every stratum
    there; the smallest strata share one instead of the run ending in 'cannot make a stratified split'."""
    path = tmp_path / "data.jsonl"
    labels = (
        [[i % 28, (i * 7) % 28] for i in range(400)] if task == "multi_label" else [i % 51 / 10 for i in range(400)]
    )
    pd.DataFrame({"text": [f"text {i}" for i in range(400)], "label": labels}).to_json(
        path, orient="records", lines=True
    )
    data = prepare_data(DataSettings(str(path), task=task, max_samples=rows))
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert sizes == {"train": rows * 8 // 10, "validation": rows // 10, "test": rows // 10}
    assert data.task.name == task


# ---- settings found wrong after the run began: one line, and no folder left behind ----------------------------


def test_a_rank_beyond_the_layer_size_stops_before_the_weights_load_and_leaves_nothing(
    tmp_path, tiny_bert, easy_csv, capsys
):
    out = tmp_path / "run"
    fails(
        capsys,
        train_argv(tiny_bert, easy_csv, out, "--lora-r", 100),
        "--lora-r 100 is not below",
        "at most --lora-r 63",
    )
    assert not out.exists() and not (tmp_path / "run-plots").exists()  # the data plot was drawn, then removed


def test_a_loss_that_turns_nan_leaves_no_empty_checkpoints_folder(tmp_path, tiny_bert, easy_csv, capsys):
    out = tmp_path / "run"
    fails(capsys, train_argv(tiny_bert, easy_csv, out, "--lr", 1e30), "the loss became nan")
    assert not out.exists() and not (tmp_path / "run-plots").exists()


def test_an_infinite_class_weight_is_refused(tmp_path, tiny_bert, easy_csv, capsys):
    fails(capsys, train_argv(tiny_bert, easy_csv, tmp_path / "run", "--class-weights", "inf,1"), "positive, finite")
    assert list(tmp_path.iterdir()) == []


# ---- files a command writes: checked before any work, never replaced unasked ----------------------------------


@pytest.fixture(scope="module")
def trained(tiny_bert, easy_csv, tmp_path_factory) -> Path:
    """One tiny finished run, shared by the tests that predict, evaluate and merge."""
    out = tmp_path_factory.mktemp("bad-inputs") / "run"
    assert (
        main(train_argv(tiny_bert, easy_csv, out, "--label-names", "negative", "positive", "--max-samples", 120)) == 0
    )
    return out


def test_predict_replaces_an_existing_output_only_with_overwrite(trained, tmp_path, capsys):
    target = tmp_path / "predictions.csv"
    target.write_text("mine\n")
    fails(capsys, ["predict", "--adapter", trained, "fine film", "--output", target], "exists", "--overwrite")
    assert target.read_text() == "mine\n"
    succeeds(capsys, ["predict", "--adapter", trained, "fine film", "--output", target, "--overwrite"])
    assert pd.read_csv(target)["label"].tolist()[0] in ("negative", "positive")  # was: 'cannot write' (a file)
    (tmp_path / "folder.csv").mkdir()
    fails(capsys, ["predict", "--adapter", trained, "fine film", "--output", tmp_path / "folder.csv"], "is a folder")


def test_evaluate_replaces_its_files_only_with_overwrite(trained, easy_csv, tmp_path, capsys):
    target = tmp_path / "scores.json"
    target.write_text("{}")
    fails(
        capsys, ["evaluate", "--adapter", trained, "--dataset", easy_csv, "--output", target], "exists", "--overwrite"
    )
    assert target.read_text() == "{}" and not (tmp_path / "misclassified_easy.csv").exists()
    succeeds(capsys, ["evaluate", "--adapter", trained, "--dataset", easy_csv, "--output", target, "--overwrite"])
    assert json.loads(target.read_text())["rows"] == 240 and (tmp_path / "misclassified_easy.csv").is_file()
    file = tmp_path / "a-file"
    file.write_text("")
    fails(
        capsys, ["evaluate", "--adapter", trained, "--dataset", easy_csv, "--output", file / "x.json"], "cannot write"
    )


def test_merge_overwrite_replaces_only_an_earlier_merge(trained, tiny_bert, tmp_path, capsys):
    base = tmp_path / "base-model"
    shutil.copytree(tiny_bert, base)  # a model folder (config.json, weights) that merge did not write
    fails(capsys, ["merge", "--adapter", trained, "--output", base, "--overwrite"], "already holds files")
    assert sorted(p.name for p in base.iterdir()) == sorted(p.name for p in Path(tiny_bert).iterdir())
    finished = tmp_path / "finished"
    shutil.copytree(trained, finished)
    before = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()}
    for flags in ([], ["--overwrite"]):  # a training run is never an earlier merge
        fails(
            capsys,
            ["merge", "--adapter", trained, "--output", finished, *flags],
            "already holds files (a training run)",
        )
    assert {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()} == before
    file = tmp_path / "model.bin"
    file.write_text("mine")
    fails(capsys, ["merge", "--adapter", trained, "--output", file], "is a file; name a new folder")
    assert file.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == [
        "base-model",
        "finished",
        "model.bin",
    ]


def _read_only_mount(folder: Path, *argv) -> subprocess.CompletedProcess:
    """The command line run with `folder` bind-mounted read-only (a user namespace: root's permission bits
    do not stop root, a read-only mount does)."""
    script = f'mount --bind "{folder}" "{folder}" && mount -o remount,ro,bind "{folder}" && exec "$@"'
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    command = ["unshare", "-Urm", "sh", "-c", script, "sh", sys.executable, "-m", "qlora_helpers", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_a_read_only_place_is_refused_before_anything_loads(trained, tiny_bert, easy_csv, tmp_path):
    locked = tmp_path / "locked"
    shutil.copytree(trained, locked / "run")
    probe = _read_only_mount(locked, "--help")
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces here to mount a folder read-only: {probe.stderr.strip()[:100]}")
    cases = [
        (train_argv(tiny_bert, easy_csv, tmp_path / "new", "--plots-dir", locked / "plots"), "--plots-dir"),
        (train_argv(tiny_bert, easy_csv, locked / "new"), "--output-dir"),
        (["evaluate", "--adapter", locked / "run", "--dataset", easy_csv], "choose another --output"),
        (["merge", "--adapter", locked / "run", "--output", locked / "merged"], "choose another --output"),
    ]
    for argv, fix in cases:
        r = _read_only_mount(locked, *argv)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and lines[-1].startswith("error: cannot write to") and fix in lines[-1], lines[-3:]
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "new").exists()


def test_the_wheel_holds_every_subpackage_and_the_sample_data_without_a_warning(tmp_path):
    """`pip install .` installed qlora_helpers alone: no cli/ (so no `qlora-bert`), and warned about sample_data."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "requirements.txt"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "qlora_helpers", source / "qlora_helpers", ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    r = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "absent from the `packages` configuration" not in r.stdout + r.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert {"qlora_helpers/cli/__init__.py", "qlora_helpers/cli/train.py"} <= set(names)
    assert "qlora_helpers/sample_data/imdb_sample_1500.csv.gz" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "notebook/")) for n in names)


# ---- settings that do not fit the data or the model ---------------------------------------------------------------


def _scores_csv(path: Path) -> Path:
    path.write_text("text,label\n" + "".join(f"film {i},{i % 21 / 4}\n" for i in range(60)))
    return path


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(task="single_label"), "holds numbers with fractions (e.g. 0.25); to predict the number, pass --task"),
        (dict(label_names=("low", "high")), "a regression predicts a number: leave --label-names out"),
        (dict(text_column="label"), "column 'label' is named as both text and label"),
    ],
)
def test_settings_that_do_not_fit_the_labels_are_refused(tmp_path, settings, message):
    with pytest.raises(UserError) as e:
        prepare_data(DataSettings(str(_scores_csv(tmp_path / "scores.csv")), **settings))
    assert message in str(e.value)


def test_a_max_length_beyond_the_models_positions_is_refused_before_training(tmp_path, tiny_bert, easy_csv, capsys):
    out = tmp_path / "run"
    fails(capsys, train_argv(tiny_bert, easy_csv, out, "--max-length", 1000), "beyond the 512 positions")
    assert list(tmp_path.iterdir()) == []


def test_an_output_dir_that_holds_other_files_is_refused(tmp_path, tiny_bert, easy_csv, capsys):
    """The model's own folder, or a project folder: the run's README.md and tokenizer files would replace theirs."""
    model = tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    fails(capsys, train_argv(model, easy_csv, model), "already holds other files", "name a new or empty --output-dir")
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "README.md").write_text("mine")
    fails(capsys, train_argv(tiny_bert, easy_csv, tmp_path / "project"), "already holds other files (README.md)")
    assert [p.name for p in (tmp_path / "project").iterdir()] == ["README.md"]


def test_resume_refuses_settings_the_checkpoint_was_not_made_with(trained, tiny_bert, easy_csv, tmp_path, capsys):
    interrupted = tmp_path / "run"
    shutil.copytree(trained, interrupted)
    (interrupted / "metrics.json").unlink()  # as a run killed after its checkpoints, before its end
    names = ["--label-names", "negative", "positive", "--max-samples", 120, "--resume"]
    fails(capsys, train_argv(tiny_bert, easy_csv, interrupted, *names, "--lora-r", 8), "--lora-r 8 (started with 16)")
    fails(capsys, train_argv(tiny_bert, easy_csv, interrupted, *names, "--lora-alpha", 8), "--lora-alpha 8.0")
    three = tmp_path / "three.csv"
    pd.read_csv(easy_csv).assign(sentiment=lambda d: d.index % 3).to_csv(three, index=False)
    fails(capsys, train_argv(tiny_bert, three, interrupted, "--resume"), "does not fit this model")
    assert not (interrupted / "metrics.json").exists()


def test_evaluate_names_unknown_labels_briefly_and_hints_at_a_header(trained, easy_csv, tmp_path, capsys):
    evaluate = ["evaluate", "--adapter", trained, "--dataset", easy_csv, "--output", tmp_path / "e.json"]
    line = fails(capsys, [*evaluate, "--label-column", "review"], "240 label(s) [", "not among the classes")
    assert len(line) < 400  # three labels of at most 40 characters, not five whole reviews
    fails(capsys, [*evaluate, "--no-header", "--text-column", "0", "--label-column", "1"], "drop --no-header")
    assert list(tmp_path.iterdir()) == []


# ---- a regression end to end ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_scores(tiny_bert, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("scores")
    data = _scores_csv(folder / "scores.csv")
    out = folder / "run"
    assert main(train_argv(tiny_bert, data, out)) == 0  # task auto: fractions -> regression
    return out, data


def test_a_regression_predicts_scores_and_refuses_what_only_classes_have(trained_scores, tiny_bert, tmp_path, capsys):
    out, data = trained_scores
    assert json.loads((out / "classifier_config.json").read_text())["task"] == "regression"
    row = json.loads(succeeds(capsys, ["predict", "--adapter", out, "film 3"]).strip().splitlines()[-1])
    assert set(row) == {"text", "score"} and isinstance(row["score"], float)
    fails(capsys, ["predict", "--adapter", out, "film 3", "--top-k", 1], "a regression predicts a score")
    fails(capsys, ["predict", "--adapter", out, "film 3", "--thresholds", "global"], "applies to multi-label")
    fails(capsys, train_argv(tiny_bert, data, tmp_path / "w", "--class-weights", "auto"), "a regression task has none")
    printed = succeeds(capsys, ["evaluate", "--adapter", out, "--dataset", data, "--output", tmp_path / "e.json"])
    assert "scores, largest error first" in printed and "misclassified texts" not in printed


def test_a_test_file_is_never_the_training_data_and_its_overlap_is_named(easy_csv, tmp_path):
    with pytest.raises(UserError) as e:
        prepare_data(DataSettings(str(easy_csv), test_file=str(easy_csv)))
    assert "is the --dataset itself, whose rows train the model" in str(e.value)
    copy = tmp_path / "copy.csv"
    shutil.copy(easy_csv, copy)
    data = prepare_data(DataSettings(str(easy_csv), test_file=str(copy)))
    assert len(data.splits["test"]) == 240
    assert any("rows of the test file that are also in the training data" in n for n in data.notes), data.notes
    pd.read_csv(easy_csv)[["review"]].to_csv(copy, index=False)
    with pytest.raises(UserError) as e:
        prepare_data(DataSettings(str(easy_csv), test_file=str(copy)))
    assert f"the test file {copy} lacks column(s) ['sentiment']; its columns are ['review']" in str(e.value)


# ---- the cases the refactor fixed, held in place -------------------------------------------------------


def test_labels_differing_only_by_whitespace_are_one_class(easy_csv, tmp_path):
    path = tmp_path / "spaces.csv"
    df = pd.read_csv(easy_csv).assign(sentiment=lambda d: d["sentiment"].map({0: "neg", 1: "pos"}))
    df.loc[::3, "sentiment"] = " " + df.loc[::3, "sentiment"] + " "
    df.to_csv(path, index=False)
    data = prepare_data(DataSettings(str(path)))
    assert data.labels.names == ("neg", "pos") and data.labels.label2id == {"neg": 0, "pos": 1}


def test_a_test_file_is_read_with_the_training_label_space_and_kept_whole(easy_csv, tmp_path):
    names = tmp_path / "names.csv"
    pd.read_csv(easy_csv).iloc[:60].assign(sentiment=lambda d: d["sentiment"].map({0: "neg", 1: "pos"})).to_csv(
        names, index=False
    )
    with pytest.raises(UserError) as e:  # 0/1 in training, neg/pos in the test file: not 4 classes
        prepare_data(DataSettings(str(easy_csv), test_file=str(names)))
    assert "2 label(s) ['neg', 'pos'] in the test file" in str(e.value)
    data = prepare_data(DataSettings(str(easy_csv), test_file=str(names), label_names=("neg", "pos"), max_samples=100))
    assert data.labels.names == ("neg", "pos") and len(data.splits["test"]) == 60  # names read, not sampled
    unseen = tmp_path / "unseen.csv"
    pd.read_csv(easy_csv).iloc[:60].assign(sentiment=lambda d: d.index % 3).to_csv(unseen, index=False)
    with pytest.raises(UserError) as e:  # was an IntCastingNaNError traceback
        prepare_data(DataSettings(str(easy_csv), test_file=str(unseen)))
    assert "1 label(s) ['2'] in the test file" in str(e.value)


@pytest.mark.parametrize("names", [None, tuple(f"emotion{i}" for i in range(28))])
def test_json_list_labels_are_label_sets(tmp_path, names):
    path = tmp_path / "sets.jsonl"
    rows = [{"text": f"text {i}", "labels": [i % 28, (i * 5 + 10) % 28]} for i in range(300)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = prepare_data(DataSettings(str(path), task="multi_label", label_names=names))
    assert data.num_labels == 28 and data.labels.values == tuple(str(i) for i in range(28))
    everything = pd.concat(data.splits.values())
    assert sorted(map(tuple, everything["label"])) == sorted(tuple(sorted(set(r["labels"]))) for r in rows)


def test_label_sets_mix_names_and_ids_and_an_unknown_label_is_named():
    from qlora_helpers.tasks.labels import LabelSpace, encode_sets

    space = LabelSpace(("anger", "joy", "love"), ("0", "1", "2"))
    assert encode_sets([("joy", "2"), ("0",)], space, "f.csv") == [(1, 2), (0,)]
    with pytest.raises(UserError, match="label 'zzz' in f.csv is not among the 3 labels"):
        encode_sets([("joy", "zzz")], space, "f.csv")


def test_evaluate_counts_the_rows_the_model_trained_on(trained, easy_csv, tmp_path, capsys):
    printed = succeeds(
        capsys, ["evaluate", "--adapter", trained, "--dataset", easy_csv, "--output", tmp_path / "e.json"]
    )
    seen = json.loads((tmp_path / "e.json").read_text())["rows_seen_in_training"]
    assert (
        seen["train"] > 0 and f"note: {seen['train']} of these 240 rows are in the model's training split" in printed
    )


def test_a_damaged_saved_model_and_wrong_flags_are_one_line_before_loading(trained, tmp_path, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(trained, damaged)
    text = (damaged / "classifier_config.json").read_text()
    (damaged / "classifier_config.json").write_text(text[:100])
    fails(capsys, ["predict", "--adapter", damaged, "fine"], "classifier_config.json is damaged (JSONDecodeError")
    record = json.loads(text)
    out_of_range = {"mode": "per_label", "global": 0.5, "per_label": {"negative": 7, "positive": -1}}
    for changes, message in [
        (
            dict(task="multi_label", thresholds=out_of_range),
            "must lie between 0 and 1 (a probability), but negative=7, positive=-1",
        ),
        (dict(input={**record["input"], "text_pair_column": "second"}), "reads sentence pairs"),
    ]:
        (damaged / "classifier_config.json").write_text(json.dumps({**record, **changes}))
        fails(capsys, ["predict", "--adapter", damaged, "fine"], message)
    predict = ["predict", "--adapter", trained, "fine"]
    fails(capsys, [*predict, "--long-text", "window", "--stride", -5], "--stride -5 must be 0 or more")
    fails(capsys, [*predict, "--stride", 5], "add --long-text window")
    fails(capsys, [*predict, "--thresholds", "global"], "applies to multi-label models")


def test_a_notebook_kernel_is_not_recorded_as_the_command(monkeypatch):
    import sys as system

    from qlora_helpers.run_files import command_line

    monkeypatch.setattr(system, "argv", ["/venv/lib/ipykernel_launcher.py", "-f", "/tmp/kernel-1.json"])
    assert command_line() == "notebook kernel (see the notebook's parameters)"
    notebook = (ROOT / "notebook" / "QLoRA_BERT_TextClassification.py").read_text()
    assert "command=NOTEBOOK" in notebook and "PROFILE=PROFILE" in notebook and "OUTPUT_DIR=OUTPUT_DIR" in notebook


def test_training_in_a_notebook_prints_its_progress_as_lines(tiny_bert, easy_csv, tmp_path, capsys, monkeypatch):
    """Under papermill the Trainer's HTML progress never reaches the log: plain lines say how far it is."""
    from qlora_helpers.train import callbacks as progress

    assert not progress.html_progress()  # in a plain process the text progress bar shows already
    monkeypatch.setattr(progress, "html_progress", lambda: True)  # as in a notebook kernel
    printed = succeeds(capsys, train_argv(tiny_bert, easy_csv, tmp_path / "run", "--max-samples", 60))
    last = re.search(r"^step (\d+)/\1 \(100%\), loss [0-9.]+, \d+ s$", printed, re.MULTILINE)
    assert last is not None, printed[-2000:]
    assert re.search(rf"^step {last.group(1)}: validation accuracy [0-9.]+$", printed, re.MULTILINE)


@pytest.mark.parametrize("task", ["auto", "multi_label"])
def test_a_label_column_without_any_label_is_named(easy_csv, tmp_path, task):
    path = tmp_path / "unlabelled.csv"
    pd.read_csv(easy_csv).assign(sentiment=None).to_csv(path, index=False)
    with pytest.raises(UserError) as e:  # was an IndexError traceback
        prepare_data(DataSettings(str(path), task=task))
    assert "no row has a label in column 'sentiment'" in str(e.value)


def test_predict_reads_a_utf16_file_of_lines_and_refuses_a_binary_one(trained, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("a wonderful film\nan awful film\n", encoding="utf-16")
    rows = [json.loads(r) for r in succeeds(capsys, ["predict", "--adapter", trained, "--file", lines]).splitlines()]
    assert [r["text"] for r in rows] == ["a wonderful film", "an awful film"]  # not NUL-laced mojibake
    sheet = tmp_path / "lines2.txt"
    _xlsx(sheet, None)
    fails(capsys, ["predict", "--adapter", trained, "--file", sheet], "is an Excel workbook (.xlsx), not a text file")
    fails(
        capsys, ["evaluate", "--adapter", trained, "--dataset", lines, "--batch-size", 0], "--batch-size must be >= 1"
    )


def test_a_missing_dataset_is_named_before_the_tokenizer_loads(tmp_path, capsys):
    argv = ["train", "--dataset", "missing.csv", "--model", "nobody/no-such-bert", "--output-dir", tmp_path / "run"]
    fails(capsys, argv, "dataset file not found: missing.csv")  # was: could not load the tokenizer (offline)


def test_text_columns_given_to_predict_must_match_the_model_even_for_texts_as_arguments(trained, capsys):
    fails(capsys, ["predict", "--adapter", trained, "fine", "--text-columns", "a", "b"], "trained on 1 text column(s)")


def test_multi_label_on_one_label_per_row_says_a_single_label_run_fits(tmp_path):
    path = tmp_path / "plain.csv"
    pd.DataFrame({"text": [f"text {i}" for i in range(30)], "label": ["a", "b", "c"] * 10}).to_csv(path, index=False)
    data = prepare_data(DataSettings(str(path), task="multi_label"))
    assert any("each text has at most one label; a single-label run" in n for n in data.notes), data.notes
    sets = tmp_path / "sets.csv"
    pd.DataFrame({"text": [f"text {i}" for i in range(30)], "label": ["a,b", "b", "c"] * 10}).to_csv(sets, index=False)
    assert not any("at most one label" in n for n in prepare_data(DataSettings(str(sets), task="multi_label")).notes)


def test_make_demo_records_its_run_in_an_ignored_folder():
    """`make demo` rewrote the tracked benchmarks/results/runs/demo.json: a newcomer's checkout was dirty."""
    from benchmarks import timed

    timing = (ROOT / "Makefile").read_text().split("\ndemo:")[1].split(" -- ")[0]  # the timer's own flags
    assert "benchmarks.timed demo" in timing and "--output" not in timing
    assert timed.RUNS == ROOT / "outputs" / "runs"
    ignored = subprocess.run(["git", "check-ignore", "-q", "outputs/runs/demo.json"], cwd=ROOT)
    assert ignored.returncode == 0


def test_a_merged_model_predicts_evaluates_with_its_seen_rows_and_is_not_merged_again(
    trained, easy_csv, tmp_path, capsys
):
    merged = tmp_path / "merged"
    succeeds(capsys, ["merge", "--adapter", trained, "--output", merged])
    row = json.loads(succeeds(capsys, ["predict", "--adapter", merged, "a wonderful film"]).strip().splitlines()[-1])
    assert row["label"] in ("negative", "positive")
    evaluate = ["evaluate", "--adapter", merged, "--dataset", easy_csv, "--output", tmp_path / "e.json"]
    assert "rows are in the model's training split" in succeeds(capsys, evaluate)  # the merge keeps the hashes
    fails(capsys, ["merge", "--adapter", merged, "--output", tmp_path / "again"], "holds no adapter to merge")
    assert not (tmp_path / "again").exists()


def test_loading_a_trained_model_prints_no_false_newly_initialized_report(trained, tmp_path, capfd):
    """transformers' 'newly initialized ... you should TRAIN this model' report is false for a trained head."""
    assert main(["predict", "--adapter", str(trained), "fine", "--mode", "16bit"]) == 0
    assert main(["merge", "--adapter", str(trained), "--output", str(tmp_path / "merged")]) == 0
    captured = capfd.readouterr()
    assert "newly initialized" not in captured.out + captured.err and "MISSING" not in captured.err


def test_known_misleading_library_warnings_are_dropped_and_others_kept():
    import warnings

    from qlora_helpers.library_logs import quiet_known_library_warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_known_library_warnings()
        warnings.warn("IProgress not found. Please update jupyter and ipywidgets.", stacklevel=1)
        warnings.warn("Paged optimizers are not supported on CPU. Falling back to non-paged.", stacklevel=1)
        warnings.warn("something else", stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else"]


def test_a_run_being_replaced_is_unfinished_until_its_files_are_written(trained, tmp_path):
    from qlora_helpers.run_files import METRICS, save_run

    class Failing:
        def save_pretrained(self, directory):
            raise OSError("disk full")

    out = tmp_path / "run"
    shutil.copytree(trained, out)
    with pytest.raises(OSError, match="disk full"):
        save_run(out, Failing(), None, None, {}, [], {})
    assert not (out / METRICS).exists()  # not the old run's marker over a half-replaced folder


def test_labels_written_two_ways_for_one_number_are_refused_not_merged():
    import pandas as pd

    from qlora_helpers.errors import UserError
    from qlora_helpers.tasks.labels import class_values

    with pytest.raises(UserError, match=r"writes the class 1 in 2 ways \(01, 1\)"):
        class_values(pd.Series(["01", "1", "2"] * 30), "label")
    assert class_values(pd.Series([1, "1", " 1 ", 2.0, "2"]), "label") == [1, 2]  # one spelling, stripped


def test_a_blank_line_in_the_label_names_file_is_refused_not_dropped(tmp_path):
    from qlora_helpers.errors import UserError
    from qlora_helpers.tasks.labels import read_label_names_file

    names = tmp_path / "labels.txt"
    names.write_text("joy\nanger\n\nfear\nsad\n")
    with pytest.raises(UserError, match="blank line 3: line i names label id i"):
        read_label_names_file(str(names))
    names.write_text("joy\nanger\n\n")
    assert read_label_names_file(str(names)) == ["joy", "anger"]


def test_an_empty_second_text_is_refused_at_prediction_as_in_training():
    from qlora_helpers.data.text_input import check_pair_texts
    from qlora_helpers.errors import UserError

    with pytest.raises(UserError, match="second text 2 is empty"):
        check_pair_texts("sentence2", ["a", "b"], ["x", " "])
    check_pair_texts("sentence2", ["a"], ["x"])


def test_a_saved_max_length_that_is_not_positive_is_refused_at_load():
    from qlora_helpers.errors import UserError
    from qlora_helpers.modeling.classifier_config import ClassifierConfig

    record = {"task": "single_label", "labels": {"names": ["a", "b"], "values": ["a", "b"]},
              "input": {"text_columns": ["text"]}, "max_length": -5, "base_model": "x"}  # fmt: skip
    with pytest.raises(UserError, match="max_length -5 must be a positive"):
        ClassifierConfig.from_record(record)


def test_a_folder_given_as_the_data_file_is_called_a_folder(tmp_path):
    from qlora_helpers.data.tables import check_local_files
    from qlora_helpers.errors import UserError

    (tmp_path / "data.csv").mkdir()
    with pytest.raises(UserError, match="--dataset .*data.csv is a folder; pass a data file"):
        check_local_files(str(tmp_path / "data.csv"))
    with pytest.raises(UserError, match="--test-file .* is a folder"):
        check_local_files("imdb", str(tmp_path))


def test_scores_too_far_apart_to_standardise_are_refused():
    import pandas as pd

    from qlora_helpers.errors import UserError
    from qlora_helpers.tasks import get

    with pytest.raises(UserError, match="too far apart to standardise"):
        get("regression").label_space(pd.Series([1e308, -1e308, 0.5] * 10), column="score")


def test_an_adapter_folder_without_its_weights_file_is_one_line(tmp_path):
    from qlora_helpers.errors import UserError
    from qlora_helpers.infer.inference import check_model_files

    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="has no adapter_model.safetensors: the trained weights are missing"):
        check_model_files(tmp_path)


def test_a_saved_class_order_edited_after_training_is_refused():
    from qlora_helpers.errors import UserError
    from qlora_helpers.modeling.classifier_config import ClassifierConfig

    record = {"task": "single_label", "labels": {"names": ["pos", "neg"], "values": [1, 0]},
              "input": {"text_columns": ["text"]}, "max_length": 32, "base_model": "x"}  # fmt: skip
    with pytest.raises(UserError, match="out of their sorted order"):
        ClassifierConfig.from_record(record)
    record["labels"] = {"names": ["neg", "neu", "pos"], "values": ["neg", "neu", "pos"]}
    assert ClassifierConfig.from_record(record).labels.names == ("neg", "neu", "pos")


def test_a_text_file_with_bytes_that_are_not_utf8_is_read_with_a_note(tmp_path, capsys):
    from qlora_helpers.data.text_input import texts_from_file

    path = tmp_path / "reviews.txt"
    path.write_bytes("a fine film\nun film tr\xe8s beau\n".encode("latin-1"))
    assert texts_from_file(path)[0] == "a fine film"
    assert "1 line(s) of reviews.txt held bytes that are not UTF-8" in capsys.readouterr().err
