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

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlora_helpers.config import TrainConfig
from qlora_helpers.errors import UserError, require
from qlora_helpers.run_files import writable, write_json
from qlora_helpers.tune.space import SearchSpace, build_space, check_same_space, layer_groups

STUDY_NAME = "qlora-bert"
INSTALL_TUNE = "pip install -r requirements-tune.txt, in the project's folder (the package is not on PyPI)"
PRUNER = {"n_startup_trials": 2, "n_warmup_steps": 30}  # no pruning before 2 finished trials or 30% of a run
FINGERPRINT = "data"  # the study's user attribute that says which data and task it tunes


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError(f"qlora-bert tune needs Optuna, an optional extra: {INSTALL_TUNE}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass
class StudyFiles:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "study.db"

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.db.resolve()}"

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    @property
    def best_json(self) -> Path:
        return self.root / "best_trial.json"

    @property
    def best_command(self) -> Path:
        return self.root / "best_command.txt"


@dataclass
class StudyResult:
    files: StudyFiles
    metric: str
    best: dict[str, Any] | None  # number, value, params, changes, command
    trials: list[dict[str, Any]]  # number, state, value, params, message
    plot: Path | None
    test_metrics: dict[str, Any] | None = None  # --train-best: the best configuration's test scores


# ---- checks before anything is written -----------------------------------------------------------


def check_files(files: StudyFiles, resume: bool, overwrite: bool, plots_dir: str) -> None:
    require(not files.root.is_file(), f"output_dir {files.root} is a file; pass a directory for the study")
    require(writable(files.root), f"cannot write to {files.root}; choose another --output-dir")
    plots = Path(plots_dir)  # the study's plot is drawn at its end: a place it cannot go is said before the trials
    require(not plots.is_file(), f"plots_dir {plots} is a file; pass a directory")
    require(writable(plots), f"cannot write to {plots} (read-only or no permission); choose another --plots-dir")
    if resume:
        require(files.db.is_file(), f"no study to resume in {files.root} (no study.db); leave out --resume")
        require(not overwrite, "--resume continues the study and --overwrite starts a new one: pass one of them")
    else:
        require(
            overwrite or not files.db.exists(),
            f"{files.root} already holds a study (study.db); --resume continues it, --overwrite starts a new one, "
            f"or choose another --output-dir",
        )


def _file_digest(path: str | None) -> str | None:
    if not path or not Path(path).expanduser().is_file():
        return None
    digest = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def fingerprint(cfg: TrainConfig, data) -> dict[str, Any]:
    """What makes two studies comparable: the same rows (file contents), columns, split and task."""
    return {
        "dataset": cfg.dataset,
        "dataset_sha256": _file_digest(cfg.dataset),
        "test_file_sha256": _file_digest(cfg.test_file),
        "text": data.text_input.name,
        "label_column": data.labels.column,
        "task": data.task.name,
        "labels": [str(n) for n in data.labels.names],
        "sizes": {k: len(v) for k, v in data.splits.items()},
        "split_seed": cfg.seed if cfg.split_seed is None else cfg.split_seed,
        "model": cfg.model,
    }


def check_same_data(stored: dict[str, Any] | None, now: dict[str, Any], root: Path) -> None:
    if stored is None:
        return
    differ = [k for k in now if stored.get(k) != now[k]]
    require(
        not differ,
        f"the study in {root} tunes other data or another task ({', '.join(differ)}: "
        f"{', '.join(f'{stored.get(k)!r} there, {now[k]!r} now' for k in differ[:2])}); "
        f"give the study's own data and model, or choose another --output-dir",
    )


# ---- the study -----------------------------------------------------------------------------------


def counted(study) -> list:
    """The trials that count towards --trials: finished ones, and failures other than an interrupted study."""
    from optuna.trial import TrialState

    interrupted = set(study.user_attrs.get("interrupted", []))
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.number not in interrupted)
    ]


def mark_interrupted(study) -> list[int]:
    """Trials left running by a study that was killed: failed, marked interrupted, not counted, not re-run."""
    from optuna.trial import TrialState

    numbers = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    if numbers:
        study.set_user_attr("interrupted", sorted(set(study.user_attrs.get("interrupted", [])) | set(numbers)))
        for number in numbers:
            study.tell(number, state=TrialState.FAIL)
    return numbers


def load_study(files: StudyFiles):
    """The study to resume; a damaged file, or an SQLite file that holds no study of this tool, is one line."""
    import sqlite3

    import optuna

    try:
        # read-only first: Optuna would add its tables to another program's file before finding no study there
        with sqlite3.connect(f"file:{files.db}?mode=ro", uri=True) as con:
            tables = {row[0] for row in con.execute("select name from sqlite_master where type = 'table'")}
        if "studies" not in tables:
            raise KeyError("no studies table")
        study = optuna.load_study(study_name=STUDY_NAME, storage=files.storage)
        study.get_trials(deepcopy=False)
        return study
    except Exception as e:  # sqlite's, sqlalchemy's and Optuna's own errors (KeyError for a missing study)
        raise UserError(
            f"{files.db} cannot be resumed: it is damaged or holds no study of this tool ({type(e).__name__}); "
            f"--overwrite starts a new study there, or choose another --output-dir"
        ) from None


def child_launcher(spec_path: Path, log_path: Path) -> int:
    """Run one trial in a fresh Python process (same package, same working directory); its exit code."""
    root = str(Path(__file__).resolve().parents[2])  # the checkout: the package as this process imported it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    with open(log_path, "w") as log:
        command = [sys.executable, "-m", "qlora_helpers.tune.trial", str(spec_path)]
        return subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent
        ).returncode


def die_with_parent() -> None:
    """In a trial's process before it starts (Linux): the kernel kills it when the study's process dies, even by
    SIGKILL, so no orphan trial trains on beside a resumed study or writes into it later. Elsewhere: nothing."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def train_command(cfg: TrainConfig, output_dir: str) -> list[str]:
    """`qlora-bert train` arguments that rebuild `cfg` (its profile plus every setting that differs from it)."""
    from qlora_helpers.presets import make_config

    preset = make_config(cfg.profile).to_dict()
    args = ["train", "--profile", cfg.profile]
    skip = {"profile", "output_dir", "overwrite"}
    for name, value in cfg.to_dict().items():
        if name in skip or value == preset.get(name) or value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    return args + ["--output-dir", output_dir]


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


def trial_rows(study) -> list[dict[str, Any]]:
    """Every trial: number, state, score (a pruned one: its best before it stopped), settings, why it ended,
    seconds, and whether a stop cut it off."""
    interrupted = study.user_attrs.get("interrupted", [])
    return [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value if t.value is not None else t.user_attrs.get("best_value"),
            "params": t.params,
            "message": t.user_attrs.get("failure") or t.user_attrs.get("stopped") or "",
            "seconds": round(t.duration.total_seconds(), 1) if t.duration else None,
            "interrupted": t.number in interrupted,
        }
        for t in study.get_trials(deepcopy=False)
    ]


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()] if path.is_file() else []
    return lines[-1] if lines else ""


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
    from qlora_helpers.figures import run_caption
    from qlora_helpers.pipeline import load_data
    from qlora_helpers.report.plots import plot_study
    from qlora_helpers.train.loss import check_class_weights
    from qlora_helpers.train.schedule import Schedule

    optuna = require_optuna()
    require(isinstance(trials, int) and trials >= 1, f"--trials must be at least 1, got {trials}")
    require(timeout is None or timeout > 0, f"--timeout is seconds > 0, got {timeout}")
    base.validate()
    files = StudyFiles(Path(base.output_dir))
    check_files(files, resume, base.overwrite, base.plots_dir)
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
    now = fingerprint(base, data)
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
        study.set_user_attr("selection_metric", task.selection_metric)
    interrupted = mark_interrupted(study)
    if interrupted:
        print(f"resuming: trial(s) {interrupted} were cut off by the stop; recorded as failed, not counted")
    runner = Study(optuna, study, space, base, files, task.selection_metric)
    deadline = time.time() + timeout if timeout else None
    runner.run(trials, deadline, launcher or child_launcher)
    runner.save_best()
    best, rows = runner.best(), trial_rows(study)
    plot = plot_study(
        rows,
        runner.importances(),
        task.selection_metric,
        base.plots_dir,
        run_caption(base.model, base.profile, "tuning study"),
    )
    if best is None:
        print(f"no trial finished; nothing to recommend (trial logs in {files.trials})")
    else:
        print(f"best: trial {best['number']}, validation {task.selection_metric} {best['value']:.4f}; train it with:")
        print(best["command"])
        print(f"(saved in {files.best_command}; plot {plot})")
    result = StudyResult(files, task.selection_metric, best, rows, plot)
    if train_best:
        require(best is not None, "no trial finished, so there is no best configuration to train")
        result.test_metrics = train_best_configuration(best["command"], files.root / "best")
    return result


def _max_positions(model: str) -> int | None:
    from transformers import AutoConfig

    try:
        return getattr(AutoConfig.from_pretrained(model), "max_position_embeddings", None)
    except (OSError, ValueError):
        return None


def train_best_configuration(command: str, output_dir: Path) -> dict[str, Any]:
    """The best trial's `qlora-bert train` command, run as printed (its own process); its metrics.json."""
    args = shlex.split(command)[1:]
    root = str(Path(__file__).resolve().parents[2])  # the checkout: the package as this process imported it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    code = subprocess.run([sys.executable, "-m", "qlora_helpers", *args], env=env).returncode
    require(code == 0, f"training the best configuration failed (exit {code}); its command is in best_command.txt")
    return json.loads((output_dir / "metrics.json").read_text())
