"""Grid search: every combination once, in a stable order, never repeated.

The sweep claims grid points by enqueueing them as WAITING trials (``GridClaims``); Optuna's storage
hands each waiting trial to exactly one ``ask``, so two sweepers on one study never run the same point,
and a resumed sweep runs only the points not yet done. Used on a plain Optuna study, the sampler itself
picks the first point no trial holds yet.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial, Trial, TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.claims import Claim, close_surplus
from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.samplers.base import SpaceSampler
from nemo_rl_sweep.samplers.rules import OPTIONS_KEY, StrategyRules


class GridSampler(SpaceSampler):
    """Runs ``points`` (a list of param dicts) in order; each point once across the study."""

    def __init__(
        self,
        search_space: dict[str, BaseDistribution],
        points: Sequence[dict[str, Any]],
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(search_space, seed=seed)
        self.points = [dict(p) for p in points]

    def pending_points(self, study: Study) -> Iterator[dict[str, Any]]:
        """Points that no live or finished trial holds, in grid order."""
        taken = {_key(point_of(t)) for t in study.get_trials(deepcopy=False) if holds_point(t)}
        return (p for p in self.points if _key(p) not in taken)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        point = next(self.pending_points(study), None)
        if point is None:
            raise RuntimeError("every grid point has been run; stop asking for trials")
        return point

    def claims(self, n_trials: int | None) -> GridClaims:
        """The grid's own claims: its points, not ``n_trials`` (the points are already cut to it)."""
        return GridClaims(self)


def point_of(trial: FrozenTrial) -> dict[str, Any]:
    """The params a trial runs; a WAITING (enqueued) trial holds them as Optuna's fixed params."""
    return trial.params or dict(trial.system_attrs.get("fixed_params", {}))


def holds_point(trial: FrozenTrial) -> bool:
    """A failed trial holds its point too (grid never retries a finished point), except a stale one
    (its sweeper died, or it was closed unrun): that point is run again."""
    if trial.state == TrialState.FAIL and trial.user_attrs.get(ledger.ATTR_STALE):
        return False
    return bool(point_of(trial))


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


class GridClaims:
    """Each grid point runs once across the sweepers of a study.

    Pending points are enqueued as WAITING trials and only those are run. ``pending_points`` skips
    points held by live or finished trials (not by stale ones, which Optuna's ``skip_if_exists`` would
    wrongly count); a point two sweepers enqueue at once is run by the one whose trial came first.
    """

    def __init__(self, sampler: GridSampler) -> None:
        self.sampler = sampler

    def prepare(self, study: Study) -> None:
        for point in list(self.sampler.pending_points(study)):
            study.enqueue_trial(point)

    def room(self, study: Study, n_jobs: int) -> int:
        waiting = sum(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))
        return min(n_jobs, waiting)

    def accept(self, study: Study, trial: Trial) -> Claim:
        point = ledger.trial_system_attrs(study, trial).get("fixed_params")
        if not point:
            close_surplus(study, trial, "no grid point was left for it")
            return Claim.STOP
        if _held_before(study, trial.number, point):
            close_surplus(study, trial, "another sweeper holds the same grid point")
            return Claim.RETRY
        return Claim.ACCEPT


def _held_before(study: Study, number: int, point: dict[str, Any]) -> bool:
    return any(
        t.number < number and holds_point(t) and point_of(t) == point
        for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.WAITING
    )


class _GridRules(StrategyRules):
    """Grid runs the points of the search space; there is nothing to tune."""

    def check_option_names(self, options: Mapping[str, Any]) -> None:
        if options:
            raise SweepConfigError(
                OPTIONS_KEY,
                f"strategy grid takes no options, got {sorted(options)}",
                "remove them",
            )


RULES = _GridRules(
    "grid",
    GridSampler,
    build=lambda space, seed, _, __, points: GridSampler(space, points or [], seed=seed),
)
