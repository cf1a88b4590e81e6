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


def finish() -> None:
    """Tear the process group down at the end of a distributed run (torch warns at exit otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
