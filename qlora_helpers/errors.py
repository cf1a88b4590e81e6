"""Errors the user can fix.

Anything raised as `UserError` is bad input or a missing resource: the command line prints its
message as one line `error: ...` and exits with code 2, without a traceback. Every message says what
is wrong *and* what to do about it.
"""


class UserError(Exception):
    """Bad input or environment that the user can fix; the message names the fix."""


def require(condition: bool, message: str) -> None:
    """Raise `UserError(message)` unless `condition` holds."""
    if not condition:
        raise UserError(message)


class OutOfMemory(UserError):
    """Training ran out of GPU memory: bad input for this GPU (the message names the knobs); a tuner records the
    trial as failed and goes on."""
