"""What a training run watches from the side: a NaN loss, the time of its training steps, its memory peaks, and
its progress as plain lines where the Trainer would draw it as HTML."""

from __future__ import annotations

import math
import time
from typing import Any

from transformers import TrainerCallback


class StopOnNonFiniteLoss(TrainerCallback):
    """Stop at the first logged NaN/inf loss instead of training on garbage; `problem` says what happened."""

    def __init__(self) -> None:
        self.problem: str | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            lr = (logs or {}).get("learning_rate")
            self.problem = (
                f"training stopped at step {state.global_step}: the loss became {loss} (learning rate {lr}); "
                f"lower --lr, keep --max-grad-norm on, or use bf16 instead of fp16 where the GPU has it"
            )
            control.should_training_stop = True


class TrainingClock(TrainerCallback):
    """Training throughput without evaluation and checkpointing: the Trainer's own samples/s divides by
    the whole run, evaluations included.

    Times the intervals between consecutive optimizer steps, leaving out the first `warmup` and every
    interval in which an evaluation or a save ran. On a GPU each step's end is a CUDA event, read once
    training is over: synchronising at every step would stop the host from queuing the next step while the
    GPU works, and so change what it measures.
    """

    def __init__(self, samples_per_step: int, warmup: int = 2):
        self.samples_per_step, self.warmup = samples_per_step, warmup
        self.marks: list[tuple[Any, bool]] = []  # (CUDA event or perf_counter time, time the interval ending here)
        self.dirty = False

    @property
    def durations(self) -> list[float]:
        """Seconds of each timed interval (waits for the GPU to reach the last step's end)."""
        if self.marks and hasattr(self.marks[-1][0], "synchronize"):
            self.marks[-1][0].synchronize()
        return [_seconds_between(a, b) for (a, _), (b, keep) in zip(self.marks, self.marks[1:]) if keep]

    @property
    def seconds(self) -> float:
        return sum(self.durations)

    @property
    def steps(self) -> int:
        return len(self.durations)

    def on_step_end(self, args, state, control, **kwargs):
        keep = bool(self.marks) and not self.dirty and state.global_step > self.warmup
        self.marks.append((_time_mark(getattr(getattr(args, "device", None), "type", None) == "cuda"), keep))
        self.dirty = False

    def step_ms_percentiles(self) -> dict[str, float] | None:
        """Median and spread of the timed steps: a few slow steps (new shapes, allocator) show up here."""
        if not self.durations:
            return None
        import numpy as np

        q = np.percentile(np.array(self.durations) * 1000, [10, 50, 90, 100])
        return {"p10": round(q[0], 1), "median": round(q[1], 1), "p90": round(q[2], 1), "max": round(q[3], 1)}

    def on_evaluate(self, args, state, control, **kwargs):
        self.dirty = True

    def on_save(self, args, state, control, **kwargs):
        self.dirty = True

    def samples_per_second(self) -> float | None:
        return round(self.steps * self.samples_per_step / self.seconds, 2) if self.seconds > 0 else None


class MemoryWatch(TrainerCallback):
    """Peak GPU memory of the training steps and of the evaluations, apart.

    One overall peak cannot say which of the two needs the memory: with checkpointing on, the
    evaluation pass (no gradients, but a larger batch) can peak above every training step. The
    allocator's peak is read and reset at the end of each step and after each evaluation; both are
    host-side counters, so nothing waits for the GPU.
    """

    def __init__(self) -> None:
        self.train_mb: float | None = None
        self.eval_mb: float | None = None
        self.reserved_mb: float | None = None  # the allocator's peak reservation over both

    def _take(self) -> float | None:
        import torch

        if not torch.cuda.is_available():
            return None
        peak = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        reserved = round(torch.cuda.max_memory_reserved() / 2**20, 1)
        self.reserved_mb = max(self.reserved_mb or 0.0, reserved)
        torch.cuda.reset_peak_memory_stats()
        return peak

    def on_step_end(self, args, state, control, **kwargs):
        peak = self._take()
        if peak is not None:
            self.train_mb = max(self.train_mb or 0.0, peak)

    def on_evaluate(self, args, state, control, **kwargs):
        peak = self._take()
        if peak is not None:
            self.eval_mb = max(self.eval_mb or 0.0, peak)


def _time_mark(on_gpu: bool):
    """Now: on the GPU's timeline when training runs there (an event recorded on the current stream)."""
    import torch

    if on_gpu:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
    return time.perf_counter()


def _seconds_between(a, b) -> float:
    return a.elapsed_time(b) / 1000 if hasattr(a, "elapsed_time") else b - a


def html_progress() -> bool:
    """Whether the Trainer draws its progress as HTML (it chose so when transformers.trainer was imported)."""
    import transformers.trainer as trainer

    return trainer.DEFAULT_PROGRESS_CALLBACK is not trainer.ProgressCallback


class ProgressLines(TrainerCallback):
    """In a notebook kernel the Trainer shows progress as an HTML table, which a notebook executed by papermill
    (`make demo`) never writes to its log: the training cell looked stuck for its whole run. There, one line at
    most every `every_s` seconds says the step, the loss and the time left, and each evaluation its score."""

    def __init__(self, selection: str, every_s: float = 30.0):
        self.selection, self.every_s = selection, every_s
        self.start = self.last = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.last = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs, now = logs or {}, time.perf_counter()
        if not state.is_world_process_zero:
            return
        if f"eval_{self.selection}" in logs:
            print(f"step {state.global_step}: validation {self.selection} {logs[f'eval_{self.selection}']:.4f}")
        elif "loss" in logs and (now - self.last >= self.every_s or state.global_step >= state.max_steps):
            self.last, spent = now, now - self.start
            done = state.global_step / max(state.max_steps, 1)
            left = f", about {spent / done * (1 - done):.0f} s left" if 0 < done < 1 else ""
            print(
                f"step {state.global_step}/{state.max_steps} ({done:.0%}), loss {logs['loss']:.4f}, "
                f"{spent:.0f} s{left}",
                flush=True,
            )


def progress_lines(selection: str) -> list[TrainerCallback]:
    """The callback where progress would not show in a log, else none (the text progress bar prints already)."""
    return [ProgressLines(selection)] if html_progress() else []
