"""What makes up the GPU memory peak of one training step: PyTorch's allocator history, replayed.

`StepMemoryTrace` records the allocator's history (`torch.cuda.memory._record_memory_history`, Python stacks)
over one optimizer step after warm-up; `peak_breakdown` replays the allocations and frees to the moment the
most memory was allocated and groups the tensors alive then by the code that allocated them.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import torch
from transformers import TrainerCallback

MIB = 2**20
# where an allocation was made, most specific first: a LoRA layer inside the encoder counts as LoRA
PLACES = (
    ("peft/tuners/lora", "peft LoRA"),
    ("bitsandbytes/optim", "8-bit optimizer"),
    ("torch/optim", "optimizer"),
    ("bitsandbytes", "bitsandbytes"),
    ("transformers/models", "encoder forward"),
    ("transformers/modeling_layers", "checkpointing"),
    ("torch/utils/checkpoint", "checkpointing"),
    ("accelerate", "backward (autograd)"),
    ("transformers/trainer", "trainer"),
)


def where(frames: list[dict[str, Any]]) -> str:
    """`area: file:function` of the frame in the most specific known place (PLACES order, whatever the stack
    order); C++-only stacks are autograd's backward."""
    for key, area in PLACES:
        for frame in frames:
            name = frame.get("filename", "")
            if key in name:
                return f"{area}: {os.path.basename(name)}:{frame.get('name')}:{frame.get('line')}"
    return "backward (autograd)" if not frames else f"other: {os.path.basename(frames[0].get('filename', '?'))}"


def peak_breakdown(snapshot: dict[str, Any], allocated_before: int, device: int = 0) -> dict[str, Any]:
    """The step's peak (MiB) and the live tensors then, grouped by `where`; what the step found allocated
    (weights, adapters, optimizer state) is one group, less what the step freed of it before the peak."""
    live: dict[int, tuple[int, str]] = {}
    delta = peak_delta = 0
    freed_before_peak = freed_old = 0
    peak_live: dict[int, tuple[int, str]] = {}
    for event in snapshot["device_traces"][device]:
        action, addr, size = event["action"], event["addr"], event["size"]
        if action == "alloc":
            live[addr] = (size, where(event.get("frames", [])))
            delta += size
        elif action == "free_completed":
            if addr in live:
                live.pop(addr)
            else:
                freed_old += size
            delta -= size
        if delta > peak_delta:
            peak_delta, peak_live, freed_before_peak = delta, dict(live), freed_old
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for size, place in peak_live.values():
        groups[place][0] += size
        groups[place][1] += 1
    rows = [
        {"allocated_by": k, "mib": round(v[0] / MIB, 1), "tensors": v[1]}
        for k, v in sorted(groups.items(), key=lambda kv: -kv[1][0])
        if v[0] >= MIB
    ]
    kept = allocated_before - freed_before_peak
    return {
        "peak_mib": round((allocated_before + peak_delta) / MIB, 1),
        "allocated_before_step_mib": round(allocated_before / MIB, 1),
        "held_from_before_at_peak_mib": round(kept / MIB, 1),
        "allocated_in_step_at_peak_mib": round((peak_delta + freed_before_peak) / MIB, 1),
        "groups": rows,
    }


class StepMemoryTrace(TrainerCallback):
    """Records the allocator over optimizer step `step` (0-based, after warm-up) and keeps its breakdown."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.result: dict[str, Any] | None = None
        self.before = 0

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step and torch.cuda.is_available():
            torch.cuda.synchronize()
            self.before = torch.cuda.memory_allocated()
            torch.cuda.memory._record_memory_history(max_entries=1_000_000, stacks="python")

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step + 1 and torch.cuda.is_available() and self.result is None:
            torch.cuda.synchronize()
            snapshot = torch.cuda.memory._snapshot()
            torch.cuda.memory._record_memory_history(enabled=None)
            self.result = peak_breakdown(snapshot, self.before, torch.cuda.current_device())
