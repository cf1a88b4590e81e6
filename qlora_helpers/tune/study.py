"""`qlora-bert tune`: an Optuna study over the recipe on the user's data, each trial in its own process.

The study process never trains: it asks Optuna for a trial's settings, starts `tune_trial` in a fresh process
(which reports validation scores to the same SQLite storage and stops when pruned), and records what that
process wrote, or a failure when it died. GPU memory therefore cannot pass from one trial to the next, and
a trial that runs out of memory is one failed trial, not the end of the study. The objective is the task's
own selection metric on validation; the trials never see the test split.

Files (in --output-dir): study.db (the Optuna storage: kill the study and `--resume` continues it),
best_trial.json and best_command.txt (rewritten whenever the best changes), trials/NNN/ (each trial's
spec, log and outcome); the plot goes to --plots-dir as tune_study.png.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlora_helpers.config import TrainConfig
from qlora_helpers.errors import UserError, require
from qlora_helpers.run_files import write_json
from qlora_helpers.tune.files import (
    FINGERPRINT,
    STUDY_NAME,
    StudyFiles,
    StudyResult,
    _last_line,
    check_files,
    check_same_data,
    counted,
    fingerprint,
    load_study,
    mark_interrupted,
    trial_rows,
)
from qlora_helpers.tune.processes import child_launcher, train_best_configuration, train_command
from qlora_helpers.tune.space import SearchSpace, build_space, check_same_space, layer_groups

INSTALL_TUNE = "pip install -r requirements-tune.txt, in the project's folder (the package is not on PyPI)"
PRUNER = {"n_startup_trials": 2, "n_warmup_steps": 30}  # no pruning before 2 finished trials or 30% of a run


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError(f"qlora-bert tune needs Optuna, an optional extra: {INSTALL_TUNE}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# ---- checks before anything is written -----------------------------------------------------------


# ---- the study -----------------------------------------------------------------------------------


def shown(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.2g}" if isinstance(v, float) and k == "lr" else f"{k}={v}" for k, v in params.items())


@dataclass
class Study:
    """One study: its space, storage and base configuration; `run` adds trials until --trials are counted."""

    optuna: Any
    study: Any  # optuna.Study
    space: SearchSpace
    base: TrainConfig
    files: StudyFiles
    metric: str

    def run(self, trials: int, deadline: float | None, launcher: Callable[[Path, Path], int]) -> None:
        from tqdm.auto import tqdm

        remaining = trials - len(counted(self.study))
        if remaining <= 0:
            print(f"the study has {len(counted(self.study))} trials already (--trials {trials}): nothing to add")
            return
        bar = tqdm(total=remaining, desc="trials", unit="trial")
        failures_in_a_row = 0
        try:
            while len(counted(self.study)) < trials:
                if deadline is not None and time.time() >= deadline:
                    bar.write("the study's time limit (--timeout) is reached: no new trial")
                    break
                line, failed = self.one_trial(deadline, launcher)
                bar.write(line)
                bar.update(1)
                failures_in_a_row = failures_in_a_row + 1 if failed else 0
                if failures_in_a_row >= 3:
                    bar.write("three trials in a row failed: the study stops (see trials/*/log.txt)")
                    break
        finally:
            bar.close()

    def one_trial(self, deadline: float | None, launcher) -> tuple[str, bool]:
        """Ask, run in a child, tell; the trial's progress line and whether it failed."""
        from optuna.trial import TrialState

        trial = self.study.ask()
        params = self.space.suggest(trial)
        cfg = self.base.replace(
            **self.space.changes(params, self.base),
            output_dir=str(self.files.trials / f"{trial.number:03d}" / "run"),
            plots_dir=str(self.files.trials / f"{trial.number:03d}" / "plots"),
            overwrite=True,
            report_to="none",
        )
        folder = self.files.trials / f"{trial.number:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        spec = {
            "config": cfg.to_dict(),
            "storage": self.files.storage,
            "study_name": STUDY_NAME,
            "trial_id": trial._trial_id,
            "pruner": PRUNER,
            "deadline": deadline,
        }
        write_json(folder / "spec.json", spec)
        started = time.time()
        code = launcher(folder / "spec.json", folder / "log.txt")
        outcome_file = folder / "outcome.json"
        outcome = json.loads(outcome_file.read_text()) if outcome_file.is_file() else None
        shutil.rmtree(folder / "run", ignore_errors=True)  # checkpoints: the study keeps scores, not models
        seconds = time.time() - started
        head = f"trial {trial.number}: {shown(params)}"
        if outcome and outcome["status"] in ("complete", "pruned") and outcome["value"] is not None:
            trial.set_user_attr("best_value", outcome["value"])
            if outcome["status"] == "complete":
                self.study.tell(trial, outcome["value"])
                self.save_best()
                return f"{head} -> {self.metric} {outcome['value']:.4f} ({seconds:.0f} s)", False
            trial.set_user_attr("stopped", outcome["message"])
            self.study.tell(trial, state=TrialState.PRUNED)
            return (
                f"{head} -> {self.metric} {outcome['value']:.4f} so far, {outcome['message']} ({seconds:.0f} s)",
                False,
            )
        message = (outcome or {}).get("message") or _last_line(folder / "log.txt") or f"exit code {code}"
        trial.set_user_attr("failure", message[:500])
        self.study.tell(trial, state=TrialState.FAIL)
        if outcome and outcome["status"] == "error":
            raise UserError(f"trial {trial.number} could not run: {message}")
        kind = "out of GPU memory" if outcome and outcome["status"] == "out_of_memory" else "failed"
        return f"{head} -> {kind}: {message.splitlines()[0][:160]} ({seconds:.0f} s)", True

    def best(self) -> dict[str, Any] | None:
        try:
            trial = self.study.best_trial
        except ValueError:  # no completed trial
            return None
        changes = self.space.changes(trial.params, self.base)
        cfg = self.base.replace(**changes)
        command = ["qlora-bert", *train_command(cfg, str(self.files.root / "best"))]
        return {
            "number": trial.number,
            "value": trial.value,
            "metric": self.metric,
            "params": trial.params,
            "changes": changes,
            "command": shlex.join(command),
        }

    def save_best(self) -> None:
        best = self.best()
        if best is not None:
            write_json(self.files.best_json, best)
            tmp = self.files.best_command.with_suffix(".tmp")
            tmp.write_text(best["command"] + "\n")
            os.replace(tmp, self.files.best_command)

    def importances(self) -> dict[str, float]:
        import warnings

        from optuna.trial import TrialState

        scores = {t.value for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        if len(scores) < 3:  # fewer differences than that say nothing about which setting made them
            return {}
        fanova = self.optuna.importance.FanovaImportanceEvaluator(seed=0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return dict(self.optuna.importance.get_param_importances(self.study, evaluator=fanova))
        except (RuntimeError, ValueError, ZeroDivisionError):  # too few finished trials, or nothing varied
            return {}


def run_study(
    base: TrainConfig,
    space_flags: dict[str, str | None],
    trials: int = 20,
    timeout: float | None = None,
    resume: bool = False,
    train_best: bool = False,
    launcher: Callable[[Path, Path], int] | None = None,
) -> StudyResult:
    """Check everything, open (or resume) the study, run trials, save and plot the best; `train_best` then
    trains its configuration with `qlora-bert train` and reports the test split once."""
    optuna = require_optuna()
    require(isinstance(trials, int) and trials >= 1, f"--trials must be at least 1, got {trials}")
    require(timeout is None or timeout > 0, f"--timeout is seconds > 0, got {timeout}")
    base.validate()
    files = StudyFiles(Path(base.output_dir))
    check_files(files, resume, base.overwrite, base.plots_dir)
    data, space = _data_and_space(base, space_flags)
    task = data.task
    study = _open_study(optuna, base, files, space, fingerprint(base, data), task.selection_metric, resume)
    runner = Study(optuna, study, space, base, files, task.selection_metric)
    deadline = time.time() + timeout if timeout else None
    runner.run(trials, deadline, launcher or child_launcher)
    runner.save_best()
    result = _report(runner, base, files, task.selection_metric)
    if train_best:
        require(result.best is not None, "no trial finished, so there is no best configuration to train")
        result.test_metrics = train_best_configuration(result.best["command"], files.root / "best")
    return result


def _data_and_space(base: TrainConfig, space_flags: dict[str, str | None]):
    """The user's data, read as `train` reads it, and the search space it and the model allow (printed)."""
    from qlora_helpers.pipeline import load_data
    from qlora_helpers.train.loss import check_class_weights
    from qlora_helpers.train.schedule import Schedule

    data = load_data(base)
    task = data.task
    targets = task.targets(data.splits["train"]["label"], data.labels)
    auto = Schedule.for_run(
        base.replace(epochs="auto"),
        len(data.splits["train"]),
        label_rows=task.median_label_rows(targets, data.num_labels),
        unit=task.unit,
    )
    groups = layer_groups(base.model, data.num_labels, task.problem_type)
    space = build_space(space_flags, base, task.name, auto.epochs, groups, _max_positions(base.model))
    for choice in space.params["class_weights"].choices if "class_weights" in space.params else ():
        check_class_weights(choice, task, data.labels)
    check_class_weights(space.fixed.get("class_weights", base.class_weights), task, data.labels)
    print(space.describe())
    return data, space


def _open_study(optuna, base: TrainConfig, files: StudyFiles, space, now: dict, metric: str, resume: bool):
    """A new study (replacing an old one under --overwrite), or the stored one resumed when it tunes the same
    data over the same space; trials a stop cut off are marked failed."""
    if resume:
        stored = load_study(files)
        check_same_data(stored.user_attrs.get(FINGERPRINT), now, files.root)
        check_same_space(stored, space, files.root)
    elif files.db.exists():  # --overwrite: a new study in place of the old one and its files
        for path in (files.db, files.best_json, files.best_command):
            path.unlink(missing_ok=True)
        shutil.rmtree(files.trials, ignore_errors=True)
    files.root.mkdir(parents=True, exist_ok=True)
    existing = 0
    if resume:
        existing = len(optuna.load_study(study_name=STUDY_NAME, storage=files.storage).trials)
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=files.storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=base.seed + existing),  # a resumed study draws new settings
        pruner=optuna.pruners.MedianPruner(**PRUNER),
        load_if_exists=resume,
    )
    if not resume:
        study.set_user_attr(FINGERPRINT, now)
        study.set_user_attr("selection_metric", metric)
    interrupted = mark_interrupted(study)
    if interrupted:
        print(f"resuming: trial(s) {interrupted} were cut off by the stop; recorded as failed, not counted")
    return study


def _report(runner: Study, base: TrainConfig, files: StudyFiles, metric: str) -> StudyResult:
    """The study's plot, and the best trial's command to train it."""
    from qlora_helpers.figures import run_caption
    from qlora_helpers.report.plots import plot_study

    best, rows = runner.best(), trial_rows(runner.study)
    caption = run_caption(base.model, base.profile, "tuning study")
    plot = plot_study(rows, runner.importances(), metric, base.plots_dir, caption)
    if best is None:
        print(f"no trial finished; nothing to recommend (trial logs in {files.trials})")
    else:
        print(f"best: trial {best['number']}, validation {metric} {best['value']:.4f}; train it with:")
        print(best["command"])
        print(f"(saved in {files.best_command}; plot {plot})")
    return StudyResult(files, metric, best, rows, plot)


def _max_positions(model: str) -> int | None:
    from transformers import AutoConfig

    try:
        return getattr(AutoConfig.from_pretrained(model), "max_position_embeddings", None)
    except (OSError, ValueError):
        return None
