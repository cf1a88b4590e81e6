"""Every visible GPU from inside a notebook: the run is started in one new process per GPU by torchrun's own
launcher (`torch.distributed.launcher.elastic_launch`), which spawns fresh interpreters.

accelerate's `notebook_launcher` forks the notebook's process instead, and refuses once bitsandbytes has
been imported or CUDA initialised, which a QLoRA notebook has always done by then. With one GPU (or none)
nothing is launched: the caller trains in its own process.
"""

from __future__ import annotations

import os
import uuid

from .config import TrainConfig


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _train_one_process(cfg: TrainConfig, command: str) -> dict | None:
    """One process's share of a data-parallel run (importable, so a spawned interpreter can find it)."""
    from .pipeline import train_pipeline

    result = train_pipeline(cfg, command=command)
    return None if result is None else result.metrics


def train_on_gpus(cfg: TrainConfig, processes: int, command: str = "") -> dict:
    """Train `cfg` on `processes` GPUs of this machine (ranks on localhost, a free port); returns the metrics
    of the main process, which wrote the run to `cfg.output_dir` as `train` does."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=f"qlora-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # as torchrun --standalone: a free port on this machine
        max_restarts=0,
        monitor_interval=1,
        start_method="spawn",
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default for its workers
    results = elastic_launch(config, _train_one_process)(cfg, command)
    return results[0]
