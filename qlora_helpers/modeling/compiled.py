"""Compiled encoder layers: at MiniLM and bert-base size the GPU waits on Python, so each encoder layer is
compiled and, with one micro-batch per step, replayed as a CUDA graph (recipe_notes.md, "The host out of the
step"). One shape: training batches are padded to max_length; evaluation and inference stay eager."""

from __future__ import annotations

import time

import torch
from transformers import TrainerCallback

from qlora_helpers.config import TrainConfig
from qlora_helpers.errors import UserError
from qlora_helpers.hardware import Hardware
from qlora_helpers.modeling.encoders import repeated_blocks

RECOMPILE_LIMIT = 64  # a graph per shape and per input kind (the first layer's input needs no grad)


def active(cfg: TrainConfig, hw: Hardware) -> bool:
    """`--compile auto` compiles on a GPU only: on a CPU the step is compute-bound and compiling costs minutes."""
    return cfg.compile == "on" or (cfg.compile == "auto" and hw.device == "cuda")


def pad_multiple(compiled_layers: bool, max_length: int, device: str) -> int | None:
    """Width multiple of a padded batch: max_length when compiled (one shape), multiples of 8 on a GPU."""
    if compiled_layers:
        return max_length
    return 8 if device == "cuda" else None


def mode(cfg: TrainConfig, hw: Hardware) -> str | None:
    """CUDA graphs ("reduce-overhead") with one micro-batch per step and no checkpointing, on one GPU or on
    each GPU of a data-parallel run; plain inductor otherwise. With gradient accumulation the graphs' outputs
    were overwritten by the next micro-batch; checkpointing re-runs a layer inside backward; `--oom-retry`
    may turn on accumulation mid-run (benchmarks/recipe_notes.md)."""
    one_step = cfg.grad_accum == 1 and not cfg.oom_retry and not cfg.gradient_checkpointing
    if hw.device == "cuda" and one_step:
        return "reduce-overhead"
    return None


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The repeated blocks of the encoder: the model's longest list of modules (BERT's `encoder.layer`)."""
    layers = repeated_blocks(model)
    if layers is None:
        raise UserError("found no list of encoder layers to compile in this model; run with --compile off")
    return layers


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


def compile_for_training(model: torch.nn.Module, compile_mode: str | None = None) -> int:
    """Compile each encoder layer for training steps (static shapes); evaluation keeps the eager layer.

    Returns how many layers were wrapped. The parameters stay the model's own, so saving, loading the best
    checkpoint and DDP see the same module tree. `uncompile` puts the eager layers back.
    """
    import torch._dynamo

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    layers = encoder_layers(model)
    # one compiled function (one cache) for all layers: they run the same code on their own parameters
    shared = torch.compile(type(layers[0]).forward, dynamic=False, mode=compile_mode)
    fill = fills_masks(model)
    for layer in layers:
        layer.forward = _training_only(layer, layer.forward, shared, fill)
    return len(layers)


def uncompile(model: torch.nn.Module) -> int:
    """Put back the eager forward of each layer `compile_for_training` wrapped (to carry on eager when compiling
    fails on a platform); returns how many layers were restored."""
    restored = 0
    for layer in encoder_layers(model):
        eager = getattr(vars(layer).get("forward"), "eager_forward", None)
        if eager is None:
            continue
        if getattr(eager, "__func__", None) is type(layer).forward:
            del layer.forward  # the class's own method again
        else:
            layer.forward = eager
        restored += 1
    return restored


def is_compile_failure(error: BaseException) -> bool:
    """Whether an error came from compiling (dynamo, inductor, Triton) rather than from the model or the data."""
    import torch._dynamo

    if isinstance(error, torch._dynamo.exc.TorchDynamoException):
        return True
    names = {type(e).__name__ for e in (error, error.__cause__, error.__context__) if e is not None}
    text = str(error).lower()
    return bool(names & {"InductorError", "BackendCompilerFailed", "CompilationError"}) or "triton" in text


def _training_only(layer: torch.nn.Module, eager, compiled, fill_mask: bool = True):
    def forward(*args, **kwargs):
        if layer.training and torch.is_grad_enabled():
            if fill_mask:
                args, kwargs = with_mask(args, kwargs)
            return compiled(layer, *args, **kwargs)
        return eager(*args, **kwargs)

    forward.eager_forward = eager
    return forward


def fills_masks(model: torch.nn.Module) -> bool:
    """Whether an unpadded batch's missing mask may be filled in: with PyTorch's SDPA attention, where a padded
    batch's mask is a (batch, 1, length, length) boolean one (BERT, RoBERTa, ELECTRA, DistilBERT, ModernBERT).
    Other kernels take other masks (flash attention: none at all), and DeBERTa passes its own mask to every layer."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None) == "sdpa"


def with_mask(args: tuple, kwargs: dict | None = None) -> tuple[tuple, dict]:
    """BERT-style layers get `attention_mask=None` for a batch without padding and a (batch, 1, length,
    length) boolean mask otherwise: two kinds of input, so a second compile and graph capture mid-run. An
    all-true mask for the unpadded batch keeps one kind (the same attention). The mask comes second
    positionally (BERT, RoBERTa, ELECTRA, DistilBERT) or by keyword (ModernBERT)."""
    kwargs = dict(kwargs or {})
    if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() != 3:
        return args, kwargs
    rows, length = args[0].shape[:2]

    def all_true():
        return torch.ones((rows, 1, length, length), dtype=torch.bool, device=args[0].device)

    if len(args) >= 2 and args[1] is None:
        args = (args[0], all_true(), *args[2:])
    elif len(args) == 1 and "attention_mask" in kwargs and kwargs["attention_mask"] is None:
        kwargs["attention_mask"] = all_true()
    return args, kwargs


class CompileClock(TrainerCallback):
    """Says when the compile wait starts and how long the first training step took with it: the stall a user
    sees once per run (less when PyTorch's compile caches already hold the layers, as in a notebook re-run)."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.seconds: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        print("compiling the encoder layers: the first training step waits for it", flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds is None and self.started is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.seconds = round(time.perf_counter() - self.started, 2)
            print(f"first training step, compiling included: {self.seconds:.1f} s", flush=True)
