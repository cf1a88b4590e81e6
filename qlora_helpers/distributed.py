"""Data parallelism under `torchrun` or `accelerate launch`: which process this is, and what only the main one does.

The launchers set RANK, LOCAL_RANK and WORLD_SIZE before Python starts; reading them (rather than
asking torch.distributed) gives the right answer before the Trainer has initialised the process group,
which is when the schedule and the model placement are decided.
"""

from __future__ import annotations

import contextlib
import os
import sys


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def describe(batch_size: int, grad_accum: int, lr: float, scaled_lr: float) -> str:
    """One line on the data-parallel layout, the effective batch it implies and the learning rate used."""
    n = world_size()
    rate = f"learning rate {lr:g} x sqrt({n}) = {scaled_lr:.3g}" if scaled_lr != lr else f"learning rate {lr:g}"
    return (
        f"data parallel: {n} processes (this is rank {rank()}, local rank {local_rank()}); effective batch "
        f"{batch_size} per device x {grad_accum} accumulation x {n} processes = {batch_size * grad_accum * n}; "
        f"{rate} (--lr-scaling)"
    )


@contextlib.contextmanager
def main_process_prints():
    """Silence stdout on every process but the main one, so a 2-process run prints its story once."""
    if is_main_process():
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def report_rank(message: str) -> None:
    """A line every process prints (to stderr), e.g. to show that each rank trained."""
    print(f"[rank {rank()}/{world_size()}] {message}", file=sys.stderr, flush=True)


def my_share(n: int) -> slice:
    """This process's contiguous share of `n` rows (rank order keeps the rows' order when gathered)."""
    return slice(n * rank() // world_size(), n * (rank() + 1) // world_size())


def gather(items: list) -> list | None:
    """Every process's `items`, concatenated in rank order, on the main process (None on the others): the
    process group is started here when no Trainer started it (gloo on the CPU, NCCL on GPUs)."""
    if world_size() == 1:
        return items
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    parts = [None] * world_size() if is_main_process() else None
    dist.gather_object(items, parts, dst=0)
    return [x for part in parts for x in part] if is_main_process() else None


def finish() -> None:
    """Tear the process group down at the end of a distributed run (torch warns at exit otherwise); a process
    that never imported torch (prediction from an ONNX export) has none."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
