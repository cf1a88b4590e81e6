"""The runner's `tune` kind: a time-limited `qlora-bert tune` study on validation, then its best setting and the
plain default each retrained on the same seeds and scored on the experiment's test split (the published dev set).

The study and the retraining may run in separate calls (a GPU call lasts 10 minutes): the study's summary is
written to its own result file (`study_output`) as soon as it ends, and a later call that finds that file, in the
output's folder or in benchmarks/results/, retrains from it instead of running the study again.
`--only study` runs the study alone; `--only default tuned --seeds 43` a share of the retraining.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any


def space_flags(space: dict[str, str]) -> list[str]:
    return [part for name, text in space.items() for part in ("--" + name.replace("_", "-"), str(text))]


def study_summary(study_dir: Path) -> list[dict[str, Any]]:
    """Every trial of the study, as `qlora-bert tune` summarises it (none when no study was written)."""
    import optuna

    from qlora_helpers.tune.files import STUDY_NAME, StudyFiles, trial_rows

    files = StudyFiles(study_dir)
    if not files.db.is_file():
        return []
    return trial_rows(optuna.load_study(study_name=STUDY_NAME, storage=files.storage))


def run_study(spec: dict[str, Any], settings: dict[str, Any], target: Path) -> dict[str, Any]:
    from benchmarks.experiment import cli, provenance, train_flags, write

    study = spec.get("study", {})
    study_dir = Path(settings["output_dir"] + "-study")
    base = {k: v for k, v in settings.items() if k not in ("output_dir", "overwrite", "seed")}
    args = ["tune", "--profile", spec.get("profile", "full"), *train_flags(base), "--output-dir", str(study_dir)]
    args += ["--seed", str(study.get("seed", 42)), "--trials", str(study.get("trials", 200))]
    args += ["--timeout", str(study.get("timeout", 600)), *space_flags(study.get("space", {}))]
    started = time.perf_counter()
    code = cli(args)
    best_file = study_dir / "best_trial.json"
    payload = {
        "tune_command": shlex.join(["qlora-bert", *args]),
        "exit": code,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "best": json.loads(best_file.read_text()) if best_file.is_file() else None,
        "trials": study_summary(study_dir),
        **provenance(spec),
    }
    write(target, payload)
    print(f"wrote the study's summary to {target}")
    return payload


def run_tune(spec: dict[str, Any], settings: dict[str, Any], output: Path) -> dict[str, Any]:
    from benchmarks.experiment import HERE, ONLY
    from benchmarks.kinds.training import run_train

    name = spec["study_output"]
    found = [p for p in (output.parent / name, HERE / "results" / name) if p.is_file()]
    if found:
        study = json.loads(found[0].read_text())
        print(f"reusing the study in {found[0]} (delete it to run the study again)")
    elif ONLY and "study" not in ONLY:
        raise SystemExit(f"error: no {name} yet; run the study first: --only study")
    else:
        study = run_study(spec, settings, output.parent / name)
    best = study.get("best")
    variants = [{"name": "default", "set": {}}]
    if best:
        variants.append({"name": "tuned", "set": best["changes"]})
    elif not ONLY or "tuned" in ONLY:
        print("the study finished no trial: only the default is trained")
    seeds = {"seeds": spec.get("seeds", [42, 43, 44])}
    result = run_train({**spec, **seeds, "variants": variants}, settings, output)
    return {**result, "study_file": name, "best": best, "trials_counted": len(study.get("trials", []))}
