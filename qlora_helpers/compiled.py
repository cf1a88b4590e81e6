"""Compiled encoder layers: take the host out of the training step.

At MiniLM and bert-base size the GPU waits on Python - every 4-bit matmul, LoRA matrix, dtype cast and
dropout is its own kernel launch (benchmarks/recipe_notes.md, issue 17). `torch.compile` turns each encoder
layer's forward and backward into a few fused kernels launched from generated code. The layers share one
compiled graph per input shape, so shapes are kept static: batch widths are padded up to a few buckets and
training drops the last, smaller batch of an epoch. Only training steps run compiled; evaluation and
inference use large batches that already keep the GPU busy, and stay eager rather than compile more shapes.
The optimizer is not compiled (bitsandbytes' 8-bit step is not traceable, and is not where the time goes).
"""

from __future__ import annotations

import torch

from .config import TrainConfig
from .hardware import Hardware

BUCKET = 64  # widths 64, 128, 192, 256 at the default max_length: four shapes to compile, little padding
MODE = None  # torch.compile's default (inductor, no CUDA graphs)
RECOMPILE_LIMIT = 64  # one graph per bucket (and per micro-batch size) for every layer; dynamo's default is 8


def active(cfg: TrainConfig, hw: Hardware) -> bool:
    """`--compile auto` compiles on a GPU only: on a CPU the step is compute-bound and compiling costs minutes."""
    return cfg.compile == "on" or (cfg.compile == "auto" and hw.device == "cuda")


def pad_multiple(cfg: TrainConfig, hw: Hardware) -> int | None:
    """Width multiple of a padded batch: coarse buckets when compiled, tensor-core multiples of 8 on a GPU."""
    if active(cfg, hw):
        return BUCKET
    return 8 if hw.device == "cuda" else None


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The repeated blocks of the encoder: the model's longest list of modules (BERT's `encoder.layer`)."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m)]
    if not lists:
        raise ValueError("no list of encoder layers found to compile; run with --compile off")
    return max(lists, key=len)


def prepare_4bit_biases(model: torch.nn.Module) -> int:
    """Store each 4-bit layer's bias in its compute dtype, as bitsandbytes does on a layer's first call.

    Done lazily inside a compiled layer, that cast (a `.data` swap to another dtype) splits the graph at every
    4-bit layer. Returns how many biases were cast.
    """
    import bitsandbytes as bnb

    cast = 0
    for layer in model.modules():
        bias = getattr(layer, "bias", None)
        if isinstance(layer, bnb.nn.Linear4bit) and bias is not None and layer.compute_dtype is not None:
            if bias.dtype != layer.compute_dtype:
                bias.data = bias.data.to(layer.compute_dtype)
                cast += 1
    return cast


def compile_for_training(model: torch.nn.Module) -> int:
    """Compile each encoder layer for training steps (static shapes); evaluation keeps the eager layer.

    Returns how many layers were wrapped. The parameters stay the model's own, so saving, loading the best
    checkpoint and DDP see the same module tree.
    """
    import torch._dynamo

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    layers = encoder_layers(model)
    shared = torch.compile(type(layers[0]).forward, dynamic=False, mode=MODE)  # one cache for all layers: same code
    for layer in layers:
        layer.forward = _training_only(layer, layer.forward, shared)
    return len(layers)


def _training_only(layer: torch.nn.Module, eager, compiled):
    def forward(*args, **kwargs):
        if layer.training and torch.is_grad_enabled():
            return compiled(layer, *args, **kwargs)
        return eager(*args, **kwargs)

    return forward
