"""Shared fixtures: a tiny BERT saved to disk, an easy labelled dataset, a tiny-run configuration."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub, as in CI
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.pop("WANDB_API_KEY", None)
sys.path.insert(0, str(Path(__file__).parent))

from tiny_bert import build_tiny_bert  # noqa: E402

from qlora_helpers.config import make_config  # noqa: E402

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


@pytest.fixture
def tiny_config(tiny_bert, easy_csv, tmp_path):
    """A few-second CPU run of the real recipe (NF4 + LoRA + Trainer + paged 8-bit AdamW) on the tiny BERT."""

    def make(**changes):
        settings = dict(
            model=str(tiny_bert),
            dataset=str(easy_csv),
            max_length=32,
            epochs=6.0,
            lr=5e-3,
            batch_size=8,
            grad_accum=2,
            eval_batch_size=32,
            output_dir=str(tmp_path / "run"),
            plots_dir=str(tmp_path / "plots"),
            report_to="none",
            label_names=["negative", "positive"],
        )
        settings.update(changes)
        return make_config("full", **settings)

    return make
