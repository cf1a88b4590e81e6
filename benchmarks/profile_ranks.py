"""Issue 7: where a data-parallel step's time goes, per rank. Runs `python -m qlora_helpers train ...` unchanged
with one callback added that, on every process,

- records each optimizer step's host time (perf_counter at step begin and end) and GPU time (CUDA events),
- profiles steps [PROFILE_START, PROFILE_START + PROFILE_STEPS) with torch.profiler (CPU + CUDA),

and writes, under PROFILE_DIR (default ./profile): rank{R}-steps.json, rank{R}-ops.txt (the operators by self
CPU and by device time) and rank{R}-trace.json.gz (a Chrome/Perfetto trace of the profiled steps).

torchrun --nproc-per-node 2 benchmarks/profile_ranks.py train --model DIR --dataset FILE --max-steps 60 ...
python benchmarks/profile_ranks.py train ...                                         (one GPU, for comparison)
"""
import functools
import gzip
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from qlora_helpers import cli, distributed, pipeline


class StepProbe(TrainerCallback):
    def __init__(self, out: Path, start: int, steps: int):
        self.out, self.start, self.stop = out, start, start + steps
        self.host: list[tuple[float, float]] = []
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.profiler = None
        self.cuda = torch.cuda.is_available()

    def synchronize(self):
        if self.cuda:
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.start:
            activities = [torch.profiler.ProfilerActivity.CPU]
            activities += [torch.profiler.ProfilerActivity.CUDA] if self.cuda else []
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.start()
        if self.cuda:
            begin = torch.cuda.Event(enable_timing=True)
            begin.record()
            self.events.append((begin, torch.cuda.Event(enable_timing=True)))
        self.host.append((time.perf_counter(), float("nan")))

    def on_step_end(self, args, state, control, **kwargs):
        if self.cuda:
            self.events[-1][1].record()
        self.host[-1] = (self.host[-1][0], time.perf_counter())
        if self.profiler is not None and state.global_step == self.stop:
            self.synchronize()
            self.profiler.stop()
            self.write_profile()
            self.profiler = None

    def write_profile(self):
        r = distributed.rank()
        table = self.profiler.key_averages()
        text = (f"steps {self.start}..{self.stop - 1}, rank {r}\n\n# by self CPU time\n"
                + table.table(sort_by="self_cpu_time_total", row_limit=40)
                + "\n\n# by device time\n" + (table.table(sort_by="self_device_time_total", row_limit=40) if self.cuda else ""))
        (self.out / f"rank{r}-ops.txt").write_text(text)
        raw = self.out / f"rank{r}-trace.json"
        self.profiler.export_chrome_trace(str(raw))
        with open(raw, "rb") as src, gzip.open(f"{raw}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        raw.unlink()

    def on_train_end(self, args, state, control, **kwargs):
        self.synchronize()
        gpu = [round(e0.elapsed_time(e1), 2) for e0, e1 in self.events] or [None] * len(self.host)
        steps = [{"host_ms": round((b - a) * 1000, 2), "gpu_ms": g} for (a, b), g in zip(self.host, gpu)]
        gaps = [round((n[0] - p[1]) * 1000, 2) for p, n in zip(self.host, self.host[1:])]  # between steps (eval, logs)
        (self.out / f"rank{distributed.rank()}-steps.json").write_text(json.dumps({"steps": steps, "host_gaps_ms": gaps}))


def main() -> int:
    out = Path(os.environ.get("PROFILE_DIR", "profile"))
    out.mkdir(parents=True, exist_ok=True)
    probe = StepProbe(out, int(os.environ.get("PROFILE_START", "30")), int(os.environ.get("PROFILE_STEPS", "5")))
    pipeline.train = functools.partial(pipeline.train, extra_callbacks=[probe])
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
