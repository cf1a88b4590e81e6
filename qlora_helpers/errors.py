"""Errors the user can fix.

Anything raised as `UserError` is bad input or a missing resource: the command line prints its
message as one line `error: ...` and exits with code 2, without a traceback. Every message says what
is wrong *and* what to do about it.
"""

from __future__ import annotations

import math
from typing import Any


class UserError(Exception):
    """Bad input or environment that the user can fix; the message names the fix."""


def require(condition: bool, message: str) -> None:
    """Raise `UserError(message)` unless `condition` holds."""
    if not condition:
        raise UserError(message)


class OutOfMemory(UserError):
    """Training ran out of GPU memory: bad input for this GPU (the message names the knobs); a tuner records the
    trial as failed and goes on."""


def require_positive(cfg: Any, name: str, integer: bool = False) -> None:
    """A setting of `cfg` that must be a positive (whole) number; the error names its flag."""
    v = getattr(cfg, name)
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    require(
        ok and not isinstance(v, bool) and v > 0 and math.isfinite(v),
        f"{name} must be a positive {'whole number' if integer else 'number'}, got {v!r}; "
        f"set --{name.replace('_', '-')} to a value > 0",
    )


def require_names(name: str, v: Any) -> None:
    """A setting that must be a list of names, or None."""
    require(
        v is None or (isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)),
        f"{name} must be a list of names, got {v!r}",
    )
