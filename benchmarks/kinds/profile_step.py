"""torch.profiler over steady-state steps of the CLI's own training run (issue 17): where a step's host time goes.

    python -m benchmarks.kinds.profile_step OUT_DIR MODEL DATASET [key=json ...]

Runs `train_pipeline` with the given TrainConfig settings, profiles optimizer steps 60-69 and writes
`ops.txt` (by self CPU time and by device time) and `summary.json` (host and device ms per step, syncs).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from benchmarks.kinds.time_breakdown import StepTimeProfile
from qlora_helpers.presets import make_config
from qlora_helpers.run import train_pipeline

START, STOP = 60, 70
SYNCS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaMemcpyAsync")


class ProfileWindow(StepTimeProfile):
    """The steps START..STOP-1 profiled as the harness's time probe does, plus the op tables and host summary."""

    def __init__(self, out: Path):
        super().__init__(START, STOP - START)
        self.out = out

    def finish(self, events, wall_seconds: float) -> None:
        super().finish(events, wall_seconds)
        steps = self.steps
        with open(self.out / "ops.txt", "w") as f:
            f.write(f"steps {START}..{STOP - 1}\n\n# by self CPU time\n")
            f.write(events.table(sort_by="self_cpu_time_total", row_limit=45, max_name_column_width=60))
            f.write("\n\n# by device time\n")
            f.write(events.table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=60))
        summary = {
            "host_ms_per_step": round(sum(e.self_cpu_time_total for e in events) / 1000 / steps, 2),
            "device_ms_per_step": round(sum(e.self_device_time_total for e in events) / 1000 / steps, 2),
            "syncs_per_step": {
                e.key: {"calls": e.count / steps, "ms": round(e.self_cpu_time_total / 1000 / steps, 2)}
                for e in events
                if e.key in SYNCS
            },
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        print("profile", json.dumps(summary), flush=True)


def main(argv: list[str]) -> None:
    out, model, dataset, *pairs = argv
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: json.loads(v) for k, v in (p.split("=", 1) for p in pairs)}
    work = tempfile.mkdtemp(prefix="profile-")  # the run's own outputs stay out of OUT_DIR
    cfg = make_config(
        "full",
        model=model,
        dataset=dataset,
        label_names=["negative", "positive"],
        split_seed=42,
        max_steps=STOP + 5,
        early_stopping_patience=0,  # the window must be reached
        output_dir=f"{work}/run",
        plots_dir=f"{work}/plots",
        report_to="none",
        overwrite=True,
        **settings,
    )
    metrics = train_pipeline(cfg, callbacks=[ProfileWindow(out)]).metrics
    summary = json.loads((out / "summary.json").read_text())
    keep = ("step_ms", "train_step_samples_per_second", "peak_train_memory_mb", "test_accuracy")
    summary.update({k: metrics.get(k) for k in keep}, settings=settings)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("summary", json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
