"""Training with the Hugging Face Trainer: the recipe's arguments, early stopping, the learning curve."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from .config import TrainConfig
from .hardware import Hardware, peak_gpu_memory_mb, reset_peak_gpu_memory
from .metrics import trainer_metrics


@dataclass
class Schedule:
    """How many optimizer steps there are and when evaluation, logging and saving happen."""

    steps_per_epoch: int
    total_steps: int
    eval_steps: int
    logging_steps: int

    @classmethod
    def for_run(cls, cfg: TrainConfig, n_train: int, world_size: int = 1) -> "Schedule":
        per_step = cfg.batch_size * cfg.grad_accum * world_size
        steps_per_epoch = max(1, math.ceil(n_train / per_step))
        total = cfg.max_steps or math.ceil(steps_per_epoch * cfg.epochs)
        eval_steps = max(1, min(total, steps_per_epoch // cfg.evals_per_epoch or 1))
        return cls(steps_per_epoch, total, eval_steps, max(1, min(eval_steps, steps_per_epoch // 10)))


def training_arguments(cfg: TrainConfig, hw: Hardware, schedule: Schedule, report_to: str,
                       evaluation: bool = True, mixed_precision: bool = True) -> TrainingArguments:
    """The Trainer's arguments from the recipe; evaluation and checkpoints on the same step grid.

    `evaluation=False` (benchmarks) trains only; `mixed_precision=False` keeps fp32 maths (a benchmark arm).
    """
    keep = cfg.save_checkpoints and evaluation
    return TrainingArguments(
        output_dir=str(Path(cfg.output_dir) / "checkpoints"),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup,  # transformers 5: a value below 1 is a share of the total steps
        weight_decay=cfg.weight_decay,
        optim=cfg.optim,
        max_grad_norm=cfg.max_grad_norm,
        bf16=mixed_precision and hw.device == "cuda" and hw.dtype_name == "bfloat16",
        fp16=mixed_precision and hw.device == "cuda" and hw.dtype_name == "float16",
        gradient_checkpointing=cfg.gradient_checkpointing,
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
        metric_for_best_model="accuracy",
        greater_is_better=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=report_to,
        run_name=Path(cfg.output_dir).name,
        disable_tqdm=False,
        dataloader_pin_memory=hw.device == "cuda",
        ddp_find_unused_parameters=False,
        use_cpu=hw.device == "cpu",
    )


class StopOnNonFiniteLoss(TrainerCallback):
    """Stop at the first logged NaN/inf loss instead of training on garbage; `problem` says what happened."""

    def __init__(self) -> None:
        self.problem: str | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            lr = (logs or {}).get("learning_rate")
            self.problem = (f"training stopped at step {state.global_step}: the loss became {loss} (learning rate {lr}); "
                            f"lower --lr, keep --max-grad-norm on, or use bf16 instead of fp16 where the GPU has it")
            control.should_training_stop = True


@dataclass
class TrainOutcome:
    trainer: Trainer
    metrics: dict[str, Any]
    log_history: list[dict[str, Any]]
    schedule: Schedule


def train(model, tokenized, tokenizer, cfg: TrainConfig, hw: Hardware, report_to: str = "none",
          resume_from_checkpoint: str | bool | None = None, evaluation: bool = True, mixed_precision: bool = True,
          extra_callbacks: list | None = None) -> TrainOutcome:
    """Train `model` on `tokenized["train"]`, evaluating on `tokenized["validation"]`; returns the best model's trainer."""
    import torch

    schedule = Schedule.for_run(cfg, len(tokenized["train"]),
                                torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1)
    args = training_arguments(cfg, hw, schedule, report_to, evaluation, mixed_precision)
    callbacks = [EarlyStoppingCallback(cfg.early_stopping_patience)] if cfg.early_stopping_patience and evaluation else []
    guard = StopOnNonFiniteLoss()
    callbacks += [guard] + (extra_callbacks or [])
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"] if evaluation else None,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if hw.device == "cuda" else None),
        compute_metrics=trainer_metrics,
        callbacks=callbacks,
    )
    # BERT's classification head takes **kwargs but ignores `num_items_in_batch`, so the Trainer would skip
    # dividing the loss by the accumulation steps: logged losses and gradients grad_accum times too large
    # (huggingface/transformers#47688). The loss is a per-sequence mean, so plain division is exact.
    trainer.model_accepts_loss_kwargs = False
    reset_peak_gpu_memory()
    result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    if guard.problem:
        from .errors import UserError

        raise UserError(guard.problem)
    metrics = dict(result.metrics)
    metrics["peak_gpu_memory_mb"] = peak_gpu_memory_mb()
    metrics["best_checkpoint"] = trainer.state.best_model_checkpoint
    metrics["best_val_accuracy"] = trainer.state.best_metric
    metrics["optimizer_steps"] = trainer.state.global_step
    return TrainOutcome(trainer, metrics, list(trainer.state.log_history), schedule)
