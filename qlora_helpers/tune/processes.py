"""The processes a study starts: each trial in a fresh Python process that dies with the study, and the best
configuration's `qlora-bert train` command, built from a configuration and run as printed."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from qlora_helpers.config import TrainConfig
from qlora_helpers.errors import require


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


def train_best_configuration(command: str, output_dir: Path) -> dict[str, Any]:
    """The best trial's `qlora-bert train` command, run as printed (its own process); its metrics.json."""
    args = shlex.split(command)[1:]
    root = str(Path(__file__).resolve().parents[2])  # the checkout: the package as this process imported it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    code = subprocess.run([sys.executable, "-m", "qlora_helpers", *args], env=env).returncode
    require(code == 0, f"training the best configuration failed (exit {code}); its command is in best_command.txt")
    return json.loads((output_dir / "metrics.json").read_text())
