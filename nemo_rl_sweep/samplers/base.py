"""What every nemo_rl_sweep sampler shares: the Optuna sampler protocol.

Each strategy is an Optuna sampler so that one ledger (an Optuna study) serves every strategy, and so
that users can hand our samplers to their own ``optuna.create_study``. A sampler is usually given the
whole search space up front (the sweeper knows it before the first trial); without one it falls back to
the intersection of the spaces of finished trials, as Optuna's own model-based samplers do.

A parameter outside the relative space (a trial asks for a name the sampler was not told about, or the
first trials of a sweep without a known space) is drawn by the sampler's *fallback*, an Optuna sampler
asked one parameter at a time (``sample_independent``; ``reseed_rng``, ``before_trial`` and
``after_trial`` are passed on to it). Grid and random draw it with :func:`from_unit` from a generator seeded like the
sampler (:class:`UniformDraws`); the GP samplers hand it to Optuna's ``RandomSampler`` (``pareto``
with ``method="nsga2"`` to its NSGA-II, which proposes every parameter). The two draw
different values for the same seed, and the seeded sweeps of both (tests, benchmark tables) depend on
them, so each keeps its own instead of sharing one.
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


class UniformDraws(BaseSampler):
    """Uniform (log-aware, equal-width bins for discrete values) draws, seeded like the sampler."""

    def __init__(self, seed: int | None) -> None:
        self._rng = np.random.RandomState(seed)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return from_unit(param_distribution, float(self._rng.uniform()))

    def reseed_rng(self) -> None:
        self._rng = np.random.RandomState()


class SpaceSampler(BaseSampler):
    """A sampler that knows its search space (or infers it), seeded, with a fallback for the rest.

    ``self._rng`` is the sampler's own seeded generator for its proposals; ``reseed_rng`` (which
    Optuna calls in each worker of ``study.optimize(n_jobs=...)``) reseeds it and the fallback.
    """

    def __init__(
        self,
        search_space: dict[str, BaseDistribution] | None = None,
        *,
        seed: int | None = None,
        fallback: BaseSampler | None = None,
    ) -> None:
        self._search_space = dict(search_space) if search_space is not None else None
        self._seed = seed
        self._rng = np.random.RandomState(seed)
        self._fallback = fallback if fallback is not None else UniformDraws(seed)

    def reseed_rng(self) -> None:
        self._rng = np.random.RandomState()
        self._fallback.reseed_rng()

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
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._fallback.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._fallback.after_trial(study, trial, state, values)


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
