"""LoRA adapters on the frozen 4-bit model, and honest parameter counts."""

from __future__ import annotations

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model, prepare_model_for_kbit_training

from .errors import UserError


def linear_layer_names(model: torch.nn.Module) -> list[str]:
    """Short names of the model's linear layers (4-bit ones included): the valid `target_modules`."""
    import bitsandbytes as bnb

    names = {
        name.rsplit(".", 1)[-1]
        for name, m in model.named_modules()
        if isinstance(m, (torch.nn.Linear, bnb.nn.Linear4bit)) and name
    }
    return sorted(names - {"classifier"})


def make_lora_config(r: int, alpha: float, dropout: float, target_modules: list[str]) -> LoraConfig:
    """LoRA on the chosen projections; the classification head is trained in full and saved with the adapter."""
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        bias="none",  # biases stay frozen: the adapter is the only change to the base model
        modules_to_save=["classifier"],  # the new head is small and must be learnt from scratch
    )


def add_lora_adapters(
    model: torch.nn.Module,
    r: int = 16,
    alpha: float = 32,
    dropout: float = 0.1,
    target_modules: list[str] = ("query", "value"),
    gradient_checkpointing: bool = True,
) -> PeftModel:
    """`prepare_model_for_kbit_training` (fp32 norms/embeddings, input grads, checkpointing), then LoRA.

    Checkpointing is non-reentrant: the reentrant variant needs inputs that require grad and breaks
    under DDP with frozen weights.
    """
    unknown = sorted(set(target_modules) - set(linear_layer_names(model)))
    if unknown:
        raise UserError(
            f"target module(s) {unknown} not found; this model's linear layers are "
            f"{linear_layer_names(model)} - pass some of them with --target-modules"
        )
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    return get_peft_model(model, make_lora_config(r, alpha, dropout, list(target_modules)))


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
