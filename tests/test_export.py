"""ONNX export: the real tiny adapter exported, quantized and verified; predict/evaluate from the export without
torch; a deliberately broken export caught; bad input as one line and exit 2 with nothing left behind."""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime")

from qlora_helpers.cli import main  # noqa: E402
from qlora_helpers.errors import UserError  # noqa: E402
from qlora_helpers.infer import export as export_module  # noqa: E402
from qlora_helpers.infer.export import export_onnx  # noqa: E402
from qlora_helpers.infer.onnx_model import OnnxClassifier, TokenizerFile, require_extra  # noqa: E402
from qlora_helpers.modeling.classifier_config import ClassifierConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LONG = " ".join(["the plot was boring and the acting awful"] * 12 + ["but the end was wonderful and brilliant"] * 6)


@pytest.fixture(scope="module")
def adapter(tiny_bert, easy_csv, tmp_path_factory):
    from conftest import tiny_run_config

    from qlora_helpers.run import train_pipeline

    out = tmp_path_factory.mktemp("export") / "adapter"
    return train_pipeline(tiny_run_config(tiny_bert, easy_csv, out, save_checkpoints=False)).output_dir


@pytest.fixture(scope="module")
def exported(adapter):
    return export_onnx(adapter, adapter.parent / "onnx", quantize="int8")


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_export_writes_a_verified_folder_that_needs_nothing_else(adapter, exported):
    out = exported.output_dir
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "model_int8.onnx", "tokenizer.json", "classifier_config.json", "export_report.json"} <= names
    assert "README.md" in names and not leftovers(adapter.parent)
    report = json.loads((out / "export_report.json").read_text())
    fp32, int8 = report["verification"]
    assert report["verified"] and fp32["passed"] and int8["passed"]
    assert fp32["rows"] == len(pd.read_csv(adapter / "test_predictions.csv"))
    assert fp32["label_agreement"] == 1.0 and fp32["max_abs_diff"] < 1e-5 and fp32["metric"] == "accuracy"
    assert report["files"]["int8"]["mb"] < report["files"]["fp32"]["mb"] / 2
    card = (out / "README.md").read_text()
    assert "**Verified**" in card and "| fp32 |" in card and "| int8 |" in card
    assert f"predict --onnx {out.name} " in card and "--text-pair" not in card  # the folder, not its staging name
    assert card.startswith("---\nlibrary_name: onnx\n") and str(adapter.parent) not in card  # ready to publish
    assert ClassifierConfig.load(out) == ClassifierConfig.load(adapter)  # labels, thresholds, temperature travel
    mask = os.umask(0)
    os.umask(mask)
    assert (out.stat().st_mode & 0o777, (out / "model.onnx").stat().st_mode & 0o777) == (0o777 & ~mask, 0o666 & ~mask)


def test_onnx_logits_match_pytorch_including_long_texts_through_windows(adapter, exported):
    from qlora_helpers.infer.inference import load_for_inference

    torch_model = load_for_inference(adapter, "merged")
    onnx_model = OnnxClassifier.load(exported.output_dir, "fp32")
    texts = pd.read_csv(adapter / "test_predictions.csv")["text"].tolist() + [LONG]
    for mode in ("truncate", "window"):
        expected = torch_model.logits(texts, progress=False, long_text=mode)
        got = onnx_model.logits(texts, long_text=mode, batch_size=5)
        assert np.abs(got - expected).max() < 1e-4, mode
    windowed = onnx_model.logits([LONG], long_text="window")
    assert not np.allclose(windowed, onnx_model.logits([LONG]), atol=1e-4)  # the windows read past max_length
    assert OnnxClassifier.load(exported.output_dir).precision == "int8"  # served where the export has it


def test_the_tokenizer_file_cuts_texts_as_transformers_does(tiny_bert):
    from transformers import AutoTokenizer

    from qlora_helpers.data.tokens import encode_rows

    hf, ours = AutoTokenizer.from_pretrained(tiny_bert), TokenizerFile(tiny_bert)
    texts = [LONG, "a short one", "", "wonderful " * 40]
    for truncation in ("head", "head_tail"):
        for long_text in ("truncate", "window"):
            a_rows, a_owner = encode_rows(hf, texts, 24, truncation, None, long_text, None)
            b_rows, b_owner = encode_rows(ours, texts, 24, truncation, None, long_text, None)
            assert a_rows == b_rows and (a_owner is None) == (b_owner is None)
    assert encode_rows(hf, texts, 24, pairs=texts[::-1])[0] == encode_rows(ours, texts, 24, pairs=texts[::-1])[0]
    assert sorted(hf.all_special_ids) == ours.all_special_ids and hf.pad_token_id == ours.pad_token_id


def without_torch(code: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter that fails if anything imported torch."""
    check = "\nimport sys\nassert 'torch' not in sys.modules, 'torch was imported'\nprint('NO_TORCH')"
    return subprocess.run(
        [sys.executable, "-c", code + check], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_predict_and_evaluate_from_onnx_never_import_torch(adapter, exported, tmp_path):
    out = exported.output_dir
    predictions = tmp_path / "p.jsonl"
    evaluation = tmp_path / "e.json"
    code = (
        "from qlora_helpers.cli import main\n"
        f"assert main(['predict', '--onnx', {str(out)!r}, 'a wonderful film', {LONG!r}, '--long-text', 'window', "
        f"'--output', {str(predictions)!r}]) == 0\n"
        f"assert main(['evaluate', '--onnx', {str(out)!r}, '--dataset', {str(adapter / 'test_predictions.csv')!r}, "
        f"'--text-column', 'text', '--label-column', 'true', '--output', {str(evaluation)!r}]) == 0"
    )
    done = without_torch(code)
    assert "NO_TORCH" in done.stdout, done.stderr[-2000:]
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["a wonderful film", LONG]
    assert set(rows[0]["probabilities"]) == {"negative", "positive"}
    scores = json.loads(evaluation.read_text())
    int8 = json.loads((out / "export_report.json").read_text())["verification"][1]
    assert scores["accuracy"] == pytest.approx(int8["onnx"]) and scores["compute_dtype"] == "int8"
    # the same probabilities as the Python API on the int8 file, given the same batch
    expected = OnnxClassifier.load(out).predict(["a wonderful film", LONG], long_text="window")
    assert [r["probabilities"] for r in rows] == [e["probabilities"] for e in expected]


def test_a_broken_export_is_caught_marked_unverified_and_accepted_only_with_force(adapter, monkeypatch, capsys):
    real = export_module.to_onnx

    def broken(model, tokenizer, path):
        damaged = copy.deepcopy(model)
        damaged.classifier.weight.data = damaged.classifier.weight.data.flip(0)  # the two classes swapped
        return real(damaged, tokenizer, path)

    monkeypatch.setattr(export_module, "to_onnx", broken)
    target = adapter.parent / "broken"
    assert main(["export", "--adapter", str(adapter), "--output", str(target)]) == 1
    assert "missed its verification targets" in capsys.readouterr().err
    report = json.loads((target / "export_report.json").read_text())
    assert not report["verified"] and not report["verification"][0]["passed"]
    assert report["verification"][0]["max_abs_diff"] > 1e-3 and report["verification"][0]["label_agreement"] < 0.5
    assert "**Unverified**" in (target / "README.md").read_text()
    assert main(["export", "--adapter", str(adapter), "--output", str(target), "--overwrite", "--force"]) == 0
    assert "accepted with --force" in (target / "README.md").read_text()
    capsys.readouterr()
    assert main(["predict", "--onnx", str(target), "a wonderful film"]) == 2  # never served unasked
    assert "missed its export targets in every precision" in capsys.readouterr().err
    assert main(["predict", "--onnx", str(target), "--precision", "fp32", "a wonderful film"]) == 0
    assert "serving model.onnx" in capsys.readouterr().err


def test_an_int8_file_that_missed_its_targets_is_served_only_when_asked_for(exported, tmp_path, capsys):
    import shutil

    folder = tmp_path / "onnx"
    shutil.copytree(exported.output_dir, folder)
    report = json.loads((folder / "export_report.json").read_text())
    report["verification"][1]["passed"] = report["verified"] = False
    (folder / "export_report.json").write_text(json.dumps(report))
    assert OnnxClassifier.load(folder).precision == "fp32"
    assert "its int8 file missed its export targets" in capsys.readouterr().err
    assert main(["predict", "--onnx", str(folder), "--precision", "int8", "a wonderful film"]) == 0
    assert "serving model_int8.onnx" in capsys.readouterr().err
    assert main(["predict", "--adapter", str(folder), "--precision", "int8", "a wonderful film"]) == 2


def run_cli(args, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


def test_bad_exports_are_one_line_and_leave_nothing(adapter, exported, tmp_path, capsys):
    not_a_model = tmp_path / "notes"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    code, err = run_cli(["export", "--adapter", not_a_model, "--output", tmp_path / "o1"], capsys)
    assert code == 2 and err.count("\n") == 0 and "classifier_config.json" in err

    moved = tmp_path / "moved"
    shutil.copytree(adapter, moved, ignore=shutil.ignore_patterns("checkpoints"))
    record = json.loads((moved / "classifier_config.json").read_text())
    record["base_model"] = str(tmp_path / "gone" / "tiny-bert")
    (moved / "classifier_config.json").write_text(json.dumps(record))
    code, err = run_cli(["export", "--adapter", moved, "--output", tmp_path / "o2"], capsys)
    assert code == 2 and "base model" in err and "does not exist" in err

    code, err = run_cli(["export", "--adapter", adapter, "--output", exported.output_dir], capsys)
    assert code == 2 and "--overwrite" in err and err.count("\n") == 0
    code, err = run_cli(["export", "--adapter", adapter, "--output", not_a_model, "--overwrite"], capsys)
    assert code == 2 and "already holds files" in err  # --overwrite replaces only an earlier export
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists() and not leftovers(tmp_path)
    assert (not_a_model / "notes.txt").read_text() == "hello"


PARTS = [
    ("classifier_config.json", "no classifier_config.json"),
    ("tokenizer.json", "no tokenizer"),
    ("model_int8.onnx", "exported without --quantize int8; drop --precision int8"),
]


@pytest.mark.parametrize("missing, named", PARTS)
def test_an_onnx_folder_missing_a_part_is_named_at_load(exported, tmp_path, capsys, missing, named):
    copy_dir = tmp_path / "copy"
    shutil.copytree(exported.output_dir, copy_dir)
    (copy_dir / missing).unlink()
    int8 = ["--precision", "int8"] if missing == "model_int8.onnx" else []
    code, err = run_cli(["predict", "--onnx", copy_dir, *int8, "some text"], capsys)
    assert code == 2 and named in err and err.count("\n") == 0
    with pytest.raises(UserError, match=named.split(";")[0]):
        OnnxClassifier.load(copy_dir, "int8" if int8 else None)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _config_change(**changes):
    def change(path: Path) -> None:
        record = json.loads(path.read_text())
        for key, value in changes.items():
            record["labels" if key == "names" else key] = (
                {**record["labels"], "names": value, "values": list(range(len(value)))} if key == "names" else value
            )
        path.write_text(json.dumps(record))

    return change


DAMAGED = [
    ("tokenizer.json", _truncate, "tokenizer files of"),
    ("tokenizer_config.json", _truncate, "tokenizer files of"),
    ("export_report.json", _truncate, "export_report.json is damaged"),
    ("classifier_config.json", _config_change(names=["negative", "positive", "neutral"]), "gives 2 outputs but"),
    ("classifier_config.json", _config_change(temperature=float("inf")), "temperature inf must be a positive finite"),
    ("classifier_config.json", _config_change(temperature="2"), "temperature '2' must be a positive finite"),
]


@pytest.mark.parametrize("part, damage, named", DAMAGED)
def test_an_onnx_folder_with_a_damaged_part_is_one_line_not_a_traceback_or_a_wrong_answer(
    exported, tmp_path, capsys, part, damage, named
):
    copy_dir = tmp_path / "copy"
    shutil.copytree(exported.output_dir, copy_dir)
    damage(copy_dir / part)
    code, err = run_cli(["predict", "--onnx", copy_dir, "a wonderful film"], capsys)
    assert code == 2 and named in err and err.count("\n") == 0, err


@pytest.mark.parametrize(
    "part, damage", [("adapter_config.json", _truncate), ("adapter_model.safetensors", lambda p: p.write_bytes(b""))]
)
def test_a_damaged_adapter_file_is_named_before_the_base_model_loads(adapter, tmp_path, capsys, part, damage):
    copy_dir = tmp_path / "run"
    shutil.copytree(adapter, copy_dir, ignore=shutil.ignore_patterns("checkpoints"))
    damage(copy_dir / part)
    for argv in (
        ["export", "--adapter", copy_dir, "--output", tmp_path / "onnx"],
        ["predict", "--adapter", copy_dir, "x"],
    ):
        code, err = run_cli(argv, capsys)
        assert code == 2 and f"{part} is damaged" in err and err.count("\n") == 0, err
    assert not (tmp_path / "onnx").exists() and not leftovers(tmp_path)


def test_a_missing_extra_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a)
    )
    with pytest.raises(UserError, match=r"pip install -r requirements-export.txt, in the project's folder"):
        require_extra("onnx", "onnxruntime")


def task_data(kind: str, path: Path) -> dict:
    """A tiny labelled file of one task and the settings that train on it."""
    from conftest import easy_reviews
    from test_calibration import easy_topics

    if kind == "multi_label":
        easy_topics(120).to_csv(path, index=False)
        return {"task": "multi_label", "label_names": None}
    frame = easy_reviews(120)
    if kind == "pairs":
        second = frame["review"][::-1].to_numpy()
        frame = pd.DataFrame({"text": frame["review"], "text_pair": second, "label": frame["sentiment"]})
        frame.to_csv(path, index=False)
        return {"text_column": "text", "text_pair_column": "text_pair", "label_column": "label", "label_names": None}
    frame["sentiment"] = frame["sentiment"] * 3 + np.linspace(0.1, 0.9, len(frame))  # scores with fractions
    frame.to_csv(path, index=False)
    return {"task": "regression", "label_names": None}


@pytest.mark.parametrize("kind", ["multi_label", "pairs", "regression"])
def test_every_task_exports_verified_and_predicts_as_pytorch(tiny_bert, tmp_path, kind):
    from conftest import tiny_run_config

    from qlora_helpers.infer.inference import load_for_inference
    from qlora_helpers.run import train_pipeline

    settings = task_data(kind, tmp_path / "data.csv")
    data, out = tmp_path / "data.csv", tmp_path / "run"
    cfg = tiny_run_config(tiny_bert, data, out, epochs=2.0, save_checkpoints=False, **settings)
    run = train_pipeline(cfg).output_dir
    result = export_onnx(run, tmp_path / "onnx")
    (fp32,) = result.report["verification"]
    assert result.verified and fp32["label_agreement"] == 1.0 and fp32["max_abs_diff"] < 1e-4, fp32
    assert fp32["metric"].startswith({"multi_label": "f1_macro", "pairs": "accuracy", "regression": "spearman"}[kind])
    texts, pairs = ["goal match and song today", "the worst film"], None
    if kind == "pairs":
        pairs = ["a wonderful story", "boring and bad"]
    expected = load_for_inference(run, "merged").predict(texts, progress=False, pairs=pairs)
    got = OnnxClassifier.load(result.output_dir).predict(texts, pairs=pairs)
    for e, g in zip(expected, got):
        assert e.keys() == g.keys() and e.get("label") == g.get("label") and e.get("labels") == g.get("labels")
        shown = [e["score"]] if kind == "regression" else list(e["probabilities"].values())
        onnx_shown = [g["score"]] if kind == "regression" else list(g["probabilities"].values())
        assert np.allclose(shown, onnx_shown, atol=1e-4)


def test_the_serving_summary_compares_int8_with_pytorch():
    from benchmarks.kinds.onnx_serving import summarize

    def record(form, tps, mb):
        latency = {"median": 10.0, "p90": 12.0}
        speed = {"texts_per_second_batch32": tps}
        return {"form": form, "latency_ms_batch1": latency, **speed, "file_mb": mb, "peak_rss_mb": 100.0}

    int8 = [record("onnx_int8", t, 20.0) for t in (25.0, 30.0, 35.0)]
    rounds = [[record("pytorch_fp32", 10.0, 80.0), record("onnx_fp32", 12.0, 80.0), i] for i in int8]
    summary = summarize(rounds, 32)
    assert summary["onnx_int8"]["texts_per_second_batch32"] == 30.0 and summary["onnx_int8"]["rounds"] == 3
    assert summary["int8_vs_pytorch"]["throughput_ratio"] == 3.0 and summary["int8_vs_pytorch"]["size_ratio"] == 0.25


def test_a_verify_file_of_the_other_input_shape_names_the_file_not_a_flag_export_lacks(adapter, tmp_path, capsys):
    table = pd.read_csv(adapter / "test_predictions.csv")
    table["text_pair"] = table["text"]  # the test table a sentence-pair run writes
    table.to_csv(tmp_path / "pairs_test.csv", index=False)
    argv = [
        "export",
        "--adapter",
        adapter,
        "--output",
        tmp_path / "onnx",
        "--verify-file",
        tmp_path / "pairs_test.csv",
    ]
    code, err = run_cli(argv, capsys)
    assert code == 2 and "test table of a sentence-pair model" in err and "--text-pair-column" not in err, err
    assert not (tmp_path / "onnx").exists() and not leftovers(tmp_path)


def test_int8_regression_is_judged_as_int8_classifiers_are_not_by_the_fp32_tolerance():
    """int8 answers to agreement (scores within 1% of the range) and the metric's drop, as a classifier's int8 does;
    only fp32 is held to a probability-sized difference (1e-3 of the range)."""
    from qlora_helpers import tasks
    from qlora_helpers.data.text_input import TextInput
    from qlora_helpers.infer import verify

    regression = tasks.get("regression")
    scores = pd.Series(np.linspace(0.0, 5.0, 200))
    space = regression.label_space(scores)
    classifier_config = ClassifierConfig("regression", space, TextInput(("text",), None), 32, "head", "tiny")
    reference = ((scores.to_numpy() - space.extras["mean"]) / space.extras["std"])[:, None]
    nudged = reference + 0.004  # 0.0115 on the 0-5 scale: inside 1% of the range, beyond 1e-3 of it
    frame = pd.DataFrame({"text": ["x"] * len(scores), "label": scores})
    int8 = verify.compare(classifier_config, frame, reference, nudged, "int8")
    fp32 = verify.compare(classifier_config, frame, reference, nudged, "fp32")
    assert int8["passed"] and "max_abs_diff" not in int8["targets"] and int8["label_agreement"] == 1.0
    assert not fp32["passed"] and fp32["targets"]["max_abs_diff"] == 0.005 and fp32["max_abs_diff"] > 0.005
    scrambled = reference[::-1] * 0.2  # far off: agreement and Spearman both fall
    assert not verify.compare(classifier_config, frame, reference, scrambled, "int8")["passed"]


def test_the_onnx_file_given_instead_of_its_folder_names_the_folder(exported, capsys):
    code, err = run_cli(["predict", "--onnx", exported.output_dir / "model.onnx", "a film"], capsys)
    assert code == 2 and f"--onnx takes the export's folder ({exported.output_dir})" in err


def test_an_export_whose_metric_is_undefined_where_pytorch_had_one_fails():
    from qlora_helpers.infer.verify import metric_drop

    assert metric_drop(-0.37, float("nan")) is None  # tied scores: Spearman NaN, the export lost the ranking
    assert metric_drop(float("nan"), float("nan")) == 0.0
    assert metric_drop(0.9135, 0.9080) == pytest.approx(0.55)


def test_a_verify_file_without_the_models_columns_names_them_not_trains_flags(adapter, tmp_path, capsys):
    no_label = tmp_path / "unlabelled.csv"
    no_label.write_text("review\na fine film\nan awful film\n")
    code, err = run_cli(
        ["export", "--adapter", adapter, "--output", tmp_path / "o", "--verify-file", no_label], capsys
    )
    assert code == 2 and "cannot be read as this model's data" in err and "['review', 'sentiment']" in err
    assert "--label-column" not in err and "--no-header" not in err


def serving_site(folder: Path) -> Path:
    """What `pip install -r requirements-serve.txt` puts on a serving box, as links into this environment's
    site-packages: the listed distributions and everything they require, and nothing else (no torch)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    folder.mkdir()
    names = [line.split("==")[0].strip() for line in (ROOT / "requirements-serve.txt").read_text().splitlines()]
    todo, seen = [n for n in names if n and not n.startswith(("#", "-"))], set()
    while todo:
        dist = metadata.distribution(todo.pop())
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        for top in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists() and top != "__pycache__":
                (folder / top).symlink_to(source)
    assert "torch" not in seen and "transformers" not in seen, seen
    return folder


def test_a_serving_box_without_torch_predicts_and_evaluates_from_the_export(adapter, exported, tmp_path):
    import subprocess

    site = serving_site(tmp_path / "site")
    test_table = adapter / "test_predictions.csv"
    code = (
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('torch') is None\n"
        "from qlora_helpers.cli import main\n"
        f"assert main(['predict', '--onnx', {str(exported.output_dir)!r}, 'a wonderful film']) == 0\n"
        f"assert main(['evaluate', '--onnx', {str(exported.output_dir)!r}, '--dataset', {str(test_table)!r}, "
        f"'--text-column', 'text', '--label-column', 'true', '--output', {str(tmp_path / 'e.json')!r}]) == 0\n"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "e.json").read_text())["rows"] == len(pd.read_csv(test_table))
