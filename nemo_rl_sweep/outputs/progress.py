"""What a person watching a sweep sees while it runs: one line per event, no control characters.

A sweep runs for hours, often into a Slurm log that is read with ``tail`` or ``less``. So every event is
one plain line, and each finished trial's line carries the whole state of the sweep: how many trials
are done out of how many, how many run, failed and were pruned, the best value so far with its
parameters, and an estimate of the time left. In a terminal the trial state is coloured; anywhere else
(a file, a pipe, a Slurm log) the output holds no escape sequence or carriage return.

The sweep loop calls these hooks; another front end (a notebook, a richer terminal view) can pass its own
object with the same methods.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.outputs.format import (
    PREFIX,
    clean_text,
    format_duration,
    format_number,
    format_params,
    metric_names,
    objectives_text,
)

_COLOURS = {"COMPLETE": "32", "PRUNED": "33", "FAIL": "31", "RUNNING": "36"}


def stream_is_tty(stream: TextIO) -> bool:
    """Colour only for a person at a terminal; ``NO_COLOR`` and ``TERM=dumb`` turn it off."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class ConsoleProgress:
    """Plain lines on ``stream`` (stdout by default), fine in a terminal and in a Slurm log.

    ``colour`` forces colour on or off; by default it is on only when the stream is a terminal.
    ``clock`` is injectable so the time estimate can be checked without waiting.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        colour: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.colour = colour
        self.clock = clock
        self.n_trials: int | None = None
        self.started_at: float | None = None
        self.finished_here = 0
        self.running: dict[int, float] = {}
        self.durations: list[float] = []

    # ------------------------------------------------------------------------------ output

    @property
    def out(self) -> TextIO:
        return self.stream or sys.stdout

    def _use_colour(self) -> bool:
        return self.colour if self.colour is not None else stream_is_tty(self.out)

    def _paint(self, text: str, state: str) -> str:
        code = _COLOURS.get(state)
        if not code or not self._use_colour():
            return text
        return f"\x1b[{code}m{text}\x1b[0m"

    def _write(self, line: str) -> None:
        print(f"{PREFIX} {line}", file=self.out, flush=True)

    # ------------------------------------------------------------------------------- hooks

    def message(self, text: str) -> None:
        self._write(clean_text(text, None))

    def sweep_started(self, study: optuna.Study, n_trials: int | None) -> None:
        self.n_trials = n_trials
        self.started_at = self.clock()
        total = self._total(study.get_trials(deepcopy=False))
        self.message(
            f"study {study.study_name!r}: {total if total is not None else '?'} trials, objective "
            + objectives_text(study)
        )

    def trial_started(self, number: int, overrides: Sequence[str]) -> None:
        self.running[number] = self.clock()
        self.message(
            f"trial {number} started ({len(self.running)} running here): {' '.join(overrides)}"
        )

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        started = self.running.pop(trial.number, None)
        duration = trial.user_attrs.get(ledger.ATTR_DURATION)
        if duration is None and started is not None:
            duration = self.clock() - started
        if duration is not None:
            self.durations.append(float(duration))
        self.finished_here += 1
        trials = study.get_trials(deepcopy=False)
        head = self._trial_outcome(study, trial)
        took = f" in {format_duration(duration)}" if duration is not None else ""
        self._write(f"trial {trial.number} {head}{took} | {self.status(study, trials)}")

    def sweep_finished(self, study: optuna.Study) -> None:
        elapsed = self.clock() - self.started_at if self.started_at is not None else None
        self._write(
            f"sweep ended after {format_duration(elapsed)}, {self.finished_here} trial(s) run here | "
            + self.status(study, study.get_trials(deepcopy=False), eta=False)
        )

    # ----------------------------------------------------------------------------- pieces

    def _trial_outcome(self, study: optuna.Study, trial: FrozenTrial) -> str:
        names = metric_names(study)
        if trial.state == TrialState.COMPLETE:
            shown = ", ".join(f"{n}={format_number(v)}" for n, v in zip(names, trial.values or []))
            return f"{self._paint('done', 'COMPLETE')}: {shown}"
        if trial.state == TrialState.PRUNED:
            last = trial.intermediate_values
            if last:
                step = max(last)
                return f"{self._paint('pruned', 'PRUNED')} at step {step} ({names[0]}={format_number(last[step])})"
            return self._paint("pruned", "PRUNED")
        reason = clean_text(trial.user_attrs.get(ledger.ATTR_FAIL_REASON, "no reason recorded"))
        return f"{self._paint('FAILED', 'FAIL')}: {reason}"

    def _total(self, trials: Sequence[FrozenTrial]) -> int | None:
        """The budget: n_trials, or for a grid (no n_trials) every point queued or taken."""
        if self.n_trials is not None:
            return self.n_trials
        taken = sum(ledger.counts_toward_budget(t) for t in trials)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        return taken + waiting or None

    def status(self, study: optuna.Study, trials: Sequence[FrozenTrial], eta: bool = True) -> str:
        """``done 4/20, running 2, failed 1, pruned 0 | best ... | ETA ...`` for the whole study."""
        counts = {s: 0 for s in TrialState}
        for t in trials:
            counts[t.state] += 1
        done = sum(t.state in ledger.FINISHED and ledger.counts_toward_budget(t) for t in trials)
        total = self._total(trials)
        parts = [
            f"done {done}/{total if total is not None else '?'}",
            f"running {counts[TrialState.RUNNING]}",
            f"failed {counts[TrialState.FAIL]}",
            f"pruned {counts[TrialState.PRUNED]}",
        ]
        line = ", ".join(parts) + " | " + best_text(study, trials)
        if eta and total is not None:
            line += " | ETA " + self.eta_text(total - done)
        return line

    def eta_text(self, remaining: int) -> str:
        """Time left from this sweeper's own pace (trials finished per second of wall time).

        Wall time per finished trial already accounts for trials running side by side; trials a
        resumed study finished earlier are not counted, since their time is not this run's pace.
        """
        if remaining <= 0:
            return "0s"
        if self.started_at is None or self.finished_here == 0:
            return "?"
        pace = (self.clock() - self.started_at) / self.finished_here
        return format_duration(pace * remaining)


def best_text(study: optuna.Study, trials: Sequence[FrozenTrial]) -> str:
    """The best value so far and its parameters, or the size of the Pareto front."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return "best: none yet"
    names = metric_names(study)
    if len(study.directions) > 1:
        try:
            front = study.best_trials
        except Exception:  # a storage mid-write; the next line will say
            return "Pareto front: ?"
        return f"Pareto front: {len(front)} trial(s) ({', '.join(str(t.number) for t in front[:8])}{', ...' if len(front) > 8 else ''})"
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    best = (max if maximize else min)(complete, key=lambda t: t.value)
    return (
        f"best {names[0]}={format_number(best.value)} (trial {best.number}: "
        f"{format_params(best.params)})"
    )
