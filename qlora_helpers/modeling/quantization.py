"""Loading the base model in 4 bits: NF4 weights, double quantization, an unquantized classification head."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig

from qlora_helpers.errors import UserError, require
from qlora_helpers.modeling import encoders


def _require_bitsandbytes() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(
            "4-bit loading needs bitsandbytes: pip install -r requirements.txt (or pip install bitsandbytes)"
        ) from None


def make_bnb_config(
    compute_dtype: torch.dtype,
    quant_type: str = "nf4",
    double_quant: bool = True,
    skip_modules: list[str] | tuple[str, ...] = ("classifier",),
) -> BitsAndBytesConfig:
    """The QLoRA storage recipe.

    - `nf4`: 4-bit NormalFloat, levels placed at quantiles of a normal distribution, which is what
      pretrained weights look like; lower error than fp4 or uniform int4 at the same 4 bits.
    - double quantization: the fp32 absmax constant of each 64-weight block is itself quantized to 8 bits
      (blocks of 256), saving about 0.37 bits per parameter.
    - `compute_dtype`: weights are dequantized block by block to this dtype for each matrix product.
    - `llm_int8_skip_modules=skip_modules`: the new head (`encoders.head_modules`) stays in full precision;
      quantizing it would leave nothing trainable there ("only Tensors of floating point dtype can require
      gradients") and freeze a randomly initialised layer.
    """
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=list(skip_modules),
    )


def _explain_load_error(what: str, name: str, error: Exception) -> UserError:
    local = Path(name).expanduser()
    if local.exists() or name.startswith((".", "/", "~")):
        return UserError(
            f"could not load the {what} from {name}: "
            f"{str(error).splitlines()[0] if str(error) else type(error).__name__}; "
            f"the directory needs config.json, the weights (.safetensors/.bin) and tokenizer files"
        )
    return UserError(
        f"could not load the {what} {name!r} from the Hugging Face Hub ({type(error).__name__}); check the "
        f"id and your network, or pass a local model directory with --model path/to/model"
    )


def load_tokenizer(model_name: str):
    """The model's own (fast) tokenizer; `from_pretrained` reads vocab and casing rules together."""
    try:
        return AutoTokenizer.from_pretrained(model_name)
    except (OSError, ValueError) as e:
        raise _explain_load_error("tokenizer", model_name, e) from None


def disable_avx512_bf16_repacking(model: torch.nn.Module) -> int:
    """Stop bitsandbytes repacking 4-bit weights in place on AVX512-BF16 CPUs.

    On such CPUs an inference forward under no_grad (an evaluation) rewrites a `Linear4bit` weight in
    place, and the next training step fails with "a view of a leaf Variable ... in-place operation".
    No effect on GPUs. Returns the number of layers changed.
    """
    import bitsandbytes as bnb

    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


@contextlib.contextmanager
def _without_load_report():
    """Silence transformers' load report ("MISSING ... newly initialized ... Consider training"): the head it names
    is known before the load (and trained, or loaded from the adapter right after), and the pretraining head it
    lists as unexpected is meant to be dropped. `load_4bit_model` checks the report's content itself."""
    logger = logging.getLogger("transformers.modeling_utils")
    drop = _DropLoadReport()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def find_head_modules(
    model_name: str, num_labels: int = 2, problem_type: str = "single_label_classification"
) -> list[str]:
    """`encoders.head_modules`, a missing or unreadable model ending in the one-line load error."""
    try:
        return encoders.head_modules(model_name, num_labels, problem_type)
    except (OSError, ValueError, KeyError) as e:
        raise _explain_load_error("model", model_name, e) from None


def load_4bit_model(
    model_name: str,
    num_labels: int,
    id2label: dict[int, str],
    compute_dtype: torch.dtype,
    device: str,
    quant_type: str = "nf4",
    double_quant: bool = True,
    problem_type: str = "single_label_classification",
    head_modules: list[str] | None = None,
    say_remade: bool = True,
):
    """Load `model_name` for sequence classification with its linear layers stored in 4 bits, its head not.

    `problem_type` is transformers' (single_label_classification, multi_label_classification, regression): it
    picks the loss. The head is every module whose weights the checkpoint lacks (`encoders.head_modules`, found
    before loading when not given); its names are kept on the model as `qlora_head_modules` for
    `lora.add_lora_adapters`. On a GPU the whole model is placed on this process's own GPU (`LOCAL_RANK` under
    torchrun or accelerate), never split across GPUs with `device_map="auto"`.
    """
    _require_bitsandbytes()
    require(
        problem_type in encoders.PROBLEM_TYPES,
        f"unknown problem_type {problem_type!r}; choose one of {encoders.PROBLEM_TYPES}",
    )
    if head_modules is None:
        head_modules = find_head_modules(model_name, num_labels, problem_type)
    kwargs = {}
    if device == "cuda":
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    try:
        with _without_load_report():
            model, report = AutoModelForSequenceClassification.from_pretrained(
                model_name,
                num_labels=num_labels,
                id2label=id2label,
                label2id={v: k for k, v in id2label.items()},
                problem_type=problem_type,
                quantization_config=make_bnb_config(compute_dtype, quant_type, double_quant, head_modules),
                # Unquantized parts (embeddings, LayerNorms, head) in fp32, as k-bit preparation leaves them
                # for training; loading them the same way for inference reproduces the trained logits.
                dtype=torch.float32,
                output_loading_info=True,
                **kwargs,
            )
    except (OSError, ValueError) as e:
        raise _explain_load_error("model", model_name, e) from None
    remade = remake_mismatched_layers(model, head_modules)
    if remade and say_remade:
        print(
            f"{model_name} brings a head of another size ({', '.join(remade)}) than {num_labels} labels need: made "
            f"anew and trained from scratch"
        )
    stray = sorted(k for k in report["missing_keys"] if not encoders.in_modules(k.rsplit(".", 1)[0], head_modules))
    if stray:  # initialised anew, yet not in the head found beforehand: frozen at random values
        print(f"warning: {model_name} holds no weights for {', '.join(stray)}; they keep random values")
    disable_avx512_bf16_repacking(model)
    setattr(model, encoders.HEAD_ATTRIBUTE, list(head_modules))
    return model


def remake_mismatched_layers(model: torch.nn.Module, head_modules: list[str]) -> list[str]:
    """Head layers whose loaded weights do not fit their declared size, made anew; returns them as `name (out, in)`
    of the checkpoint. A fine-tuned classifier given as the start, with another number of labels: the 4-bit load
    (transformers 5.17) puts the old head's weights into a layer sized for the new labels without a word, and the
    first loss fails on the logits' shape."""
    remade = []
    for name, layer in model.named_modules():
        if not (isinstance(layer, torch.nn.Linear) and encoders.in_modules(name, head_modules)):
            continue
        if tuple(layer.weight.shape) == (layer.out_features, layer.in_features):
            continue
        remade.append(f"{name} {tuple(layer.weight.shape)}")
        fresh = torch.nn.Linear(layer.in_features, layer.out_features, layer.bias is not None)
        fresh.to(layer.weight.device, torch.float32)
        if hasattr(model, "_init_weights"):
            model._init_weights(fresh)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, fresh)
    return remade


def describe_4bit_layer(layer) -> dict:
    """What one `Linear4bit` stores, in numbers: for the tutorial's look inside a quantized layer."""
    from qlora_helpers.modeling.quant_error import stored_bytes

    w = layer.weight
    qs = w.quant_state
    n = int(torch.Size(qs.shape).numel())
    nbytes = stored_bytes(w.data, qs)
    return {
        "layer": type(layer).__name__,
        "shape": tuple(qs.shape),
        "weights": n,
        "quant_type": qs.quant_type,
        "blocksize": qs.blocksize,
        "double_quant": bool(qs.nested),
        "compute_dtype": str(layer.compute_dtype),
        "stored_bytes": nbytes,
        "bits_per_weight": round(8 * nbytes / n, 3),
        "fp16_bytes": 2 * n,
    }
