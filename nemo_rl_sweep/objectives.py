"""Objectives are named metrics with a direction, not positions in a tuple.

A job returns a mapping of metric name to number (or one bare number when there is one objective); this
module turns that into the values Optuna records, and turns every way a job can go wrong (NaN, inf, a
missing metric, a non-number) into a reason a person can act on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from optuna.study import StudyDirection

from nemo_rl_sweep.errors import SweepConfigError

_DIRECTIONS = {"minimize": StudyDirection.MINIMIZE, "maximize": StudyDirection.MAXIMIZE}


class FailureKind(StrEnum):
    """Why a trial did not give a value; the sweep's failure policy reads this, never the text."""

    ERROR = "error"  # the job raised, or its launcher lost it
    PRUNED = "pruned"  # the pruner stopped it (not a failure: the trial is PRUNED)
    MISSING_METRIC = "missing_metric"  # it finished without reporting an objective
    NOT_FINITE = "not_finite"  # an objective was NaN or infinite
    NOT_METRICS = "not_metrics"  # it returned something that is not a number or a mapping
    INFEASIBLE = "infeasible"  # its config breaks a rule of the trainer; never launched
    TIMEOUT = "timeout"  # it ran past hydra.sweeper.trial_timeout_s and was stopped
    KILLED = "killed"  # its process was killed by a signal (the OOM killer's SIGKILL, a SIGSEGV)


class TrialTimeout(Exception):
    """Raised inside a job that ran past ``hydra.sweeper.trial_timeout_s``; the trial fails with
    kind ``timeout``."""


# what a signal that killed a trial's process most likely means, for the recorded reason
_SIGNAL_CAUSES = {
    "SIGKILL": "likely the kernel's out-of-memory killer (check `dmesg` and the job's memory use), "
    "or someone ran kill -9",
    "SIGSEGV": "a segmentation fault in native code (a CUDA or C extension crash)",
    "SIGBUS": "a bus error in native code (often a full /dev/shm or a truncated memory-mapped file)",
    "SIGABRT": "the process aborted itself (a failed assertion in native code)",
    "SIGTERM": "it was asked to stop (scancel, a shutdown)",
}


def signal_reason(error: BaseException | str) -> str | None:
    """The recorded reason when ``error`` says a trial's process died of a signal (a launcher's
    worker that was killed), naming the signal and its likely cause; None otherwise."""
    import re
    import signal as signals

    text = str(error)
    match = re.search(r"\b(SIG[A-Z]+)\((-?\d+)\)", text) or re.search(
        r"(?:killed by|terminated by|received) signal (\d+)", text
    )
    if match is None:
        return None
    number = abs(int(match.groups()[-1]))
    try:
        name = signals.Signals(number).name
    except ValueError:
        name = match.group(1) if match.group(1).startswith("SIG") else f"signal {number}"
    cause = _SIGNAL_CAUSES.get(name, "")
    return f"the trial's process was killed by {name} (signal {number})" + (
        f": {cause}" if cause else ""
    )


class TrialFailure(Exception):
    """A trial that gave no usable value: ``kind`` says why, the message is the recorded reason."""

    def __init__(self, kind: FailureKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class Objectives:
    names: tuple[str, ...]
    directions: tuple[str, ...]

    @classmethod
    def from_settings(
        cls, metric: str | Sequence[str], direction: str | Sequence[str]
    ) -> Objectives:
        names = [metric] if isinstance(metric, str) else list(metric)
        dirs = [direction] if isinstance(direction, str) else list(direction)
        if not names or any(not isinstance(n, str) or not n.strip() for n in names):
            raise SweepConfigError(
                "hydra.sweeper.metric",
                f"needs one or more metric names, got {metric!r}",
                "write hydra.sweeper.metric=validation/accuracy",
            )
        if len(set(names)) != len(names):
            raise SweepConfigError("hydra.sweeper.metric", "names a metric twice", "list each once")
        if len(dirs) == 1 and len(names) > 1 and isinstance(direction, str):
            dirs = dirs * len(names)
        if len(dirs) != len(names):
            raise SweepConfigError(
                "hydra.sweeper.direction",
                f"has {len(dirs)} entries for {len(names)} metrics {names}",
                "give one direction per metric, e.g. hydra.sweeper.direction=[maximize,minimize]",
            )
        for d in dirs:
            if str(d).lower() not in _DIRECTIONS:
                raise SweepConfigError(
                    "hydra.sweeper.direction",
                    f"{d!r} is not a direction",
                    "use minimize or maximize",
                )
        return cls(tuple(names), tuple(str(d).lower() for d in dirs))

    @property
    def study_directions(self) -> list[StudyDirection]:
        return [_DIRECTIONS[d] for d in self.directions]

    def read(self, returned: Any) -> tuple[list[float], dict[str, float]]:
        """The objective values and every numeric metric of one job's return value."""
        metrics = as_metrics(returned, self.names[0])
        values = []
        for name in self.names:
            if name not in metrics:
                reported = ", ".join(sorted(metrics)) or "nothing"
                raise TrialFailure(
                    FailureKind.MISSING_METRIC,
                    f"the job did not report metric {name!r} (it reported: {reported})",
                )
            value = metrics[name]
            if not math.isfinite(value):
                raise TrialFailure(FailureKind.NOT_FINITE, f"metric {name!r} is {value}")
            values.append(value)
        return values, metrics


def direction_of(metric: str) -> str | None:
    """The direction a metric's name implies (a loss is minimized, an accuracy or a reward is
    maximized); None when the name does not say."""
    leaf = str(metric).rsplit("/", 1)[-1]
    if leaf in ("loss", "val_loss") or leaf.endswith("_loss"):
        return "minimize"
    if leaf in ("accuracy", "reward") or leaf.endswith(("_accuracy", "_reward")):
        return "maximize"
    return None


def as_metrics(returned: Any, single_name: str) -> dict[str, float]:
    """A job's return value as ``{name: float}``; a bare number counts as the first objective."""
    if returned is None:
        return {}
    if isinstance(returned, bool):
        raise TrialFailure(FailureKind.NOT_METRICS, f"the job returned {returned!r}, not metrics")
    if isinstance(returned, (int, float)):
        return {single_name: float(returned)}
    if isinstance(returned, Mapping) or hasattr(returned, "items"):
        out = {}
        for key, value in returned.items():
            try:
                out[str(key)] = float(value)
            except (TypeError, ValueError):
                continue
        return out
    raise TrialFailure(
        FailureKind.NOT_METRICS,
        f"the job returned a {type(returned).__name__}, not a dict of metrics",
    )
