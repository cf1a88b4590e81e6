"""The one model builder (placeholder until the encoder-families branch lands): 4-bit base, LoRA, compiled layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import compiled
from .config import TrainConfig
from .hardware import Hardware
from .lora import add_lora_adapters, count_parameters
from .quantization import load_4bit_model


@dataclass
class BuiltModel:
    model: Any
    counts: dict
    compiled: bool
    graphs: bool
    head_modules: list[str]
    target_modules: list[str]


def build_model(cfg: TrainConfig, hw: Hardware, num_labels: int, id2label: dict[int, str], problem_type: str):
    from transformers import set_seed

    set_seed(cfg.seed)
    model = load_4bit_model(
        cfg.model,
        num_labels,
        id2label,
        hw.compute_dtype,
        hw.device,
        cfg.quant_type,
        cfg.double_quant,
        problem_type=problem_type,
    )
    model = add_lora_adapters(
        model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules, cfg.gradient_checkpointing
    )
    on, how = compiled.active(cfg, hw), None
    if on:
        compiled.prepare_4bit_biases(model)
        how = compiled.mode(cfg, hw)
        layers = compiled.compile_for_training(model, how)
        graphs = " as CUDA graphs" if how == "reduce-overhead" else ""
        print(f"{layers} encoder layers set to compile for training{graphs}, at the first step")
    counts = count_parameters(model)
    print(
        f"trainable parameters: {counts['trainable_params']:,} of {counts['total_params']:,} "
        f"({counts['trainable_percent']:.2f}%) - LoRA matrices and the classifier head"
    )
    return BuiltModel(model, counts, on, how == "reduce-overhead", ["classifier"], list(cfg.target_modules))
