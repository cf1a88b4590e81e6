"""LoRA adapters on the frozen 4-bit model, and honest parameter counts."""

from __future__ import annotations

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model, prepare_model_for_kbit_training

from qlora_helpers.errors import require
from qlora_helpers.modeling import encoders


def linear_layer_names(model: torch.nn.Module, head_modules: list[str] | None = None) -> list[str]:
    """Short names of the model's linear layers outside its head (4-bit ones included): the valid `target_modules`."""
    return encoders.adapter_targets(model, encoders.recorded_head(model) if head_modules is None else head_modules)


def make_lora_config(
    r: int,
    alpha: float,
    dropout: float,
    target_modules: list[str],
    modules_to_save: list[str] | tuple[str, ...] = ("classifier",),
) -> LoraConfig:
    """LoRA on the chosen projections; the head modules are trained in full and saved with the adapter.

    `all-linear` alone is left to peft (every linear layer but the output one) where no model is at hand;
    `add_lora_adapters` expands it to names itself.
    """
    targets = encoders.ALL_LINEAR if list(target_modules) == [encoders.ALL_LINEAR] else list(target_modules)
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        bias="none",  # biases stay frozen: the adapter is the only change to the base model
        modules_to_save=list(modules_to_save),  # the new head is small and must be learnt from scratch
    )


def check_rank(r: int, target_modules, model: torch.nn.Module, head: list[str]) -> None:
    """A rank as large as an adapted layer's smaller side is no longer a low-rank update (it trains more weights
    than the layer holds; `--lora-r 100000` on MiniLM asked for 4 billion): checked on the layer shapes of `model`
    (built on the meta device, no weights read) before any weight is loaded."""
    targets = set(encoders.resolve_targets(model, target_modules, head))
    layers = {n: m for n, m in encoders.linear_layers(model, head).items() if n.rsplit(".", 1)[-1] in targets}
    name, layer = min(layers.items(), key=lambda item: min(item[1].in_features, item[1].out_features))
    side = min(layer.in_features, layer.out_features)
    require(
        r < side,
        f"--lora-r {r} is not below the size of the adapted layer {name} ({layer.in_features} -> "
        f"{layer.out_features}), so it is not a low-rank update; use at most --lora-r {side - 1} "
        f"(8-16 is plenty for classification)",
    )


def add_lora_adapters(
    model: torch.nn.Module,
    r: int,
    alpha: float,
    dropout: float,
    target_modules: list[str] | tuple[str, ...],
    gradient_checkpointing: bool,
    head_modules: list[str] | None = None,
) -> PeftModel:
    """`prepare_model_for_kbit_training` (fp32 norms/embeddings, input grads, checkpointing), then LoRA. The recipe's
    values (rank, alpha, dropout, targets, checkpointing) come from TrainConfig, which holds their defaults.

    `target_modules`: layer names, or `all-linear` for every linear layer outside the head. `head_modules`: trained
    in full and saved with the adapter; by default those `quantization.load_4bit_model` kept out of 4-bit.
    Checkpointing is non-reentrant: the reentrant variant needs inputs that require grad and breaks under DDP
    with frozen weights.
    """
    head = encoders.recorded_head(model) if head_modules is None else list(head_modules)
    targets = encoders.resolve_targets(model, target_modules, head)
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    return get_peft_model(model, make_lora_config(r, alpha, dropout, targets, head))


def parameter_count(param: torch.nn.Parameter) -> int:
    """Logical number of weights: a packed 4-bit tensor holds two weights per byte, counted as two."""
    quant_state = getattr(param, "quant_state", None)
    if quant_state is not None:
        return int(torch.Size(quant_state.shape).numel())
    return param.numel()


def count_parameters(model: torch.nn.Module) -> dict[str, float]:
    """Trainable and total parameters, the 4-bit weights counted as weights rather than packed bytes."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(parameter_count(p) for p in model.parameters())
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100 * trainable / total, 4),
    }
