"""The model a training run starts from, for every encoder family: the 4-bit base, its new head in full
precision, LoRA adapters, and compiled encoder layers where they pay off."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qlora_helpers.config import TrainConfig
from qlora_helpers.hardware import Hardware
from qlora_helpers.modeling import compiled, encoders
from qlora_helpers.modeling.lora import add_lora_adapters, check_rank, count_parameters
from qlora_helpers.modeling.quantization import find_head_modules, load_4bit_model


@dataclass
class BuiltModel:
    model: Any  # the peft model on the device
    counts: dict  # trainable/total params (lora.count_parameters)
    compiled: bool  # encoder layers compiled for training
    graphs: bool  # ... and replayed as CUDA graphs
    head_modules: list[str]  # new at load: kept out of 4-bit, trained in full and saved with the adapter
    target_modules: list[str]  # the layers that carry LoRA adapters (all-linear expanded)


def build_model(
    cfg: TrainConfig, hw: Hardware, num_labels: int, id2label: dict[int, str], problem_type: str
) -> BuiltModel:
    """Seed, load `cfg.model` in 4 bits with its head in full precision, add LoRA, compile the encoder layers
    for training when `compiled.active`; print one line for each and return what was done.

    `problem_type`: transformers' single_label_classification, multi_label_classification or regression.
    """
    from transformers import set_seed

    set_seed(cfg.seed)  # head and LoRA initialisation
    head = find_head_modules(cfg.model, num_labels, problem_type)
    check_rank(cfg.lora_r, cfg.target_modules, encoders.meta_classifier(cfg.model, num_labels, problem_type), head)
    model = load_4bit_model(
        cfg.model,
        num_labels,
        id2label,
        hw.compute_dtype,
        hw.device,
        cfg.quant_type,
        cfg.double_quant,
        problem_type=problem_type,
        head_modules=head,
    )
    print(f"classification head, new in this model, trained in full precision: {', '.join(head)}")
    targets = encoders.resolve_targets(model, cfg.target_modules, head)
    model = add_lora_adapters(
        model,
        cfg.lora_r,
        cfg.lora_alpha,
        cfg.lora_dropout,
        targets,
        cfg.gradient_checkpointing,
        head_modules=head,
    )
    print(f"LoRA adapters (r={cfg.lora_r}) on: {', '.join(targets)}")
    is_compiled = graphs = False
    if compiled.active(cfg, hw):
        compiled.prepare_4bit_biases(model)
        how = compiled.mode(cfg, hw)
        layers = compiled.compile_for_training(model, how)
        is_compiled, graphs = True, how == "reduce-overhead"
        kind = " as CUDA graphs" if graphs else ""
        print(f"{layers} encoder layers set to compile for training{kind}, at the first step")
    counts = count_parameters(model)
    print(
        f"trainable parameters: {counts['trainable_params']:,} of {counts['total_params']:,} "
        f"({counts['trainable_percent']:.2f}%) - LoRA matrices and the head"
    )
    return BuiltModel(model, counts, is_compiled, graphs, head, targets)
