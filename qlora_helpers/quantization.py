"""Loading the base model in 4 bits: NF4 weights, double quantization, an unquantized classifier head."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig

from .errors import UserError


def _require_bitsandbytes() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(
            "4-bit loading needs bitsandbytes: pip install -r requirements.txt (or pip install bitsandbytes)"
        ) from None


def make_bnb_config(
    compute_dtype: torch.dtype, quant_type: str = "nf4", double_quant: bool = True
) -> BitsAndBytesConfig:
    """The QLoRA storage recipe.

    - `nf4`: 4-bit NormalFloat, levels placed at quantiles of a normal distribution, which is what
      pretrained weights look like; lower error than fp4 or uniform int4 at the same 4 bits.
    - double quantization: the fp32 absmax constant of each 64-weight block is itself quantized to 8 bits
      (blocks of 256), saving about 0.37 bits per parameter.
    - `compute_dtype`: weights are dequantized block by block to this dtype for each matrix product.
    - `llm_int8_skip_modules=["classifier"]`: the new head stays in full precision; quantizing it would
      leave nothing trainable there ("only Tensors of floating point dtype can require gradients").
    """
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=["classifier"],
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


def load_4bit_model(
    model_name: str,
    num_labels: int,
    id2label: dict[int, str],
    compute_dtype: torch.dtype,
    device: str,
    quant_type: str = "nf4",
    double_quant: bool = True,
    problem_type: str = "single_label_classification",
):
    """Load `model_name` for sequence classification with its linear layers stored in 4 bits.

    On a GPU the whole model is placed on this process's own GPU (`LOCAL_RANK` under torchrun or
    accelerate), never split across GPUs with `device_map="auto"`.
    """
    _require_bitsandbytes()
    kwargs = {}
    if device == "cuda":
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name,
            num_labels=num_labels,
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            problem_type=problem_type,
            quantization_config=make_bnb_config(compute_dtype, quant_type, double_quant),
            # Unquantized parts (embeddings, LayerNorms, head) in fp32, as k-bit preparation leaves them
            # for training; loading them the same way for inference reproduces the trained logits.
            dtype=torch.float32,
            **kwargs,
        )
    except (OSError, ValueError) as e:
        raise _explain_load_error("model", model_name, e) from None
    disable_avx512_bf16_repacking(model)
    return model


def first_4bit_layer(model: torch.nn.Module):
    """The first 4-bit linear layer of any encoder family (under its LoRA wrapper, if any): for the tutorial."""
    import bitsandbytes as bnb

    found = next((m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)), None)
    if found is None:
        raise UserError("this model holds no 4-bit layer; load it with load_4bit_model")
    return found


def describe_4bit_layer(layer) -> dict:
    """What one `Linear4bit` stores, in numbers: for the tutorial's look inside a quantized layer."""
    from .quant_error import stored_bytes

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
