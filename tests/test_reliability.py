"""Hardware and environment edge cases, provoked for real: out of memory, no GPU, missing or old packages,
non-UTF-8 bytes and very long texts. Each ends in one line and exit code 2, or a counted, reported clean-up."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import train_args as tiny_train_args

from qlora_helpers import cli, pipeline
from qlora_helpers.data.prepare import DataSettings, prepare_data
from qlora_helpers.data.tokens import tokenize_splits, truncation_report
from qlora_helpers.dependencies import check_dependencies
from qlora_helpers.errors import UserError
from qlora_helpers.modeling.quantization import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def train_args(tiny_bert, easy_csv, out, *extra, **changes):
    """The tiny run for two epochs (enough to show it fails or trains), plus `extra` flags."""
    return [*tiny_train_args(tiny_bert, easy_csv, out, **{"epochs": 2.0, **changes}), *extra]


def errors(capsys) -> list[str]:
    """The `error:` lines on stderr (progress bars share it); the last stderr line must be one of them."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), lines[-5:]
    return [line for line in lines if line.startswith("error")]


@pytest.fixture
def memory_limit(monkeypatch):
    """Every model built by the pipeline raises CUDA's out-of-memory error for training batches above 4 rows,
    as a GPU too small for the micro-batch would; evaluation batches are left alone."""
    seen = []
    build = pipeline.build_model

    def too_small_gpu(module, args, kwargs):
        rows = (kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]).shape[0]
        if module.training:
            seen.append(rows)
            if rows > 4:
                raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB for {rows} rows")

    def build_with_limit(*a, **kw):
        built = build(*a, **kw)
        built.model.register_forward_pre_hook(too_small_gpu, with_kwargs=True)
        return built

    monkeypatch.setattr(pipeline, "build_model", build_with_limit)
    return seen


def test_out_of_memory_names_the_knobs_and_damages_nothing(tiny_bert, easy_csv, tmp_path, memory_limit, capsys):
    out = tmp_path / "run"
    out.mkdir()
    earlier = {"test_accuracy": 0.91}  # a finished run that a failing --overwrite must not destroy
    (out / "metrics.json").write_text(json.dumps(earlier))
    code = cli.main(train_args(tiny_bert, easy_csv, out, "--overwrite"))
    err = errors(capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: out of GPU memory during training (micro-batch 8, max_length 32")
    for knob in (
        "--batch-size",
        "--grad-accum",
        "effective batch (16)",
        "--max-length",
        "--gradient-checkpointing",
        "--oom-retry",
    ):
        assert knob in err[0]
    assert memory_limit == [8]
    assert json.loads((out / "metrics.json").read_text()) == earlier


def test_oom_retry_halves_the_micro_batch_and_keeps_the_effective_batch(
    tiny_bert, easy_csv, tmp_path, memory_limit, capsys
):
    out = tmp_path / "run"
    code = cli.main(train_args(tiny_bert, easy_csv, out, "--oom-retry", epochs=6.0))
    printed = capsys.readouterr().out
    assert code == 0
    assert "retrying from the start with micro-batch 4 x accumulation 4 (effective batch 16)" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["config"]["batch_size"], metrics["config"]["grad_accum"]) == (4, 4)
    assert metrics["effective_batch_size"] == 16
    assert json.loads((out / "training_config.json").read_text())["batch_size"] == 4
    assert set(memory_limit) == {8, 4} and memory_limit[0] == 8
    assert metrics["test_accuracy"] >= 0.8  # the restarted run trained properly


def test_a_gpu_only_dtype_on_the_cpu_stops_up_front(tiny_bert, easy_csv, tmp_path, capsys):
    assert not torch.cuda.is_available()
    code = cli.main(train_args(tiny_bert, easy_csv, tmp_path / "run", "--compute-dtype", "float16"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == (
        "error: --compute-dtype float16 needs a GPU and none was found; use auto or float32 on the CPU"
    )
    assert not (tmp_path / "run").exists()


def test_the_cpu_run_says_what_differs_without_a_gpu(tiny_config, capsys):
    pipeline.start(tiny_config(oom_retry=True))
    printed = capsys.readouterr().out
    assert "no GPU found: running on the CPU in fp32" in printed
    assert "paged_adamw_8bit on the CPU: paging needs CUDA" in printed
    assert "--oom-retry has nothing to do on the CPU" in printed


def test_a_too_old_package_is_named_with_the_install_command(tiny_bert, easy_csv, tmp_path):
    fake = tmp_path / "site" / "peft-0.4.0.dist-info"  # found before the real peft by importlib.metadata
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: peft\nVersion: 0.4.0\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT)]), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "qlora_helpers", *train_args(tiny_bert, easy_csv, tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: peft 0.4.0 is too old (needs >= 0.21 for LoRA on bitsandbytes 4-bit layers as "
        "tested): pip install -r requirements.txt (or pip install -U 'peft>=0.21')"
    )


def test_a_missing_package_is_named_with_the_install_command(monkeypatch):
    from importlib import metadata

    real = metadata.version

    def version(name):
        if name == "bitsandbytes":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    with pytest.raises(
        UserError,
        match=r"^bitsandbytes is not installed; it is needed for NF4 .*: "
        r"pip install -r requirements.txt \(or pip install 'bitsandbytes>=0.50'\)$",
    ):
        check_dependencies()


def test_an_unimportable_package_ends_in_one_line(tiny_bert, easy_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now raises ImportError
    code = cli.main(train_args(tiny_bert, easy_csv, tmp_path / "run"))
    err = errors(capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: cannot import datasets") and err[0].endswith("pip install -r requirements.txt")


def test_non_utf8_bytes_are_replaced_counted_and_reported(tmp_path):
    rows = [f'"a fine film number {i}",{i % 2}' for i in range(30)]
    rows[3] = '"caf\xe9 au lait, a lovely film",1'
    rows[7] = '"\xff\xfe broken bytes",0'
    path = tmp_path / "latin1.csv"
    path.write_bytes(("review,sentiment\n" + "\n".join(rows) + "\n").encode("latin-1"))
    data = prepare_data(DataSettings(str(path)))
    assert sum(len(v) for v in data.splits.values()) == 30  # nothing dropped
    assert any(note.startswith("2 row(s) of latin1.csv held bytes that are not UTF-8") for note in data.notes)
    assert "held bytes that are not UTF-8" in data.describe()
    texts = pd.concat(data.splits.values())["text"]
    assert texts.str.contains("caf\ufffd au lait").sum() == 1


def test_very_long_texts_are_truncated_and_counted(tiny_bert, tmp_path, capsys):
    long_text = " ".join(["wonderful film"] * 50_000)  # 100,000 words in one review
    frame = pd.DataFrame(
        {
            "text": [long_text] * 3 + ["bad film"] * 9 + ["great film"] * 9 + [long_text] * 3,
            "label": [1] * 3 + [0] * 9 + [1] * 9 + [0] * 3,
        }
    )
    path = tmp_path / "long.parquet"
    frame.to_parquet(path)
    data = prepare_data(DataSettings(str(path)))
    tokenized = tokenize_splits(data, load_tokenizer(str(tiny_bert)), 32)
    assert max(len(ids) for split in tokenized.values() for ids in split["input_ids"]) == 32
    cut = sum(len(ids) == 32 for split in tokenized.values() for ids in split["input_ids"])
    assert cut == 6
    report = truncation_report(tokenized, 32)
    assert report.startswith("texts cut to max_length=32 tokens (beginning kept): train ")
    assert report in capsys.readouterr().out
