"""A study's files on disk: its folder checked before anything is written, the Optuna storage opened or resumed
(refused when it holds another data set), and the trials counted and listed as the plot and the records show them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlora_helpers.config import TrainConfig
from qlora_helpers.errors import UserError, require
from qlora_helpers.run_files import writable

STUDY_NAME = "qlora-bert"


FINGERPRINT = "data"  # the study's user attribute that says which data and task it tunes


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
