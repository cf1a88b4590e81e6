"""One training run as an object: `Run` carries its state from step to step (prepare, build, train, finish), so
the notebook, the command line, a tuning trial and the benchmarks drive the same steps without handing the
pieces back and forth. `train_pipeline` runs every step.

With several GPUs visible to one process (a notebook), `Run.train` starts one new process per GPU with torchrun's
own launcher (`torch.distributed.launcher.elastic_launch`, fresh interpreters): accelerate's `notebook_launcher`
forks instead, and refuses once bitsandbytes has been imported or CUDA initialised, which a QLoRA notebook has
always done by then. The main process's result is then read back into this process's model.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from qlora_helpers import distributed
from qlora_helpers.config import TrainConfig
from qlora_helpers.modeling.builder import BuiltModel
from qlora_helpers.pipeline import Prepared, RunResult, finish, model_for, plot_data, prepare, saved_outcome
from qlora_helpers.run_files import command_line, removed_on_failure, resume_point
from qlora_helpers.train.tracking import choose_report_to
from qlora_helpers.train.training import TrainingJob, TrainOutcome, schedule_for, train


@dataclass
class Run:
    """A run's configuration and what each step made of it; each step returns what it made, for the notebook."""

    cfg: TrainConfig
    command: str = ""
    resume: bool = False
    ready: Prepared | None = None
    built: BuiltModel | None = None
    outcome: TrainOutcome | None = None
    report_to: str = "none"
    report_line: str = ""
    checkpoint: str | None = None  # the checkpoint a resumed run continues from

    def choose_logging(self) -> str:
        """Weights & Biases when a key is available and login works, TensorBoard when asked for, else local only;
        the line that says so."""
        self.report_to, self.report_line = choose_report_to(self.cfg.report_to, output_dir=self.cfg.output_dir)
        return self.report_line

    def prepare(self, without_test: bool = False) -> Prepared:
        self.ready = prepare(self.cfg, self.resume, without_test)
        self.checkpoint = resume_point(self.cfg.output_dir, self.resume, self.cfg)
        return self.ready

    def build(self) -> BuiltModel:
        self.built = model_for(self.cfg, self.ready)
        return self.built

    def job(self) -> TrainingJob:
        """What training needs besides the recipe: the built model, the token ids, the task and its labels."""
        return TrainingJob.of(self.ready, self.built.model, self.built.compiled)

    def train(self, gpus: int | None = None, callbacks: list | None = None) -> TrainOutcome:
        """In this process on one GPU or the CPU; with several GPUs (`gpus`, by default every visible one) and one
        process, one new process per GPU, the main one's result read back into this run's model."""
        gpus = gpu_count() if gpus is None else min(gpus, gpu_count())
        if gpus > 1 and distributed.world_size() == 1:
            print(f"{gpus} GPUs visible: training on every one, one process each; this process waits for them")
            train_on_gpus(self.cfg.replace(overwrite=True), gpus, self.command or command_line())
            self.outcome = self.read_back()
        else:
            self.outcome = train(
                self.job(), self.cfg, self.ready.hw, self.report_to, resume_from_checkpoint=self.checkpoint,
                extra_callbacks=callbacks,
            )  # fmt: skip
        return self.outcome

    def read_back(self) -> TrainOutcome:
        """A run that other processes trained and saved: its adapter loaded into this run's model, its log and
        timing as a TrainOutcome without a trainer."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        out = Path(self.cfg.output_dir)
        set_peft_model_state_dict(self.built.model, load_file(str(out / "adapter_model.safetensors")))
        m = json.loads((out / "metrics.json").read_text())
        metrics = saved_outcome(m)
        schedule = schedule_for(self.cfg, self.job(), m["world_size"])
        log = json.loads((out / "training_log.json").read_text())
        return TrainOutcome(None, metrics, log, schedule, self.cfg)

    def finish(self) -> RunResult:
        """The decision rule and temperature fitted on validation, the test split scored once, all saved."""
        return finish(self.cfg, self.ready, self.built, self.outcome, self.report_line, self.command)

    def complete(self, callbacks: list | None = None) -> RunResult | None:
        """Every step, as `qlora-bert train` runs them; under torchrun only the main process finishes."""
        with distributed.main_process_prints():
            self.prepare()
            print(self.choose_logging())
            main = distributed.is_main_process()
            data_plot = plot_data(self.cfg, self.ready.hw, self.ready.data, self.ready.tokenizer) if main else None
            self.build()
            outcome = self.train(gpus=1, callbacks=callbacks)
        if distributed.world_size() > 1:
            distributed.report_rank(
                f"trained {outcome.metrics['optimizer_steps']} optimizer steps on its share of "
                f"{len(self.ready.tokenized['train']):,} training texts; peak GPU memory "
                f"{outcome.metrics['peak_gpu_memory_mb']} MiB"
            )
        if not distributed.is_main_process():
            return None
        result = self.finish()
        result.plots["dataset_stats"] = data_plot
        return result


def train_pipeline(
    cfg: TrainConfig, resume: bool = False, command: str = "", callbacks: list | None = None
) -> RunResult | None:
    """Data -> 4-bit model + LoRA -> Trainer -> test metrics -> adapter, metrics.json and plots.

    `resume=True` continues an interrupted run from its last complete checkpoint (same configuration);
    `callbacks` are extra TrainerCallbacks (a profiler, a tuner's pruner).
    Under `torchrun`/`accelerate launch` every process trains its share of each batch on its own GPU;
    only the main process evaluates on the test split, writes outputs and plots, and gets a RunResult
    (the others get None).
    """
    folders = (cfg.output_dir, cfg.plots_dir) if distributed.is_main_process() else ()
    with removed_on_failure(*folders):
        return Run(cfg, command, resume).complete(callbacks)


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
