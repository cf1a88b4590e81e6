"""Every encoder family through the real 4-bit path with no --target-modules: the head (what the checkpoint
lacks) stays in full precision, is trained and saved with the adapter; LoRA sits on the attention and
feed-forward projections; and train -> merge -> predict -> evaluate runs end to end from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from tiny_models import FAMILIES, build_tiny_encoder

from qlora_helpers.hardware import Hardware
from qlora_helpers.modeling import compiled, encoders
from qlora_helpers.modeling.builder import build_model
from qlora_helpers.presets import make_config

CPU = Hardware("cpu", "cpu", torch.float32, "test")
LABELS = {0: "negative", 1: "positive"}
SINGLE = "single_label_classification"

# LoRA targets with all-linear: the families' attention and feed-forward projections, plus the pretrained
# linear layers outside the head that some have (BERT's pooler `dense`, ELECTRA's `embeddings_project`)
TARGETS = {
    "bert": ["dense", "key", "query", "value"],
    "distilbert": ["k_lin", "lin1", "lin2", "out_lin", "q_lin", "v_lin"],
    "roberta": ["dense", "key", "query", "value"],
    "electra": ["dense", "embeddings_project", "key", "query", "value"],
    "deberta-v2": ["dense", "key_proj", "query_proj", "value_proj"],
    "modernbert": ["Wi", "Wo", "Wqkv", "dense"],  # `dense`: the MLM checkpoint's head.dense, pretrained
    "modernbert-bare": ["Wi", "Wo", "Wqkv"],
}
HEADS = {  # new at load from the checkpoint a Hub repository of the family holds
    "bert": ["classifier"],
    "distilbert": ["classifier", "pre_classifier"],
    "roberta": ["classifier"],  # classifier.dense and classifier.out_proj
    "electra": ["classifier"],  # classifier.dense and classifier.out_proj
    "deberta-v2": ["classifier", "pooler"],
    "modernbert": ["classifier"],  # head.dense/head.norm come with the masked-LM checkpoint
    "modernbert-bare": ["classifier", "head"],  # a bare encoder has none: the whole head is new
}


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory):
    built: dict[tuple[str, bool], Path] = {}

    def get(name: str, bare: bool = False) -> Path:
        if (name, bare) not in built:
            built[name, bare] = build_tiny_encoder(
                name, tmp_path_factory.mktemp(f"{name}{'-bare' if bare else ''}"), bare
            )
        return built[name, bare]

    return get


def config_for(path: Path, tmp_path: Path, **changes):
    settings = dict(
        model=str(path),
        output_dir=str(tmp_path / "run"),
        plots_dir=str(tmp_path / "plots"),
        report_to="none",
        compile="off",
        max_length=32,
    )
    return make_config("full", **{**settings, **changes})


@pytest.mark.parametrize("family", sorted(FAMILIES) + ["modernbert-bare"])
def test_head_is_full_precision_trained_and_saved_and_lora_is_on_every_projection(family, encoder_dir, tmp_path):
    kind = FAMILIES[family.removesuffix("-bare")]
    built = build_model(config_for(encoder_dir(kind.name, family != kind.name), tmp_path), CPU, 2, LABELS, SINGLE)
    assert built.head_modules == HEADS[family] and built.target_modules == TARGETS[family]
    assert set(kind.adapted) <= set(built.target_modules)
    assert not built.compiled and not built.graphs
    inner = built.model.base_model.model  # the transformers model under peft

    head_params = {n: p for n, p in inner.named_parameters() if encoders.in_modules(n, built.head_modules)}
    trained_head = {n: p for n, p in head_params.items() if ".modules_to_save." in n}
    assert trained_head and all(p.requires_grad and p.dtype == torch.float32 for p in trained_head.values())
    for name in built.head_modules:  # the trained copy covers every tensor of the head module
        wrapper = inner.get_submodule(name)
        assert {n for n, _ in wrapper.original_module.named_parameters()} == {
            n for n, _ in wrapper.modules_to_save["default"].named_parameters()
        }
        assert not any(isinstance(m, bnb.nn.Linear4bit) for m in wrapper.modules())  # no head layer is 4-bit
    trainable = {n for n, p in built.model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if ".lora_" in n}
    assert trainable == lora | {n for n in trainable if ".modules_to_save." in n}
    assert built.counts["trainable_params"] == sum(p.numel() for p in built.model.parameters() if p.requires_grad)

    # LoRA on every linear layer outside the head, all of them 4-bit; none inside the head
    adapted = {n for n, m in inner.named_modules() if hasattr(m, "lora_A")}
    linear = {n.removesuffix(".base_layer") for n, m in inner.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert adapted == linear and {n.rsplit(".", 1)[-1] for n in adapted} == set(TARGETS[family])
    assert not any(encoders.in_modules(n, built.head_modules) for n in adapted)
    name, layer = encoders.first_4bit_layer(built.model)  # the tutorial's look inside a 4-bit layer
    assert isinstance(layer, bnb.nn.Linear4bit) and ".0." in name
    assert name.removesuffix(".base_layer").rsplit(".", 1)[-1] == kind.adapted[0]

    built.model.save_pretrained(tmp_path / "adapter")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as f:
        saved = set(f.keys())
    for head_param in trained_head:  # saved as base_model.model.<module>.<tensor>, the wrapper's copy
        plain = head_param.replace(".modules_to_save.default", "")
        assert f"base_model.model.{plain}" in saved, (plain, sorted(saved)[:8])
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert set(built.head_modules) <= set(config["modules_to_save"])
    assert sorted(config["target_modules"]) == TARGETS[family]


def test_head_follows_the_checkpoint_not_the_family(encoder_dir):
    """A bare ModernBERT encoder has no `head.dense` to load, unlike its masked-LM checkpoint: then it is head."""
    assert encoders.head_modules(str(encoder_dir("modernbert", bare=True))) == ["classifier", "head"]
    assert encoders.head_modules(str(encoder_dir("modernbert"))) == ["classifier"]
    model = encoders.meta_classifier(str(encoder_dir("bert")))
    keys = encoders.checkpoint_keys(str(encoder_dir("bert")))
    # old checkpoints (bert-base-uncased) name LayerNorm weights gamma/beta: renamed as transformers does
    legacy = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta") for k in keys
    }
    assert encoders.new_parameter_names(model, legacy) == {"classifier.weight", "classifier.bias"}
    # a bare encoder without the prefix and without a pooler: the pooler is new too
    bare = {k.removeprefix("bert.") for k in keys if k.startswith("bert.") and ".pooler." not in k}
    assert encoders.covering_modules(model, encoders.new_parameter_names(model, bare)) == ["bert.pooler", "classifier"]


def test_reference_target_modules_still_adapt_only_query_and_value(encoder_dir, tmp_path):
    cfg = config_for(encoder_dir("bert"), tmp_path, target_modules=["query", "value"])
    built = build_model(cfg, CPU, 2, LABELS, SINGLE)
    assert built.target_modules == ["query", "value"]
    adapted = {n.rsplit(".", 1)[-1] for n, m in built.model.named_modules() if hasattr(m, "lora_A")}
    assert adapted == {"query", "value"}


def test_an_unknown_target_module_lists_the_models_linear_layers(encoder_dir, easy_csv, tmp_path, capsys):
    from qlora_helpers.cli import main

    code = main(
        ["train", "--model", str(encoder_dir("distilbert")), "--target-modules", "query", "value"]
        + ["--max-length", "32", "--dataset", str(easy_csv), "--max-samples", "60"]
        + ["--output-dir", str(tmp_path / "run"), "--plots-dir", str(tmp_path / "plots"), "--report-to", "none"]
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, errors
    assert errors[0] == (
        "error: target module(s) ['query', 'value'] not found; this model's linear layers are "
        "['k_lin', 'lin1', 'lin2', 'out_lin', 'q_lin', 'v_lin'] - pass some of them with --target-modules "
        "(or all-linear)"
    )


def test_the_4bit_load_drops_transformers_report_of_a_head_to_train(encoder_dir):
    """At inference the trained head is loaded right after; "newly initialized ... TRAIN this model" would be false."""
    import logging

    from transformers import AutoModelForSequenceClassification

    from qlora_helpers.modeling.quantization import load_4bit_model

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record.getMessage())

    keep, logger = Keep(), logging.getLogger("transformers.modeling_utils")
    logger.addHandler(keep)
    try:
        AutoModelForSequenceClassification.from_pretrained(encoder_dir("deberta-v2"), num_labels=2)
        assert any("LOAD REPORT" in r and "MISSING" in r for r in keep.records)  # what transformers says alone
        keep.records.clear()
        load_4bit_model(str(encoder_dir("deberta-v2")), 2, LABELS, torch.float32, "cpu")
    finally:
        logger.removeHandler(keep)
    assert not any("LOAD REPORT" in r for r in keep.records), keep.records


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_train_merge_predict_evaluate_from_the_command_line(family, encoder_dir, easy_csv, tmp_path):
    from qlora_helpers.cli import main
    from qlora_helpers.infer.inference import load_for_inference

    out, merged = tmp_path / "adapter", tmp_path / "merged"
    train = ["train", "--model", str(encoder_dir(family)), "--dataset", str(easy_csv), "--max-samples", "60"]
    train += ["--epochs", "1", "--max-length", "32", "--batch-size", "8", "--eval-batch-size", "16"]
    train += ["--report-to", "none", "--plots-dir", str(tmp_path / "plots"), "--output-dir", str(out)]
    assert main(train + ["--label-names", "negative", "positive", "--lr", "5e-3"]) == 0
    assert (out / "metrics.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert set(HEADS[family]) <= set(json.loads((out / "adapter_config.json").read_text())["modules_to_save"])

    assert main(["merge", "--adapter", str(out), "--output", str(merged), "--dtype", "float32"]) == 0
    texts = [f"{w} movie" for w in ("great", "awful", "the", "boring", "wonderful plot", "stupid and bad")]
    adapter_logits = load_for_inference(out, "4bit").logits(texts, progress=False)
    merged_logits = load_for_inference(merged).logits(texts, progress=False)
    assert (merged_logits.argmax(-1) == adapter_logits.argmax(-1)).all()
    assert abs(merged_logits - adapter_logits).max() < 1e-4

    assert (
        main(["predict", "--adapter", str(out), "--dataset", str(easy_csv), "--output", str(tmp_path / "p.csv")]) == 0
    )
    assert (tmp_path / "p.csv").is_file()
    report = tmp_path / "evaluation.json"
    assert main(["evaluate", "--adapter", str(merged), "--dataset", str(easy_csv), "--output", str(report)]) == 0
    assert json.loads(report.read_text())["rows"] == 240


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_compiled_layers_train_like_eager_in_every_family(family, encoder_dir, tmp_path):
    """Each family's layers compile for training and give eager's gradients; an unpadded batch (no mask, filled
    in where that is the same attention) and a padded one reach the layers as one kind of input, so the second
    compiles nothing new; `uncompile` restores the eager layers."""
    from torch._dynamo.utils import counters

    cfg = config_for(encoder_dir(family), tmp_path, lora_dropout=0.0)
    eager = build_model(cfg, CPU, 2, LABELS, SINGLE).model
    fast = build_model(cfg, CPU, 2, LABELS, SINGLE).model
    assert compiled.compile_for_training(fast) == 2
    ids = torch.randint(1000, 2000, (4, 16), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 0, 1])
    graphs = counters["stats"]["unique_graphs"]
    for model in (eager, fast):
        for module in model.modules():  # dropout draws differ between eager and compiled code
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        model.train()
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
    assert counters["stats"]["unique_graphs"] > graphs  # the training step did run compiled code
    grads = {n: p.grad for n, p in fast.named_parameters() if p.requires_grad}
    for name, p in eager.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6)

    graphs = counters["stats"]["unique_graphs"]
    padded = torch.ones_like(ids)
    padded[0, 10:] = 0
    fast(input_ids=ids, attention_mask=padded, labels=labels).loss.backward()
    assert counters["stats"]["unique_graphs"] == graphs
    assert compiled.uncompile(fast) == 2
    assert all("forward" not in vars(layer) for layer in compiled.encoder_layers(fast))


def test_a_finetuned_classifier_with_another_label_count_gets_a_new_head(tiny_bert, tmp_path, capsys):
    """A checkpoint that is already a 2-label classifier, trained on 3 classes: its head is made anew (the 4-bit
    load had put the 2-label weights into a 3-label layer, and the first loss failed on the logits' shape)."""
    import shutil

    import pandas as pd
    from conftest import tiny_run_config
    from transformers import AutoModelForSequenceClassification

    from qlora_helpers.infer.inference import load_adapter
    from qlora_helpers.run import train_pipeline

    start = tmp_path / "cls2"
    AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).save_pretrained(start)
    for f in tiny_bert.iterdir():
        if "token" in f.name or "vocab" in f.name:
            shutil.copy(f, start)
    words = {0: "awful terrible bad", 1: "okay fine average", 2: "great wonderful best"}
    rows = [{"text": f"{words[i % 3]} movie {i}", "label": i % 3} for i in range(90)]
    pd.DataFrame(rows).to_csv(tmp_path / "three.csv", index=False)
    cfg = tiny_run_config(start, tmp_path / "three.csv", tmp_path / "run", label_names=None, epochs=1.0)
    result = train_pipeline(cfg)
    assert "brings a head of another size (classifier (2, " in capsys.readouterr().out
    assert load_adapter(result.output_dir).model.config.num_labels == 3
    assert len(load_adapter(result.output_dir).predict(["great wonderful"], progress=False)[0]["probabilities"]) == 3
