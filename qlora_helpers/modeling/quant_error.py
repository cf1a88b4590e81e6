"""What NF4 buys: quantize real weight matrices with NF4, FP4 and plain absmax int4 and measure.

All three store 4-bit codes in blocks of 64 weights with one absmax scale per block; they differ only in
where the 16 levels sit. Bytes per parameter are read off the tensors bitsandbytes actually keeps (codes
plus constants), with and without double quantization. Runs on the CPU.
"""

from __future__ import annotations

import torch

from qlora_helpers.errors import require

BLOCK = 64


def _relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx - exact).norm() / exact.norm())


def absmax_int4(weight: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, int]:
    """Symmetric int4 per block: codes -7..7 = round(7 w / absmax). Returns (reconstruction, bytes stored)."""
    flat = weight.float().flatten()
    pad = (-flat.numel()) % block
    blocks = torch.nn.functional.pad(flat, (0, pad)).view(-1, block)
    scale = blocks.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    codes = torch.round(blocks / scale * 7).clamp(-7, 7)
    restored = (codes * scale / 7).flatten()[: flat.numel()].view_as(weight)
    return restored, flat.numel() // 2 + scale.numel() * 4


def bnb_4bit(weight: torch.Tensor, quant_type: str, double_quant: bool) -> tuple[torch.Tensor, int]:
    """bitsandbytes 4-bit quantize + dequantize. Returns (reconstruction, bytes stored)."""
    import bitsandbytes.functional as F

    packed, state = F.quantize_4bit(
        weight.float().contiguous(), blocksize=BLOCK, quant_type=quant_type, compress_statistics=double_quant
    )
    return F.dequantize_4bit(packed, state).float(), stored_bytes(packed, state)


def stored_bytes(packed: torch.Tensor, state) -> int:
    """Bytes a 4-bit matrix keeps: packed codes + block scales (+ second-level scales and offset when nested).

    The 16- and 256-entry lookup tables are left out: they are the same constants for every layer.
    """
    nbytes = packed.numel() * packed.element_size() + state.absmax.numel() * state.absmax.element_size()
    if state.nested:
        nbytes += state.state2.absmax.numel() * state.state2.absmax.element_size() + 4  # + the fp32 offset
    return nbytes


def quantization_errors(weights: dict[str, torch.Tensor]) -> list[dict[str, float | str]]:
    """For each named matrix and method: relative Frobenius error ||W' - W|| / ||W|| and bits per weight."""
    methods = {
        "absmax int4": lambda w: absmax_int4(w),
        "FP4": lambda w: bnb_4bit(w, "fp4", False),
        "NF4": lambda w: bnb_4bit(w, "nf4", False),
        "NF4 + double quant": lambda w: bnb_4bit(w, "nf4", True),
    }
    rows = []
    for name, w in weights.items():
        for method, fn in methods.items():
            restored, nbytes = fn(w)
            rows.append(
                {
                    "matrix": name,
                    "method": method,
                    "relative_error": round(_relative_error(restored, w.float()), 5),
                    "bits_per_weight": round(8 * nbytes / w.numel(), 3),
                }
            )
    return rows


def pretrained_matrices(model_dir: str, count: int = 3) -> dict[str, torch.Tensor]:
    """`count` real weight matrices of a model's encoder, spread from its first layer to its last (any family:
    the 2-D weights of its linear layers, embeddings left out), from its safetensors file (a local directory
    or a Hub id)."""
    from pathlib import Path

    from safetensors import safe_open

    path = Path(model_dir) / "model.safetensors"
    if not path.is_file():
        from transformers.utils import cached_file

        path = cached_file(model_dir, "model.safetensors")
    with safe_open(str(path), "pt") as f:
        keys = [
            k for k in f.keys() if k.endswith(".weight") and "embed" not in k and len(f.get_slice(k).get_shape()) == 2
        ]
        require(keys, f"{model_dir} holds no 2-D weight matrices to quantize")
        picked = [keys[round(i * (len(keys) - 1) / max(1, count - 1))] for i in range(min(count, len(keys)))]
        return {k.removesuffix(".weight"): f.get_tensor(k).float() for k in dict.fromkeys(picked)}
