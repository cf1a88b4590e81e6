"""Where a training step's GPU time goes, by kind of work (issue 35's profile before any speed change).

`StepTimeProfile` runs torch.profiler over ten steady optimizer steps after warm-up and puts every GPU kernel in one
bucket by its name (dequantization, matrix multiplies, attention, optimizer, elementwise and norms, copies, other).
Beside the kernels' time it keeps the wall time of the same steps: what the GPU did not fill is host time (Python,
launches, waits). Comparing the buckets of full fine-tuning and QLoRA at the same shapes says where QLoRA spends
the time full fine-tuning does not.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import torch
from transformers import TrainerCallback

# a kernel's bucket: the first pattern found in its lower-cased name (dequantization before matmul: bitsandbytes
# names its fused kernels after both)
BUCKETS = (
    ("dequantize", "dequantization"),
    ("kdequant", "dequantization"),
    ("optimizer", "optimizer"),
    ("adam", "optimizer"),
    ("fmha", "attention"),
    ("flash", "attention"),
    ("attention", "attention"),
    ("gemm", "matmul"),
    ("gemv", "matmul"),
    ("xmma", "matmul"),
    ("cutlass", "matmul"),
    ("memcpy", "copies"),
    ("memset", "copies"),
    ("copy", "copies"),
    ("norm", "elementwise and norms"),
    ("softmax", "elementwise and norms"),
    ("elementwise", "elementwise and norms"),
    ("reduce", "elementwise and norms"),
    ("triton", "elementwise and norms"),  # compiled layers: Inductor's fused pointwise kernels
)


def bucket(kernel: str) -> str:
    name = kernel.lower()
    return next((kind for pattern, kind in BUCKETS if pattern in name), "other")


def summarize(events, steps: int, wall_seconds: float) -> dict[str, Any]:
    """Per step: wall ms, GPU-busy ms by bucket, the rest as host time, and the kernels that took the most."""
    kernels = [e for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    by_kind: dict[str, float] = defaultdict(float)
    for e in kernels:
        by_kind[bucket(e.key)] += e.self_device_time_total / 1000 / steps
    busy, wall = sum(by_kind.values()), wall_seconds * 1000 / steps
    top = sorted(kernels, key=lambda e: -e.self_device_time_total)[:15]
    return {
        "steps": steps,
        "wall_ms_per_step": round(wall, 2),
        "gpu_busy_ms_per_step": round(busy, 2),
        "host_ms_per_step": round(max(0.0, wall - busy), 2),  # the GPU idle: Python, launches, synchronisation
        "gpu_ms_per_step_by_kind": {k: round(v, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "top_kernels_ms_per_step": [[e.key[:120], round(e.self_device_time_total / 1000 / steps, 3)] for e in top],
    }


class StepTimeProfile(TrainerCallback):
    """Profiles optimizer steps `start`..`start + steps - 1`; `result` holds `summarize`'s account afterwards."""

    def __init__(self, start: int, steps: int = 10):
        self.start, self.steps = start, steps
        self.prof, self.began, self.result = None, 0.0, None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.start and self.prof is None:
            _synchronize()
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.__enter__()
            self.began = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.start + self.steps and self.prof is not None and self.result is None:
            _synchronize()
            wall = time.perf_counter() - self.began
            self.prof.__exit__(None, None, None)
            self.finish(self.prof.key_averages(), wall)

    def finish(self, events, wall_seconds: float) -> None:
        """What the window's events become (a subclass may write more of them, as profile_step's tables)."""
        self.result = summarize(events, self.steps, wall_seconds)


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
