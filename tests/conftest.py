"""Shared fixtures: a tiny BERT saved to disk, an easy labelled dataset, and the one tiny-run recipe (TINY_RUN),
used in process (`tiny_config`, `tiny_settings`) and on the command line (`train_args`, `flags`)."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub, as in CI
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.pop("WANDB_API_KEY", None)
sys.path.insert(0, str(Path(__file__).parent))

from tiny_bert import build_tiny_bert  # noqa: E402

from qlora_helpers.presets import make_config  # noqa: E402

POSITIVE = ["great", "wonderful", "excellent", "loved", "best", "beautiful", "brilliant", "perfect"]
NEGATIVE = ["awful", "terrible", "worst", "boring", "waste", "bad", "stupid", "poor"]
NEUTRAL = [
    "the",
    "movie",
    "film",
    "story",
    "actor",
    "plot",
    "scene",
    "was",
    "and",
    "it",
    "this",
    "of",
    "character",
    "director",
    "time",
    "really",
    "just",
    "about",
    "some",
    "one",
]


def easy_reviews(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Reviews whose sentiment is carried by a few obvious words: learnable by a tiny model in a few steps."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.choices(NEUTRAL, k=10) + rng.choices(POSITIVE if label else NEGATIVE, k=3)
        rng.shuffle(words)
        rows.append({"review": " ".join(words), "sentiment": label})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def easy_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "easy.csv"
    easy_reviews().to_csv(path, index=False)
    return path


# The tiny run: a few seconds of the real recipe (NF4 + LoRA + Trainer + paged 8-bit AdamW) on the tiny BERT and
# the easy reviews, which it learns to >= 90% test accuracy. Every test that trains starts from it and states
# only what it changes.
TINY_RUN: dict[str, Any] = dict(
    max_length=32,
    epochs=6.0,
    lr=5e-3,
    batch_size=8,
    grad_accum=2,
    eval_batch_size=32,
    early_stopping_patience=0,
    report_to="none",
)
IMDB_LABELS = ["negative", "positive"]  # the names of easy_reviews' 0/1 sentiment


def tiny_settings(model, dataset, out, **changes) -> dict[str, Any]:
    """The tiny run of `model` on `dataset`, written to `out` (plots beside it), with `changes` on top; a change
    to None drops the setting (e.g. `label_names=None` for data that is not easy_reviews)."""
    out = Path(out)
    settings = {
        "model": str(model),
        "dataset": str(dataset),
        **TINY_RUN,
        "label_names": IMDB_LABELS,
        "output_dir": str(out),
        "plots_dir": str(out.parent / f"{out.name}-plots"),
        **changes,
    }
    return {k: v for k, v in settings.items() if v is not None}


def tiny_run_config(model, dataset, out, **changes):
    """`tiny_settings` as a validated TrainConfig of the full profile, for runs in this process."""
    return make_config("full", **tiny_settings(model, dataset, out, **changes))


def flags(settings: dict[str, Any]) -> list[str]:
    """Settings as `train` flags: `--name value`, a list as several values, True as `--name`, False as `--no-name`."""
    out: list[str] = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is False:
            out.append("--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out


def train_args(model, dataset, out, **changes) -> list[str]:
    """The `train` command line of the tiny run (as `tiny_settings` takes it)."""
    return ["train", *flags(tiny_settings(model, dataset, out, **changes))]


@pytest.fixture
def tiny_config(tiny_bert, easy_csv, tmp_path):
    """The tiny run as a TrainConfig writing under this test's tmp_path; `tiny_config(lr=1e-6)` changes a setting."""

    def make(**changes):
        return tiny_run_config(tiny_bert, easy_csv, tmp_path / "run", plots_dir=str(tmp_path / "plots"), **changes)

    return make
