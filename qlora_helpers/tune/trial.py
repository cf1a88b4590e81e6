"""One trial of a study, in its own process: `python -m qlora_helpers.tune.trial SPEC.json`.

The study process starts one of these per trial, so whatever a trial holds on the GPU is gone when it
exits. The trial opens the study's storage itself to report each validation score and to ask whether to
stop (pruning); the study process records the outcome this process writes, or a failure if it wrote none.
It trains on the training split and scores on validation only: the test split is dropped before anything
is tokenized.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from qlora_helpers.errors import OutOfMemory, UserError

EXIT_OUT_OF_MEMORY = 3  # the outcome file says so too; the code tells the study when the file could not be written


class TrialReporter(TrainerCallback):
    """Reports the best validation score so far at each tenth of the run to the trial and stops training when
    the pruner says the trial is behind, or when the study's time is up.

    Scores go in at tenths of the run rather than at optimizer steps: trials of different lengths then meet at
    the same points of their schedules (warm-up, peak, decay), which is where a pruner compares them.
    """

    def __init__(self, trial, metric: str, deadline: float | None = None):
        self.trial, self.metric, self.deadline = trial, metric, deadline
        self.best: float | None = None
        self.reported: set[int] = set()
        self.stopped: str | None = None  # why training stopped before its end: pruned or the time limit

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(f"eval_{self.metric}")
        if value is None:
            return
        self.best = value if self.best is None else max(self.best, value)
        tenth = int(10 * state.global_step / max(1, state.max_steps)) * 10
        if self.trial is not None and tenth not in self.reported:
            self.reported.add(tenth)
            self.trial.report(self.best, tenth)
            if self.trial.should_prune():
                self.stopped = f"pruned at {tenth}% of the run"
                control.should_training_stop = True
        self._check_time(control)

    def on_step_end(self, args, state, control, **kwargs):
        self._check_time(control)

    def _check_time(self, control) -> None:
        if self.deadline is not None and time.time() > self.deadline and not self.stopped:
            self.stopped = "stopped at the study's time limit"
            control.should_training_stop = True


def open_trial(spec: dict[str, Any]):
    """The study's trial `spec["trial_id"]`, opened from its storage with the study's pruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(**spec["pruner"])
    study = optuna.load_study(study_name=spec["study_name"], storage=spec["storage"], pruner=pruner)
    return optuna.trial.Trial(study, spec["trial_id"])


def run_trial(spec: dict[str, Any], trial=None) -> dict[str, Any]:
    """Train one configuration on the training split, score it on validation; the outcome as a dict.

    Status: complete (value: the best validation score), pruned (value: the best before it stopped), or
    out_of_memory. Other bad input raises `UserError`.
    """
    from qlora_helpers.config import TrainConfig
    from qlora_helpers.run import Run

    cfg = TrainConfig(**spec["config"]).validate()
    started = time.time()
    run = Run(cfg)
    ready = run.prepare(without_test=True)
    run.build()
    reporter = TrialReporter(trial, ready.data.task.selection_metric, spec.get("deadline"))
    try:
        outcome = run.train(gpus=1, callbacks=[reporter])
    except OutOfMemory as e:
        return {"status": "out_of_memory", "value": reporter.best, "message": str(e)}
    return {
        "status": "pruned" if reporter.stopped else "complete",
        "value": reporter.best,
        "message": reporter.stopped or "",
        "optimizer_steps": outcome.metrics["optimizer_steps"],
        "seconds": round(time.time() - started, 1),
        "peak_gpu_memory_mb": outcome.metrics.get("peak_gpu_memory_mb"),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text())
    target = spec_path.with_name("outcome.json")
    try:
        outcome = run_trial(spec, open_trial(spec))
    except UserError as e:
        outcome = {"status": "error", "value": None, "message": str(e)}
    from qlora_helpers.run_files import write_json

    write_json(target, outcome)
    print(f"trial outcome: {json.dumps(outcome)}")
    return {"error": 2, "out_of_memory": EXIT_OUT_OF_MEMORY}.get(outcome["status"], 0)


if __name__ == "__main__":
    sys.exit(main())
