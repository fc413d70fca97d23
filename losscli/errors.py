"""Errors that the CLI turns into one clear line and an exit code.

Library code raises these (or ``ValueError``/``KeyError`` subclasses of them) so that
users of the Python API get ordinary exceptions, while the CLI maps them to exit codes:
2 for bad usage or bad input, 1 for a run that failed part-way.
"""

from __future__ import annotations


class LossCLIError(Exception):
    """Base class: ``exit_code`` tells the CLI how to exit."""

    exit_code = 2


class UsageError(LossCLIError, ValueError):
    """Bad input from the user: unknown name, wrong type, malformed file. Exit code 2."""

    exit_code = 2


class UnknownNameError(UsageError, KeyError):
    """A name not found in a registry; the message carries a "did you mean" hint."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""


class RunFailedError(LossCLIError, RuntimeError):
    """A run that started and then failed (NaN loss, exception). Exit code 1."""

    exit_code = 1


class Interrupted(LossCLIError):
    """Ctrl-C: the message says what was kept. Exit code 130 (128 + SIGINT), as shells expect."""

    exit_code = 130
