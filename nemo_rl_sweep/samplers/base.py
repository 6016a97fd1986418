"""What every nemo_rl_sweep sampler shares.

Each strategy is an Optuna sampler so that one ledger (an Optuna study) serves every strategy, and so
that users can hand our samplers to their own ``optuna.create_study``. A sampler is usually given the
whole search space up front (the sweeper knows it before the first trial); without one it falls back to
the intersection of the spaces of finished trials, as Optuna's own model-based samplers do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.search_space import intersection_search_space
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


class SpaceSampler(BaseSampler):
    """A sampler that knows its search space, with a uniform fallback for anything else."""

    def __init__(
        self, search_space: dict[str, BaseDistribution] | None = None, *, seed: int | None = None
    ) -> None:
        self._search_space = dict(search_space) if search_space is not None else None
        self._seed = seed
        self._rng = np.random.RandomState(seed)

    def reseed_rng(self) -> None:
        self._rng = np.random.RandomState()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if self._search_space is not None:
            return dict(self._search_space)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return {
            name: dist
            for name, dist in intersection_search_space(complete).items()
            if not dist.single()
        }

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return from_unit(param_distribution, float(self._rng.uniform()))


def from_unit(dist: BaseDistribution, u: float) -> Any:
    """Map ``u`` in [0, 1) to a value of ``dist``, equal-width bins for discrete values, log-aware."""
    u = min(max(u, 0.0), np.nextafter(1.0, 0.0))
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(u * len(dist.choices))]
    if isinstance(dist, IntDistribution):
        if dist.log:
            lo, hi = math.log(dist.low - 0.5), math.log(dist.high + 0.5)
            value = round(math.exp(lo + u * (hi - lo)))
            return int(min(max(value, dist.low), dist.high))
        n = (dist.high - dist.low) // dist.step + 1
        return int(dist.low + int(u * n) * dist.step)
    if isinstance(dist, FloatDistribution):
        if dist.step is not None:
            n = int(round((dist.high - dist.low) / dist.step)) + 1
            return float(min(dist.low + int(u * n) * dist.step, dist.high))
        if dist.log:
            lo, hi = math.log(dist.low), math.log(dist.high)
            return float(min(math.exp(lo + u * (hi - lo)), dist.high))
        return float(dist.low + u * (dist.high - dist.low))
    raise TypeError(f"unsupported distribution {dist!r}")


def trials_in(study: Study, states: Sequence[TrialState]) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=tuple(states))
