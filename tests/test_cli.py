"""The command line, in subprocesses as a user runs it: train -> predict -> evaluate, and bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import train_args

from qlora_helpers.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "qlora_helpers", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or ROOT,
        timeout=600,
    )


@pytest.fixture(scope="module")
def trained(tiny_bert, easy_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "adapter"
    r = cli(*train_args(tiny_bert, easy_csv, out, lora_dropout=0.05, eval_batch_size=16, report_to="tensorboard"))
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_train_writes_outputs_and_prints_metrics(trained):
    out, r = trained
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["test_accuracy"] >= 0.85 and summary["device"] == "cpu"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["lora_dropout"] == 0.05 and metrics["config"]["eval_batch_size"] == 16
    assert metrics["config"]["lr"] == 5e-3 and metrics["config"]["target_modules"] == ["all-linear"]
    adapter = json.loads((out / "adapter_config.json").read_text())  # all-linear: every linear layer, by name
    assert set(adapter["target_modules"]) == {"query", "key", "value", "dense"}
    assert metrics["config"]["truncation"] == "head_tail" and metrics["world_size"] == 1
    assert sum(metrics["data"]["sizes"].values()) == 240
    assert (out.parent / "adapter-plots" / "training_curves.png").is_file()
    assert f"logging: TensorBoard event files under {out / 'runs'}" in r.stdout


def test_tensorboard_gets_the_runs_curves(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = trained
    (events,) = {p.parent for p in (out / "runs").rglob("events.out.tfevents.*")}  # one run, one writer
    tags = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert {"train/loss", "eval/accuracy", "eval/loss"} <= set(tags), tags


def test_predict_texts_and_file(trained, tmp_path):
    out, _ = trained
    texts = tmp_path / "texts.txt"
    # reviews shaped like the training data (13 words, 3 of them carrying the sentiment)
    texts.write_text(
        "the story was wonderful and the actor was brilliant in this perfect film\n\n"
        "the plot was the worst and the film was boring it was a waste\n"
    )
    r = cli(
        "predict",
        "--adapter",
        out,
        "this movie was great and the story was excellent and the scene was best",
        "--file",
        texts,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert [row["label"] for row in rows] == ["positive", "positive", "negative"], rows
    assert all(set(row) == {"text", "label", "probability", "probabilities"} for row in rows)


def test_evaluate_prints_and_writes_metrics(trained, easy_csv, tmp_path):
    out, _ = trained
    target = tmp_path / "eval.json"
    r = cli("evaluate", "--adapter", out, "--dataset", easy_csv, "--output", target)
    assert r.returncode == 0, r.stderr[-2000:]
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    written = json.loads(target.read_text())
    assert printed["rows"] == written["rows"] == 240
    assert printed["accuracy"] == written["accuracy"] >= 0.85
    assert "precision" in r.stdout and written["confusion_matrix"][0][0] > 100
    mistakes = pd.read_csv(written["misclassified_file"])
    assert len(mistakes) == written["misclassified"] == round(240 * (1 - written["accuracy"]))
    assert (mistakes["true"] != mistakes["predicted"]).all()
    assert mistakes["probability"].is_monotonic_decreasing
    # the training file holds the run's own training and validation rows: counted, and said
    assert written["rows_seen_in_training"] == {"train": 192, "validation": 24}
    assert "note: 192 of these 240 rows are in the model's training split and 24 in its validation split" in r.stdout


def test_evaluate_reads_long_texts_through_windows(trained, easy_csv, tmp_path):
    out, _ = trained
    long = tmp_path / "long.csv"
    frame = pd.read_csv(easy_csv)
    frame.assign(review=frame["review"] + " " + frame["review"] + " " + frame["review"]).to_csv(long, index=False)
    target = tmp_path / "window.json"
    r = cli(
        "evaluate", "--adapter", out, "--dataset", long, "--long-text", "window", "--stride", 8, "--output", target
    )
    assert r.returncode == 0, r.stderr[-2000:]
    written = json.loads(target.read_text())
    assert written["long_text"] == "window" and written["stride"] == 8 and written["rows"] == 240
    assert written["accuracy"] >= 0.85  # three copies of a review, each window sees its sentiment words
    assert written["rows_seen_in_training"] == {"train": 0, "validation": 0} and "note:" not in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--dataset", "missing.csv"], "dataset file not found: missing.csv"),
        (["train", "--dataset", "{easy}", "--text-column", "body"], "text column 'body' not found"),
        (["train", "--dataset", "{single}"], "only one class"),
        (["train", "--lora-r", "0"], "lora_r must be a positive whole number"),
        (["train", "--lr", "0"], "lr must be a positive number"),
        (["train", "--optim", "adam_magic"], "unknown optimizer 'adam_magic'"),
        (["train", "--epochs", "three"], "argument --epochs: invalid float value"),
        (["train", "--model", "{tmp}", "--dataset", "{easy}"], "could not load the tokenizer from"),
        (["predict", "--adapter", "{tmp}", "hello"], "has no classifier_config.json"),
        (["train", "--dataset", "{scores}", "--task", "single_label"], "pass --task regression"),
        (["predict", "--adapter", "{adapter}"], "no texts given"),
        (["evaluate", "--adapter", "{adapter}", "--dataset", "missing.parquet"], "dataset file not found"),
        (
            ["evaluate", "--adapter", "{adapter}", "--dataset", "{easy}", "--long-text", "window", "--stride", "32"],
            "--stride 32 must be below max_length (32)",
        ),
        (["predict", "--adapter", "{adapter}", "fine", "--text-pair", "a"], "trained on single texts"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(args, message, trained, tiny_bert, easy_csv, tmp_path):
    single = tmp_path / "single.csv"
    single.write_text("text,label\n" + "fine film,1\n" * 20)
    scores = tmp_path / "scores.csv"
    scores.write_text("text,label\n" + "".join(f"film {i},{i / 4}\n" for i in range(40)))
    fill = {"{easy}": easy_csv, "{single}": single, "{scores}": scores, "{tmp}": tmp_path, "{adapter}": trained[0]}
    args = [str(fill.get(a, a)) for a in args]
    if args[0] == "train":
        args += ["--output-dir", str(tmp_path / "never")]
        args += [] if "--model" in args else ["--model", str(tiny_bert)]  # the data's errors, not the Hub's
    r = cli(*args)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "never").exists()


def test_a_missing_dataset_is_named_before_the_model_is_loaded(tmp_path, capsys):
    """A mistyped --dataset is said first, not hidden behind the default model's download (or offline error)."""
    code = main(["train", "--dataset", "missing.csv", "--model", "nobody/no-such-bert", "--output-dir", str(tmp_path)])
    assert code == 2 and "dataset file not found: missing.csv" in capsys.readouterr().err


def test_a_finished_run_is_not_overwritten(trained):
    out, _ = trained
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    r = cli("train", "--dataset", "qlora_helpers/sample_data/imdb_sample_1500.csv.gz", "--output-dir", out)
    assert r.returncode == 2 and "already holds a finished run" in r.stderr and "--overwrite" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_cudnn_attention_is_a_switch_that_stays_off_by_default():
    from qlora_helpers.cli import build_parser, config_from_args

    parse = lambda *flags: config_from_args(build_parser().parse_args(["train", *flags]))  # noqa: E731
    assert parse().cudnn_attention is False
    assert parse("--cudnn-attention").cudnn_attention is True
    assert parse("--cudnn-attention", "--no-cudnn-attention").cudnn_attention is False


def test_list_flags_take_several_values():
    from qlora_helpers.cli import build_parser, config_from_args

    args = build_parser().parse_args(
        ["train", "--target-modules", "query", "value", "--label-columns", "a", "b", "--multi-label"]
    )
    cfg = config_from_args(args)
    assert cfg.target_modules == ["query", "value"] and cfg.label_columns == ["a", "b"] and cfg.task == "multi_label"


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "--multi-label", "fine"], "--task multi_label given, but this model was trained as single_label"),
        (["evaluate", "--dataset", "{easy}", "--task", "regression"], "this model was trained as single_label"),
        (["predict", "--dataset", "{easy}", "--text-columns", "a", "b"], "trained on 1 text column(s) ['review']"),
        (["predict", "fine", "--text-columns", "a", "b"], "trained on 1 text column(s) ['review']"),
        (
            ["evaluate", "--dataset", "{easy}", "--label-columns", "a", "b"],
            "the model was trained on one label column",
        ),
        (["predict", "--text-pair-column", "b", "--dataset", "{easy}"], "trained on single texts; leave it out"),
        (["predict", "--thresholds", "global", "fine"], "--thresholds applies to multi-label models"),
        (["predict", "--stride", "8", "fine"], "--stride sets the overlap of --long-text window"),
        (["evaluate", "--dataset", "{easy}", "--stride", "8"], "add --long-text window or leave --stride out"),
        (["predict", "--output", "{existing}", "fine"], "exists; pass --overwrite to replace it"),
    ],
)
def test_predict_and_evaluate_check_their_flags_against_the_model(args, message, trained, easy_csv, tmp_path, capsys):
    """Refused in one line, exit 2, before the model loads (in this process: nothing is imported twice)."""
    existing = tmp_path / "earlier.jsonl"
    existing.write_text("kept\n")
    fill = {"{easy}": str(easy_csv), "{existing}": str(existing)}
    code = main([args[0], "--adapter", str(trained[0]), *[fill.get(a, a) for a in args[1:]]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert existing.read_text() == "kept\n"


def test_predict_and_evaluate_take_the_train_commands_shape_flags(trained, easy_csv, tmp_path, capsys):
    """The flags that described the data to `train` describe it again to predict and evaluate."""
    out, _ = trained
    shape = ["--text-column", "review", "--label-column", "sentiment", "--task", "single_label", "--header"]
    target = tmp_path / "eval.json"
    assert main(["evaluate", "--adapter", str(out), "--dataset", str(easy_csv), *shape, "--output", str(target)]) == 0
    assert json.loads(target.read_text())["rows"] == 240
    renamed = tmp_path / "renamed.csv"
    pd.read_csv(easy_csv).rename(columns={"review": "body"}).to_csv(renamed, index=False)
    predictions = tmp_path / "p.jsonl"
    args = ["predict", "--adapter", str(out), "--dataset", str(renamed), "--text-column", "body", "--task", "auto"]
    assert main([*args, "--output", str(predictions)]) == 0
    rows = pd.read_json(predictions, lines=True)
    assert len(rows) == 240 and set(rows["label"]) <= {"negative", "positive"}


def test_predict_overwrite_replaces_an_earlier_output(trained, tmp_path, capsys):
    earlier = tmp_path / "p.csv"
    earlier.write_text("an earlier run's\n")
    assert main(["predict", "--adapter", str(trained[0]), "great film", "--output", str(earlier), "--overwrite"]) == 0
    assert pd.read_csv(earlier)["text"].tolist() == ["great film"]


def test_a_model_trained_on_a_headerless_file_reads_its_files_headerless_again():
    from argparse import Namespace
    from types import SimpleNamespace

    from qlora_helpers.cli.flags import header_of

    def classifier_config(text, label):
        return SimpleNamespace(text_input=SimpleNamespace(columns=text), labels=SimpleNamespace(column=label))

    # GoEmotions' TSV: columns by position
    assert header_of(Namespace(header=None), classifier_config(["0"], "1")) is False
    assert header_of(Namespace(header=None), classifier_config(["review"], "sentiment")) is True
    assert header_of(Namespace(header=True), classifier_config(["0"], "1")) is True  # a flag given wins


def test_a_list_flag_given_twice_keeps_both_values():
    import argparse

    from qlora_helpers.cli.flags import add_config_flags

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["--target-modules", "query", "--target-modules", "key", "value"])
    assert args.target_modules == ["query", "key", "value"]


def test_the_model_card_names_the_base_model_without_this_machines_path(trained):
    out, _ = trained
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft\npipeline_tag: text-classification\ntags:\n")
    assert "base_model:" not in card  # the tiny model was built here: no Hub id to link
    assert "- Base model: `tiny-bert" in card and "a local model with no Hub id" in card
    assert "/" not in card.split("- Data: `")[1].split("`")[0] and str(out.parent.parent) not in card  # names only


class FakeHub:
    """huggingface_hub.HfApi's two calls `upload` makes, writing into a folder instead of the network."""

    root: Path
    fail: Exception | None = None

    def create_repo(self, repo_id, private=False, exist_ok=False):
        if self.fail:
            raise self.fail
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, ignore_patterns, commit_message):
        from huggingface_hub.utils import filter_repo_objects

        files = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
        for name in filter_repo_objects(files, ignore_patterns=ignore_patterns):
            target = self.root / repo_id / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((Path(folder_path) / name).read_bytes())


def test_upload_sends_the_run_and_its_card_but_not_checkpoints(trained, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    out = tmp_path / "run"
    shutil.copytree(trained[0], out)  # the shared run stays as trained: checkpoints are added to a copy
    FakeHub.root = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    (out / "checkpoints" / "checkpoint-9").mkdir(parents=True, exist_ok=True)
    (out / "checkpoints" / "checkpoint-9" / "optimizer.pt").write_bytes(b"x")
    assert main(["upload", str(out), "--repo-id", "me/imdb-qlora"]) == 0
    assert capsys.readouterr().out.strip() == f"uploaded {out} to https://huggingface.co/me/imdb-qlora"
    sent = {p.relative_to(tmp_path / "hub" / "me" / "imdb-qlora").as_posix() for p in (tmp_path / "hub").rglob("*.*")}
    assert {"README.md", "adapter_model.safetensors", "classifier_config.json", "metrics.json"} <= sent
    assert not [n for n in sent if n.startswith(("checkpoints/", "runs/", "plots/"))], sent
    assert "test_predictions.csv" not in sent  # the user's rows stay here


@pytest.mark.parametrize(
    "folder, repo, fail, message",
    [
        ("empty", "me/x", None, "is not a finished train, merge or export output (it lacks classifier_config.json, "),
        ("run", "no-namespace", None, "must be NAMESPACE/NAME"),
        ("run", "me/modèle", None, "must be NAMESPACE/NAME in ASCII"),
        ("run", "me/x..y", None, "no '--' or '..'"),
        ("run", "me/x.git", None, "must be NAMESPACE/NAME"),
        ("run", "me/x", "token", "log in with `hf auth login` or set HF_TOKEN"),
        ("run", "me/x", "offline", "the Hugging Face Hub cannot be reached (OfflineModeIsEnabled"),
    ],
)
def test_upload_refusals_are_one_line(folder, repo, fail, message, trained, tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub.errors import LocalTokenNotFoundError, OfflineModeIsEnabled

    out, _ = trained
    errors = {"token": LocalTokenNotFoundError("no token"), "offline": OfflineModeIsEnabled("offline mode is enabled")}
    FakeHub.root, FakeHub.fail = tmp_path / "hub", errors.get(fail)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    (tmp_path / "empty").mkdir()
    assert main(["upload", str(out if folder == "run" else tmp_path / "empty"), "--repo-id", repo]) == 2
    FakeHub.fail = None
    assert message in capsys.readouterr().err and not (tmp_path / "hub").exists()


def test_a_model_given_by_a_relative_path_is_found_from_any_folder(tiny_bert, easy_csv, tmp_path):
    out = tmp_path / "relative"
    args = train_args(tiny_bert.name, easy_csv, out, epochs=1.0)  # --model relative to the folder train runs in
    assert cli(*args, cwd=tiny_bert.parent).returncode == 0
    assert json.loads((out / "classifier_config.json").read_text())["base_model"] == str(tiny_bert.resolve())
    r = cli("predict", "--adapter", out, "a great film", cwd=tmp_path)  # another folder, as merge or a server runs
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["label"] in ("negative", "positive")


def test_overwrite_clears_what_only_the_replaced_run_wrote(tmp_path, capsys):
    from qlora_helpers.run_files import clear_replaced_outputs

    (tmp_path / "runs" / "old-events").mkdir(parents=True)
    for name in ("evaluation_dev.json", "misclassified_dev.csv", "metrics.json", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert sorted(clear_replaced_outputs(tmp_path)) == ["evaluation_dev.json", "misclassified_dev.csv", "runs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "notes.txt"]  # the run's own files stay
    assert "--overwrite: removed the replaced run's evaluation_dev.json" in capsys.readouterr().out


def test_rows_left_out_for_an_empty_text_or_label_are_said(trained, tmp_path):
    out, _ = trained
    rows = pd.DataFrame({"text": ["a great film", "", "a dull film", "the best film"], "label": [1, 0, None, 1]})
    rows.to_csv(tmp_path / "gaps.csv", index=False)
    r = cli("evaluate", "--adapter", out, "--dataset", tmp_path / "gaps.csv", "--output", tmp_path / "e.json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "note: 2 row(s) of" in r.stdout and json.loads((tmp_path / "e.json").read_text())["dropped_rows"] == 2
    r = cli("predict", "--adapter", out, "--dataset", tmp_path / "gaps.csv")
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 3  # a line per text; the empty one is named
    assert "note: 1 row(s) of" in r.stderr and "(rows 2, counted from 1 after the header)" in r.stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (["", "a good film"], "an empty text was given to classify"),
        (["--file", "{tmp}"], "is a folder; --file takes a text file"),
        (["--dataset", "{tmp}/in.csv", "--output", "{tmp}/in.csv", "--overwrite"], "is the input file"),
    ],
)
def test_predict_refuses_an_empty_text_a_folder_and_writing_over_its_input(extra, message, trained, tmp_path, capsys):
    out, _ = trained
    pd.DataFrame({"text": ["a great film"]}).to_csv(tmp_path / "in.csv", index=False)
    before = (tmp_path / "in.csv").read_bytes()
    assert main(["predict", "--adapter", str(out), *[e.format(tmp=tmp_path) for e in extra]]) == 2
    assert message in capsys.readouterr().err and (tmp_path / "in.csv").read_bytes() == before
