"""The 4-bit load and the LoRA wrapping, on the tiny BERT and on the real pretrained MiniLM."""

import bitsandbytes as bnb
import pytest
import torch

from qlora_helpers.errors import UserError
from qlora_helpers.modeling.lora import add_lora_adapters, count_parameters, linear_layer_names
from qlora_helpers.modeling.quantization import load_4bit_model
from qlora_helpers.presets import offline_model_dir

LABELS = {0: "negative", 1: "positive"}


def load(path, **kw):
    return load_4bit_model(str(path), 2, LABELS, torch.float32, "cpu", **kw)


@pytest.fixture(scope="module")
def minilm_4bit():
    return load(offline_model_dir())


def _linear4bit_layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_4bit_load_is_nf4_with_double_quant_and_a_float_head(which, tiny_bert, minilm_4bit):
    model = load(tiny_bert) if which == "tiny" else minilm_4bit
    layers = _linear4bit_layers(model)
    n_layers = model.config.num_hidden_layers
    assert len(layers) == n_layers * 6 + 1  # q, k, v, attn out, ffn in, ffn out per layer + pooler
    for module in layers.values():
        state = module.weight.quant_state
        assert module.weight.dtype == torch.uint8 and state.quant_type == "nf4"
        assert state.nested  # double quantization: the absmax constants are quantized too
        assert module.support_avx512bf16_for_cpu is False
    assert type(model.classifier) is torch.nn.Linear and model.classifier.weight.dtype == torch.float32
    assert model.bert.embeddings.word_embeddings.weight.dtype == torch.float32  # embeddings are not quantized


def test_fp4_is_available_as_an_option(tiny_bert):
    layers = _linear4bit_layers(load(tiny_bert, quant_type="fp4", double_quant=False))
    assert {m.weight.quant_state.quant_type for m in layers.values()} == {"fp4"}
    assert not any(m.weight.quant_state.nested for m in layers.values())


def test_minilm_4bit_weights_stay_close_to_the_pretrained_ones(minilm_4bit):
    """NF4 reconstruction of a real weight matrix: small relative error, not noise."""
    from safetensors.torch import load_file

    original = load_file(f"{offline_model_dir()}/model.safetensors")["encoder.layer.0.attention.self.query.weight"]
    layer = minilm_4bit.bert.encoder.layer[0].attention.self.query
    restored = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    rel = ((restored - original).norm() / original.norm()).item()
    assert 0.01 < rel < 0.15, rel


def test_trainable_parameters_are_exactly_lora_and_head(tiny_bert):
    model = add_lora_adapters(load(tiny_bert), 4, 8, 0.1, ["query", "value"], gradient_checkpointing=True)
    h, layers = model.config.hidden_size, model.config.num_hidden_layers
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    lora = {n: v for n, v in trainable.items() if ".lora_" in n}
    head = {n: v for n, v in trainable.items() if "classifier" in n}
    assert set(trainable) == set(lora) | set(head)
    assert sum(lora.values()) == layers * 2 * (4 * h + h * 4)  # A: r x h, B: h x r, for query and value
    assert sum(head.values()) == h * 2 + 2
    counts = count_parameters(model)
    assert counts["trainable_params"] == sum(trainable.values())


def test_total_parameters_count_4bit_weights_as_weights(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    plain = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    assert count_parameters(load(tiny_bert))["total_params"] == sum(p.numel() for p in plain.parameters())


def test_unknown_target_module_lists_the_real_ones(tiny_bert):
    model = load(tiny_bert)
    assert linear_layer_names(model) == ["dense", "key", "query", "value"]
    with pytest.raises(
        UserError, match=r"target module\(s\) \['q_proj'\] not found.*\['dense', 'key', 'query', 'value'\]"
    ):
        add_lora_adapters(model, 4, 8, 0.0, ["q_proj", "value"], gradient_checkpointing=False)


def test_the_problem_type_picks_the_loss(tiny_bert):
    assert load(tiny_bert).config.problem_type == "single_label_classification"
    multi = load(tiny_bert, problem_type="multi_label_classification")
    assert multi.config.problem_type == "multi_label_classification"
    regression = load_4bit_model(str(tiny_bert), 1, {0: "score"}, torch.float32, "cpu", problem_type="regression")
    assert regression.config.problem_type == "regression" and regression.classifier.out_features == 1
    with pytest.raises(UserError, match="unknown problem_type 'multi_label'"):
        load(tiny_bert, problem_type="multi_label")


def test_missing_local_model_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="could not load the model from .*config.json"):
        load(tmp_path)
    with pytest.raises(UserError, match="could not load the model 'nobody/no-such-bert' from the Hugging Face Hub"):
        load("nobody/no-such-bert")
