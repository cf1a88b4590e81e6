"""What the machine can do: device, compute dtype and GPU memory readings."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qlora_helpers.errors import UserError
from qlora_helpers.hub import hub_reachable

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class Hardware:
    device: str  # "cuda" or "cpu"
    name: str  # e.g. "Tesla T4" or "cpu"
    compute_dtype: torch.dtype
    reason: str  # one line saying why this dtype

    @property
    def dtype_name(self) -> str:
        return str(self.compute_dtype).removeprefix("torch.")

    def describe(self) -> str:
        return f"device: {self.name} ({self.device}); compute dtype: {self.dtype_name} - {self.reason}"


def detect_hardware(requested_dtype: str = "auto") -> Hardware:
    """Pick the 4-bit compute dtype from the hardware: bf16 where supported, else fp16; fp32 on the CPU.

    A T4 (compute capability 7.5) has no bf16, and fp16 there needs a loss scaler; a requested dtype
    the device cannot run is an error rather than a silent switch.
    """
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        if requested_dtype == "auto":
            dtype = torch.bfloat16 if bf16 else torch.float16
            reason = "bf16 is supported by this GPU" if bf16 else "this GPU has no bf16 (e.g. a T4), so fp16"
        else:
            dtype = _DTYPES[requested_dtype]
            if dtype is torch.bfloat16 and not bf16:
                raise UserError(f"{name} has no bf16; use --compute-dtype float16 (or auto)")
            reason = "requested"
        return Hardware("cuda", name, dtype, reason)
    if requested_dtype in ("auto", "float32"):
        return Hardware(
            "cpu",
            "cpu",
            torch.float32,
            "no GPU found: running on the CPU in fp32 (16-bit autocast does not pay there)",
        )
    raise UserError(
        f"--compute-dtype {requested_dtype} needs a GPU and none was found; use auto or float32 on the CPU"
    )


def choose_attention_kernels(cudnn_attention: bool) -> str | None:
    """Allow or forbid cuDNN's scaled-dot-product attention for this process; a line to print on a GPU.

    PyTorch prefers cuDNN's kernel on Hopper, which plans per input shape: with dynamic padding every new
    length costs a plan (config.TrainConfig.cudnn_attention says what was measured). The flag is
    process-wide, like the rest of a training run's settings; the other kernels give the same results.
    """
    torch.backends.cuda.enable_cudnn_sdp(cudnn_attention)
    if not torch.cuda.is_available():
        return None
    return (
        "attention: cuDNN's fused kernel allowed (--cudnn-attention)"
        if cudnn_attention
        else "attention: PyTorch's flash / memory-efficient kernels, not cuDNN's (which plans per padded length)"
    )


def cpu_notes(optim: str, oom_retry: bool = False) -> list[str]:
    """What the chosen recipe does differently without a GPU, said up front instead of changed silently."""
    notes = []
    if optim.startswith("paged_"):
        notes.append(
            f"{optim} on the CPU: paging needs CUDA, so the optimizer states stay in RAM "
            f"(the same AdamW update otherwise)"
        )
    if oom_retry:
        notes.append("--oom-retry has nothing to do on the CPU (it answers GPU out-of-memory errors)")
    return notes


def synchronize() -> None:
    """Wait for queued GPU work, so a host clock or memory reading sees it finished (no-op on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak_gpu_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gpu_memory_mb() -> float | None:
    """Peak memory allocated by tensors since the last reset, in MiB; None on the CPU."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def auto_profile() -> tuple[str, str]:
    """`full` when a GPU and the Hub are both there, else `offline`; with the reason in words."""
    gpu, hub = torch.cuda.is_available(), hub_reachable()
    if gpu and hub:
        return "full", "a GPU and the Hugging Face Hub are available"
    missing = " and ".join(x for x, ok in (("no GPU", gpu), ("no Hub access", hub)) if not ok)
    return "offline", f"{missing}: running the CPU-sized offline profile"
