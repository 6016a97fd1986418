"""What the GP samplers (``bayes``, ``pareto``) add to the shared base: one notion of "what has been tried".

Both learn from the same trials in the same way: finished trials (and pruned ones, with the value
they stopped at plus the gain finished trials made from that step on) are fitted; trials still
RUNNING are pending points to condition on; FAIL trials are never fitted and never proposed again.
Both start with the same seeded Sobol sequence, hand anything outside the modelled space to Optuna's
RandomSampler (the base's fallback), and never propose a point twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.gp import Hyperparameters
from nemo_rl_sweep.gp.search_space import SpaceEncoding, modelable_space
from nemo_rl_sweep.objectives import FailureKind
from nemo_rl_sweep.samplers.base import SpaceSampler
from nemo_rl_sweep.samplers.rules import OPTIONS_KEY

# the params a trial was given, stored at once, so a concurrent ask sees them while it runs
PARAMS_ATTR = "nemo_rl_sweep:relative_params"
SEEN_TOL = 1e-9  # two encoded points closer than this (max norm) are the same point
FAILED_TOL = 1e-3  # do not propose within this distance of a failed point


def check_startup_trials(n_startup_trials: Any) -> None:
    if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int | np.integer):
        raise SweepConfigError(
            f"{OPTIONS_KEY}.n_startup_trials",
            f"must be a whole number, got {n_startup_trials!r}",
            "set a positive integer such as 10",
        )
    if n_startup_trials <= 0:
        raise SweepConfigError(
            f"{OPTIONS_KEY}.n_startup_trials",
            f"must be positive, got {n_startup_trials}",
            "set a positive integer such as 10 (the model needs some points to start from)",
        )


@dataclass
class History:
    """The study as a model sees it: ``done`` (params, values), ``running`` and ``failed`` params."""

    done: list[tuple[dict[str, Any], list[float]]] = field(default_factory=list)
    running: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def seen(self, space: SpaceEncoding) -> np.ndarray | None:
        points = [p for p, _ in self.done] + self.running
        return space.encode(points) if points else None

    def bad(self, space: SpaceEncoding) -> np.ndarray | None:
        return space.encode(self.failed) if self.failed else None


@dataclass
class Observed:
    """What a model proposes from: the encoded finished points and their values (n, objectives),
    the running points, and the points not to propose again (``seen``; near ``bad``)."""

    space: SpaceEncoding
    X: np.ndarray
    values: np.ndarray
    X_run: np.ndarray | None
    seen: np.ndarray | None
    bad: np.ndarray | None


class ModelBasedSampler(SpaceSampler):
    """The base sampler plus the bookkeeping of a GP sampler; subclasses propose points."""

    def __init__(
        self,
        search_space: dict[str, BaseDistribution] | None,
        *,
        seed: int | None,
        n_startup_trials: int,
        fallback: BaseSampler | None = None,
    ) -> None:
        check_startup_trials(n_startup_trials)
        if fallback is None:
            fallback = RandomSampler(seed=seed)
        super().__init__(search_space, seed=seed, fallback=fallback)
        self._sobol_seed = int(self._rng.randint(2**31 - 1))
        self.n_startup_trials = int(n_startup_trials)
        self._hyper_cache: dict[tuple, Hyperparameters] = {}
        self._sobol_cache: dict[tuple, np.ndarray] = {}

    def check_study(self, study: Study) -> None:
        """Raise ``SweepConfigError`` if this sampler cannot serve ``study`` (called on every ask)."""

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        self.check_study(study)
        return modelable_space(super().infer_relative_search_space(study, trial))

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """A Sobol point while fewer than ``n_startup_trials`` are done, then the model's point."""
        if not search_space:
            return {}
        space = SpaceEncoding(search_space)
        history = self._history(study, trial, search_space)
        seen, bad = history.seen(space), history.bad(space)
        if len(history.done) < self.n_startup_trials:
            x = self._startup_point(space, trial.number, seen, bad)
        else:
            observed = Observed(
                space,
                X=space.encode([p for p, _ in history.done]),
                values=np.array([v for _, v in history.done], dtype=float),
                X_run=space.encode(history.running) if history.running else None,
                seen=seen,
                bad=bad,
            )
            x = self._model_point(observed, study, trial)
        params = space.decode(x)
        self._remember(study, trial, params)
        return params

    def _model_point(self, observed: Observed, study: Study, trial: FrozenTrial) -> np.ndarray:
        """The encoded point the model proposes for ``trial``."""
        raise NotImplementedError

    # -- shared steps of a suggestion ------------------------------------------------------------
    def _history(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> History:
        """Every other trial whose params fit ``search_space``, sorted by what the model does with it.

        A pruned trial is fitted with the value it stopped at (Optuna records its last
        intermediate value) moved by the median gain that complete trials made from that step to
        their end (``curve_gain``): with pruning on, that is what tells the model a region is
        hopeless, without taking an early validation for a final one (an asynchronous sweep, whose
        pruner compares with newer, better trials, prunes more and would bias the model).
        An infeasible trial (never launched: its config breaks a rule of the trainer) is fitted
        with the worst value seen, for the same reason.
        """
        history = History()
        infeasible: list[dict[str, Any]] = []
        trials = study.get_trials(deepcopy=False)
        gain: Callable[[FrozenTrial], float] | None = None  # built at the first pruned trial
        for t in trials:
            if t.number == trial.number:
                continue
            params = params_of(t)
            if not fits(params, search_space):
                continue
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.values is not None:
                if all(math.isfinite(v) for v in t.values):
                    values = list(t.values)
                    if t.state == TrialState.PRUNED and len(values) == 1:
                        gain = gain or curve_gain(trials)
                        values[0] += gain(t)
                    history.done.append((params, values))
                else:  # an infinite result is no value to fit; its point is not tried again
                    history.failed.append(params)
            elif t.state in (TrialState.RUNNING, TrialState.WAITING):
                history.running.append(params)
            elif t.state == TrialState.FAIL:
                history.failed.append(params)
                if t.user_attrs.get(ledger.ATTR_FAIL_KIND) == FailureKind.INFEASIBLE.value:
                    infeasible.append(params)
        if infeasible and history.done:
            # A point that breaks a trainer's rule (e.g. NeMo RL's batch divisibility) is fitted
            # with the worst value seen so far, so the model learns the region around it is bad
            # and stops proposing there; other failures may be transient and are not fitted.
            worst = [
                (max if d == StudyDirection.MINIMIZE else min)(v[i] for _, v in history.done)
                for i, d in enumerate(study.directions)
            ]
            history.done.extend((params, list(worst)) for params in infeasible)
        return history

    def _startup_point(
        self, space: SpaceEncoding, index: int, seen: np.ndarray | None, bad: np.ndarray | None
    ) -> np.ndarray:
        """The ``index``-th point of this sweep's Sobol sequence, skipping points already used."""
        key = tuple(space.names)
        need = max(2 * (index + 1), 64)
        U = self._sobol_cache.get(key)
        if U is None or len(U) < need:
            U = space.sobol_uniform(2 ** math.ceil(math.log2(need)), self._sobol_seed)
            self._sobol_cache[key] = U
        return first_new(space.from_uniform(U[index:]), space, seen, bad, self._rng)

    @staticmethod
    def _remember(study: Study, trial: FrozenTrial, params: dict[str, Any]) -> None:
        ledger.set_trial_system_attr(study, trial, PARAMS_ATTR, json.dumps(params))


def params_of(t: FrozenTrial) -> dict[str, Any]:
    """A trial's parameters, including those a running trial was given but has not read yet."""
    if t.state.is_finished():
        return t.params
    stored = t.system_attrs.get(PARAMS_ATTR)
    params = dict(json.loads(stored)) if stored else {}
    params.update(t.params)
    return params


def fits(params: dict[str, Any], space: dict[str, BaseDistribution]) -> bool:
    """True if ``params`` has a value inside every distribution of ``space``."""
    for name, dist in space.items():
        if name not in params:
            return False
        v = params[name]
        if isinstance(dist, CategoricalDistribution):
            if v not in dist.choices:
                return False
        elif not isinstance(v, int | float) or not (dist.low <= v <= dist.high):  # type: ignore[attr-defined]
            return False
    return True


def first_new(
    rows: np.ndarray,
    space: SpaceEncoding,
    seen: np.ndarray | None,
    bad: np.ndarray | None,
    rng: np.random.RandomState,
) -> np.ndarray:
    """The first row that is not a repeat; else a new random point; else (space exhausted)
    the first row."""
    for x in rows:
        if not is_repeat(x, seen, bad):
            return x
    for x in space.sample(4096, rng):
        if not is_repeat(x, seen, bad):
            return x
    return rows[0]


def is_repeat(x: np.ndarray, seen: np.ndarray | None, bad: np.ndarray | None) -> bool:
    """True if ``x`` is a point already tried (or within reach of a failed one)."""
    for pts, tol in ((seen, SEEN_TOL), (bad, FAILED_TOL)):
        if pts is not None and len(pts) and np.any(np.max(np.abs(pts - x), axis=1) <= tol):
            return True
    return False


def curve_gain(trials: list[FrozenTrial]) -> Callable[[FrozenTrial], float]:
    """For a pruned trial: how much complete trials' values moved from its last step to their end
    (the median over those that reported that step or an earlier one; 0 with none)."""
    curves = [
        (sorted(t.intermediate_values.items()), t.values[0])
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.values is not None
        and t.intermediate_values
        and math.isfinite(t.values[0])
    ]

    def gain(pruned: FrozenTrial) -> float:
        step = pruned.last_step
        if step is None:
            return 0.0
        gains = []
        for curve, final in curves:
            earlier = [value for s, value in curve if s <= step]
            if earlier and math.isfinite(earlier[-1]):
                gains.append(final - earlier[-1])
        return float(np.median(gains)) if gains else 0.0

    return gain
