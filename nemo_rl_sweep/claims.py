"""Claims: which trials a sweeper may run when several sweepers share one study.

A trial is claimed first (``study.ask``, which the storage numbers atomically) and checked after:
a claim that must not run is closed as surplus (failed and stale, so it counts nowhere) and never
launched. The loop asks a sampler for its claims (``sampler.claims(n_trials)``) and falls back to
``BudgetClaims``; a strategy that owns its points (grid) brings its own.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

import optuna
from optuna.trial import TrialState

from nemo_rl_sweep import ledger


class Claim(Enum):
    ACCEPT = "accept"  # run it
    RETRY = "retry"  # closed as surplus; ask again
    STOP = "stop"  # closed as surplus; nothing more to ask for


class Claims(Protocol):
    def prepare(self, study: optuna.Study) -> None:
        """Before the first ask (and before a preview): e.g. enqueue the points still to run."""

    def room(self, study: optuna.Study, n_jobs: int) -> int:
        """How many trials may be asked now (at most ``n_jobs``); 0 ends the sweep."""

    def accept(self, study: optuna.Study, trial: optuna.Trial) -> Claim:
        """Whether a trial just asked may run; one that may not is closed before this returns."""


def close_surplus(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """A claimed trial that must not run: failed and stale, so it counts nowhere."""
    ledger.mark_stale(study, trial, f"not run: {reason}")


class BudgetClaims:
    """At most ``n_trials`` trials run in the study, counted in trial-number order over all sweepers."""

    def __init__(self, n_trials: int) -> None:
        self.n_trials = n_trials

    def prepare(self, study: optuna.Study) -> None:
        return None

    def room(self, study: optuna.Study, n_jobs: int) -> int:
        used = sum(ledger.counts_toward_budget(t) for t in study.get_trials(deepcopy=False))
        return min(n_jobs, self.n_trials - used)

    def accept(self, study: optuna.Study, trial: optuna.Trial) -> Claim:
        rank = sum(
            ledger.counts_toward_budget(t)
            for t in study.get_trials(deepcopy=False)
            if t.number <= trial.number and t.state != TrialState.WAITING
        )
        if rank > self.n_trials:
            close_surplus(study, trial, "the study's n_trials were already used up")
            return Claim.STOP
        return Claim.ACCEPT
