"""Training with the Hugging Face Trainer: the recipe's arguments, early stopping, the learning curve."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

from qlora_helpers import distributed
from qlora_helpers.config import TrainConfig
from qlora_helpers.data.collate import PaddingCollator
from qlora_helpers.errors import OutOfMemory, UserError
from qlora_helpers.hardware import Hardware, peak_gpu_memory_mb, reset_peak_gpu_memory
from qlora_helpers.modeling import compiled
from qlora_helpers.train.callbacks import MemoryWatch, StopOnNonFiniteLoss, TrainingClock, progress_lines
from qlora_helpers.train.loss import class_weight_vector
from qlora_helpers.train.schedule import Schedule, climbing_note, still_climbing

__all__ = ["Schedule", "TrainingJob", "TrainOutcome", "build_trainer", "train", "training_arguments"]


def training_arguments(
    cfg: TrainConfig,
    hw: Hardware,
    schedule: Schedule,
    report_to: str,
    selection: str = "accuracy",
    evaluation: bool = True,
    mixed_precision: bool = True,
) -> TrainingArguments:
    """The Trainer's arguments from the recipe; evaluation and checkpoints on the same step grid, the best
    checkpoint picked by the task's `selection` metric.

    `evaluation=False` (benchmarks) trains only; `mixed_precision=False` keeps fp32 maths (a benchmark arm).
    """
    keep = cfg.save_checkpoints and evaluation
    args = TrainingArguments(
        output_dir=str(Path(cfg.output_dir) / "checkpoints"),
        num_train_epochs=schedule.epochs,
        max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr_for(distributed.world_size()),
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup,  # transformers 5: a value below 1 is a share of the total steps
        weight_decay=cfg.weight_decay,
        optim=cfg.optim,
        max_grad_norm=cfg.max_grad_norm,
        bf16=mixed_precision and hw.device == "cuda" and hw.dtype_name == "bfloat16",
        fp16=mixed_precision and hw.device == "cuda" and hw.dtype_name == "float16",
        gradient_checkpointing=cfg.gradient_checkpointing,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        gradient_checkpointing_kwargs={"use_reentrant": False},
        eval_strategy="steps" if evaluation else "no",
        eval_steps=schedule.eval_steps,
        logging_strategy="steps",
        logging_steps=schedule.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN must reach the log, where StopOnNonFiniteLoss sees it
        save_strategy="steps" if keep else "no",
        save_steps=schedule.eval_steps,
        save_total_limit=2 if keep else None,
        save_only_model=False,
        load_best_model_at_end=keep,
        metric_for_best_model=selection,
        greater_is_better=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=report_to,
        run_name=Path(cfg.output_dir).name,
        disable_tqdm=False,
        dataloader_pin_memory=hw.device == "cuda",
        # workers collate the next batches while the GPU computes; on the CPU they would take its cores
        dataloader_num_workers=cfg.dataloader_workers if hw.device == "cuda" else 0,
        dataloader_persistent_workers=cfg.dataloader_workers > 0 and hw.device == "cuda",
        ddp_find_unused_parameters=False,
        # DDP would broadcast every buffer from rank 0 before each forward: a collective per micro-batch (3.3 ms
        # per forward on the CPU with gloo, cProfile) for BERT's buffers, position and token-type ids, constants
        ddp_broadcast_buffers=False,
        use_cpu=hw.device == "cpu",
    )
    if distributed.world_size() == 1 and args.n_gpu > 1:
        # One process on a machine with several GPUs: the Trainer would wrap the model in nn.DataParallel and
        # silently double the batch. One GPU, as the Trainer itself does for model-parallel models; torchrun or
        # accelerate launch is the way to use all of them (README: several GPUs). A private field: no public
        # argument limits one process to one of several visible GPUs.
        args._n_gpu = 1
    return args


class RecipeTrainer(Trainer):
    """The Trainer with the task's loss (class weights), the FLOP count computed once (the stock one recounts a
    thousand wrapped modules every micro-batch), and the loss divided by the accumulation steps, which BERT's
    head would skip (huggingface/transformers#47688); the notes say what each cost."""

    def __init__(self, *args, task=None, class_weights=None, full_train_batches: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        self._counted_parameters: int | None = None
        self.task, self.class_weights = task, class_weights
        self.full_train_batches = full_train_batches

    def _get_dataloader(self, dataset, description, batch_size, sampler_fn=None, is_training=False, **kwargs):
        """With compiled layers, training drops an epoch's last, shorter batch (one batch size, one graph per
        width bucket); evaluation never drops rows. `dataloader_drop_last` would apply to both, and the Trainer has
        no public hook that tells training's loader from evaluation's, hence this private one."""
        keep = self.args.dataloader_drop_last
        self.args.dataloader_drop_last = keep or (self.full_train_batches and is_training)
        try:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, is_training, **kwargs)
        finally:
            self.args.dataloader_drop_last = keep

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The model's own loss, or the class-weighted one when `--class-weights` asks for it."""
        if self.class_weights is None or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = self.task.loss(outputs["logits"], labels, self.class_weights)
        return (loss, outputs) if return_outputs else loss

    def floating_point_ops(self, inputs) -> int:
        ids = inputs.get("input_ids") if hasattr(inputs, "get") else None
        if ids is None or not hasattr(self.model, "num_parameters"):
            return 0
        if self._counted_parameters is None:
            self._counted_parameters = self.model.num_parameters(exclude_embeddings=True)
        return 6 * ids.numel() * self._counted_parameters


def out_of_memory_message(cfg: TrainConfig, peak_mb: float | None) -> str:
    """What ran out, how much was in use, and the knobs that lower memory, each with its current value."""
    peak = f"peak allocated so far {peak_mb:,.0f} MiB; " if peak_mb is not None else ""
    return (
        f"out of GPU memory during training ({peak}micro-batch {cfg.batch_size}, max_length {cfg.max_length}, "
        f"gradient checkpointing {'on' if cfg.gradient_checkpointing else 'off'}). Lower --batch-size and raise "
        f"--grad-accum to keep the effective batch ({cfg.effective_batch_size}), lower --max-length, turn on "
        f"--gradient-checkpointing, lower --eval-batch-size (now {cfg.eval_batch_size}) if it failed in evaluation, "
        f"or pass --oom-retry to halve the micro-batch automatically"
    )


def halved_batch(cfg: TrainConfig) -> TrainConfig | None:
    """Half the micro-batch, twice the accumulation: the same effective batch. None when it cannot shrink."""
    if cfg.batch_size < 2:
        return None
    return cfg.replace(batch_size=cfg.batch_size // 2, grad_accum=cfg.grad_accum * 2)


def _free_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class TrainOutcome:
    trainer: Trainer
    metrics: dict[str, Any]
    log_history: list[dict[str, Any]]
    schedule: Schedule
    config: TrainConfig  # the configuration training finished with (an out-of-memory retry changes the batch)


@dataclass
class TrainingJob:
    """What training needs besides the recipe: the model as the builder made it, the token ids, the task."""

    model: Any
    tokenized: Any  # a DatasetDict of token ids with train (and validation) splits
    tokenizer: Any
    task: Any  # tasks.SingleLabel | MultiLabel | Regression
    labels: Any  # labels.LabelSpace
    compiled: bool = False  # the builder compiled the encoder layers: one batch shape, last short batch dropped

    @classmethod
    def of(cls, ready, model, compiled: bool = False) -> TrainingJob:
        """The job for `model` on a prepared run's data (pipeline.Prepared: token ids, tokenizer, task, labels);
        the one place that unpacks it, for the Run, the benchmark harness and the tests alike."""
        return cls(model, ready.tokenized, ready.tokenizer, ready.data.task, ready.data.labels, compiled)


def train(
    job: TrainingJob,
    cfg: TrainConfig,
    hw: Hardware,
    report_to: str = "none",
    resume_from_checkpoint: str | bool | None = None,
    evaluation: bool = True,
    mixed_precision: bool = True,
    extra_callbacks: list | None = None,
    timing_warmup: int = 2,
) -> TrainOutcome:
    """Train on `tokenized["train"]`, evaluating on `tokenized["validation"]`; returns the best model's trainer.

    A GPU out-of-memory error ends in a `UserError` naming the knobs; with `cfg.oom_retry` training restarts
    from the same initial adapter and head with half the micro-batch and twice the accumulation instead.
    If compiling the layers fails on this platform, training restarts the same way with eager layers.
    """
    import torch

    initial = {n: p.detach().clone() for n, p in job.model.named_parameters() if p.requires_grad}
    while True:
        try:
            return _train_once(
                job,
                cfg,
                hw,
                report_to,
                resume_from_checkpoint,
                evaluation,
                mixed_precision,
                extra_callbacks,
                timing_warmup,
            )
        except torch.OutOfMemoryError:
            peak, smaller = peak_gpu_memory_mb(), halved_batch(cfg)
            if not cfg.oom_retry or smaller is None:
                raise OutOfMemory(out_of_memory_message(cfg, peak)) from None
            print(
                f"out of GPU memory at micro-batch {cfg.batch_size} (peak {peak} MiB): retrying from the start with "
                f"micro-batch {smaller.batch_size} x accumulation {smaller.grad_accum} "
                f"(effective batch {smaller.effective_batch_size})"
            )
            cfg, resume_from_checkpoint = smaller, None
        except Exception as e:
            if not (job.compiled and compiled.is_compile_failure(e)):
                raise
            compiled.uncompile(job.model)
            job = replace(job, compiled=False)
            print(
                f"compiling the encoder layers failed on this platform ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:160] if str(e) else ''}); training on with eager layers from the start "
                f"(same results, slower; --compile off skips the attempt)"
            )
        _free_gpu_memory()
        with torch.no_grad():
            for name, p in job.model.named_parameters():
                if name in initial:
                    p.copy_(initial[name])


def schedule_for(cfg: TrainConfig, job: TrainingJob, world_size: int = 1) -> Schedule:
    """The run's schedule from its training split: its size and, for `epochs: auto`, how often a typical
    label occurs in it."""
    train_split = job.tokenized["train"]
    rows = job.task.median_label_rows(train_split["label"], job.labels.num_labels) if len(train_split) else None
    return Schedule.for_run(cfg, len(train_split), world_size, job.compiled, rows, job.task.unit)


def build_trainer(
    job: TrainingJob,
    cfg: TrainConfig,
    hw: Hardware,
    report_to: str = "none",
    evaluation: bool = True,
    mixed_precision: bool = True,
    callbacks: list | None = None,
) -> tuple[RecipeTrainer, Schedule]:
    """The Trainer exactly as training runs it (arguments, collator, early stopping), without training:
    `train` uses it, and so do the probes that read its prepared dataloader."""
    tokenized = job.tokenized
    schedule = schedule_for(cfg, job, distributed.world_size())
    print(schedule.reason)
    args = training_arguments(cfg, hw, schedule, report_to, job.task.selection_metric, evaluation, mixed_precision)
    early = [EarlyStoppingCallback(schedule.patience)] if schedule.patience and evaluation else []
    multiple = compiled.pad_multiple(job.compiled, cfg.max_length, hw.device)
    trainer = RecipeTrainer(
        model=job.model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"] if evaluation else None,
        processing_class=job.tokenizer,
        data_collator=PaddingCollator(job.tokenizer, multiple, max_width=cfg.max_length),
        compute_metrics=job.task.trainer_metrics,
        callbacks=early + (callbacks or []),
        task=job.task,
        class_weights=class_weight_vector(cfg.class_weights, job.task, tokenized["train"]["label"], job.labels),
        full_train_batches=job.compiled,
    )
    return trainer, schedule


def _train_once(
    job: TrainingJob,
    cfg: TrainConfig,
    hw: Hardware,
    report_to: str,
    resume_from_checkpoint: str | bool | None,
    evaluation: bool,
    mixed_precision: bool,
    extra_callbacks: list | None,
    timing_warmup: int,
) -> TrainOutcome:
    guard = StopOnNonFiniteLoss()
    clock = TrainingClock(cfg.effective_batch_size * distributed.world_size(), timing_warmup)
    memory = MemoryWatch()
    compile_clock = [compiled.CompileClock()] if job.compiled else []
    trainer, schedule = build_trainer(
        job,
        cfg,
        hw,
        report_to,
        evaluation,
        mixed_precision,
        [guard, clock, memory, *compile_clock, *progress_lines(job.task.selection_metric)] + (extra_callbacks or []),
    )
    reset_peak_gpu_memory()
    try:
        result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    except RuntimeError as e:  # the checkpoint's tensors do not fit this model
        if not (resume_from_checkpoint and "loading state_dict" in str(e)):
            raise
        raise UserError(
            f"the checkpoint {resume_from_checkpoint} does not fit this model (its weights have other shapes: "
            f"another task, label count or --target-modules?); resume with the settings the run started with, or "
            f"start again without --resume"
        ) from None
    if guard.problem:
        raise UserError(guard.problem)
    # the Trainer left the model's forward inside its mixed-precision autocast; predictions after training must be
    # those of the saved model reloaded (benchmarks/results/reload_paths_minilm.json: equal at equal batches)
    trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    metrics = dict(result.metrics)
    overall = peak_gpu_memory_mb()  # since the last reset: the end of training (best-model reload included)
    metrics["peak_train_memory_mb"] = memory.train_mb  # training steps only
    metrics["peak_eval_memory_mb"] = memory.eval_mb  # validation passes only
    metrics["peak_reserved_memory_mb"] = memory.reserved_mb
    known = [m for m in (overall, memory.train_mb, memory.eval_mb) if m is not None]
    metrics["peak_gpu_memory_mb"] = max(known) if known else None
    metrics["best_checkpoint"] = trainer.state.best_model_checkpoint
    metrics["selection_metric"] = job.task.selection_metric
    metrics[f"best_val_{job.task.selection_metric}"] = trainer.state.best_metric
    metrics["optimizer_steps"] = trainer.state.global_step
    metrics["train_step_samples_per_second"] = clock.samples_per_second()  # all processes, training steps only
    metrics["timed_steps"], metrics["timed_seconds"] = clock.steps, round(clock.seconds, 3)
    metrics["step_ms"] = clock.step_ms_percentiles()
    metrics["first_step_seconds"] = compile_clock[0].seconds if compile_clock else None
    metrics["length_check"] = still_climbing(
        trainer.state.log_history, job.task.selection_metric, schedule.total_steps
    )
    note = climbing_note(metrics["length_check"], job.task.selection_metric, schedule.epochs)
    if note and distributed.is_main_process():
        print(note)
    return TrainOutcome(trainer, metrics, list(trainer.state.log_history), schedule, cfg)
