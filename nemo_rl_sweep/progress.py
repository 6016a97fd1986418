"""What a person watching a sweep sees while it runs: one line per event, no control characters.

The driver calls these hooks; another front end (a richer terminal view, a notebook) can pass its own
object with the same methods.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep import ledger


class ConsoleProgress:
    """Plain lines on ``stream``, fine in a terminal and in a Slurm log."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def message(self, text: str) -> None:
        print(f"[sweep] {text}", file=self.stream or sys.stdout, flush=True)

    def sweep_started(self, study: optuna.Study, n_trials: int | None) -> None:
        names = study.metric_names or []
        dirs = [d.name.lower() for d in study.directions]
        self.message(
            f"study {study.study_name!r}: {n_trials if n_trials is not None else 'all grid'} trials, "
            "objective " + ", ".join(f"{n} ({d})" for n, d in zip(names, dirs))
        )

    def trial_started(self, number: int, overrides: Sequence[str]) -> None:
        self.message(f"trial {number} starts: {' '.join(overrides)}")

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        names = study.metric_names or ["value"]
        if trial.state == TrialState.COMPLETE:
            shown = ", ".join(f"{n}={v:.6g}" for n, v in zip(names, trial.values))
        elif trial.state == TrialState.PRUNED:
            shown = "pruned" + (f" at {trial.value:.6g}" if trial.value is not None else "")
        else:
            shown = "FAILED: " + str(trial.user_attrs.get(ledger.ATTR_FAIL_REASON, ""))
        self.message(f"trial {trial.number} {shown}")

    def sweep_finished(self, study: optuna.Study) -> None:
        pass
