"""Installed packages against what the recipe needs: one line naming the package and the install command.

Without this check a missing or old package surfaces deep inside a run as an ImportError or a
TypeError about an unknown keyword argument (e.g. `warmup_ratio`, gone in transformers 5).
"""

from __future__ import annotations

from importlib import metadata

from qlora_helpers.errors import UserError

# transformers 5 is a hard floor (the APIs named below); the other floors are the oldest releases this
# project has run with (torch 2.11 on the lent GPU, peft 0.21, bitsandbytes 0.50, which quantizes on the
# CPU too). requirements.txt pins the versions CI tests.
MINIMUM_VERSIONS = {
    "torch": ("2.11", "the 4-bit training path as tested"),
    "transformers": ("5.0", "`dtype=`, `eval_strategy` and warmup_steps < 1 as a share of the steps"),
    "peft": ("0.21", "LoRA on bitsandbytes 4-bit layers as tested"),
    "bitsandbytes": ("0.50", "NF4 with double quantization, on the CPU as well as CUDA"),
    "accelerate": ("1.1", "the Trainer of transformers 5"),
}
INSTALL = "pip install -r requirements.txt"


def _release(text: str) -> tuple[int, ...]:
    """(5, 0, 0) for "5.0.0rc1" or "2.11.0+cu130": pre-releases count as their release."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text).release
    except InvalidVersion:
        return (0,)


def check_dependencies(packages: dict[str, tuple[str, str]] | None = None) -> dict[str, str]:
    """Installed version of each required package; `UserError` for the first one missing or too old."""
    found = {}
    for name, (minimum, needed_for) in (packages or MINIMUM_VERSIONS).items():
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise UserError(
                f"{name} is not installed; it is needed for {needed_for}: "
                f"{INSTALL} (or pip install '{name}>={minimum}')"
            ) from None
        if _release(version) < _release(minimum):
            raise UserError(
                f"{name} {version} is too old (needs >= {minimum} for {needed_for}): "
                f"{INSTALL} (or pip install -U '{name}>={minimum}')"
            )
        found[name] = version
    return found
