"""Errors a user can act on.

Every refusal of bad input is a ``SweepConfigError``: one line that names the offending key (or file)
and says how to fix it. The Hydra plugin prints the message alone, without a traceback, and exits
non-zero before any job starts.
"""

from __future__ import annotations


class SweepConfigError(ValueError):
    """Bad sweep input, found before any trial runs.

    ``key`` is the config key or file the message is about; the message itself is one line.
    """

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key
        self.problem = problem
        self.fix = fix
        super().__init__(f"{key}: {problem}. Fix: {fix}")


class SweepStopped(RuntimeError):
    """The sweep stopped on purpose (failure rate passed, interrupted); the ledger is consistent."""
