"""Training as the notebook runs it (`fit`): in this process, or on every visible GPU, one new process per GPU
started by torchrun's own launcher (`torch.distributed.launcher.elastic_launch`), which spawns fresh interpreters.

accelerate's `notebook_launcher` forks the notebook's process instead, and refuses once bitsandbytes has
been imported or CUDA initialised, which a QLoRA notebook has always done by then. With one GPU (or none)
nothing is launched: the caller trains in its own process.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from qlora_helpers import distributed
from qlora_helpers.config import TrainConfig
from qlora_helpers.modeling.builder import BuiltModel
from qlora_helpers.pipeline import Prepared, train_pipeline
from qlora_helpers.run_files import command_line, resume_point
from qlora_helpers.train.training import TrainingJob, TrainOutcome, schedule_for, train


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _train_one_process(cfg: TrainConfig, command: str) -> dict | None:
    """One process's share of a data-parallel run (importable, so a spawned interpreter can find it)."""
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


def fit(
    cfg: TrainConfig, ready: Prepared, built: BuiltModel, report_to: str, resume: bool = False, gpus: int | None = None
) -> TrainOutcome:
    """Training as the notebook runs it: in this process on one GPU or the CPU; with several GPUs (`gpus`, by
    default every visible one), one process each, the main process's result read back into
    `built.model`."""
    gpus = gpu_count() if gpus is None else min(gpus, gpu_count())
    if gpus > 1 and distributed.world_size() == 1:
        print(f"{gpus} GPUs visible: training on every one, one process each; this process waits for them")
        train_on_gpus(cfg.replace(overwrite=True), gpus, command_line())
        return read_back(cfg, built, ready)
    job = TrainingJob(
        built.model, ready.tokenized, ready.tokenizer, ready.data.task, ready.data.labels, built.compiled
    )
    return train(job, cfg, ready.hw, report_to, resume_from_checkpoint=resume_point(cfg.output_dir, resume, cfg))


def read_back(cfg: TrainConfig, built: BuiltModel, ready: Prepared) -> TrainOutcome:
    """A run that other processes trained and saved: its adapter loaded into `built.model`, its log and timing
    as a TrainOutcome without a trainer."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    out = Path(cfg.output_dir)
    set_peft_model_state_dict(built.model, load_file(str(out / "adapter_model.safetensors")))
    m = json.loads((out / "metrics.json").read_text())
    keys = (
        "optimizer_steps",
        "peak_gpu_memory_mb",
        "peak_train_memory_mb",
        "peak_eval_memory_mb",
        "train_step_samples_per_second",
        "first_step_seconds",
        "best_checkpoint",
    )
    metrics = {k: m.get(k) for k in keys} | {
        "train_runtime": m["train_runtime_s"],
        "train_samples_per_second": m["train_samples_per_second"],
        "step_ms": m.get("train_step_ms"),
        f"best_val_{m['selection_metric']}": m.get(f"best_val_{m['selection_metric']}"),
        "world_size": m["world_size"],
    }
    job = TrainingJob(
        built.model, ready.tokenized, ready.tokenizer, ready.data.task, ready.data.labels, built.compiled
    )
    schedule = schedule_for(cfg, job, m["world_size"])
    log = json.loads((out / "training_log.json").read_text())
    return TrainOutcome(None, metrics, log, schedule, cfg)
