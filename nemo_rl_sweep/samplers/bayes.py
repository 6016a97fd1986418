"""``strategy: bayes``: Gaussian-process Bayesian optimisation as an Optuna sampler.

One trial is a training run that may cost GPU-hours, so every suggestion is worth a second of
thought: the sampler fits a Gaussian process (``nemo_rl_sweep.gp``) to every finished trial and
proposes the point with the highest expected improvement over the best value so far.

* The first ``n_startup_trials`` points are a scrambled Sobol sequence (space filling, seeded).
* Outputs are Yeo-Johnson transformed (fitted for normality, order preserving) before the GP
  sees them: losses and accuracies are skewed (a few very good or very bad runs), which a
  stationary GP with Gaussian noise models badly; the transform makes the improvement the
  acquisition looks for comparable across the range (as HEBO does). ``warp_outputs=False``
  turns it off.
* Trials still RUNNING (other points of a batch, other sweepers' trials) are conditioned on by a
  *Kriging believer* capped at the incumbent: the model pretends each running point returned
  min(predicted value, best so far). Its uncertainty there collapses and its value cannot look
  like an improvement, so a batch spreads out instead of asking for the same point 4 times.
* FAIL trials are not fitted (a crash is not a value), but their points are never proposed again.
* Directions: minimisation is handled by modelling ``-value``; the model always maximises.
* A fixed ``seed`` gives the same sweep (same proposals for the same results).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.gp import (
    LOW_NOISE_PRIORS,
    Hyperparameters,
    Priors,
    fit_gp,
    log_ei,
    log_pi,
    optimize_acquisition,
    ucb,
)
from nemo_rl_sweep.gp.threads import single_thread
from nemo_rl_sweep.samplers._encoding import SpaceEncoding, modelable_space

ACQUISITIONS = ("logei", "logpi", "ucb")
_OPT_KEY = "hydra.sweeper.strategy_options"
_PARAMS_ATTR = "bayes:relative_params"
_SEEN_TOL = 1e-9  # two encoded points closer than this (max norm) are the same point
_FAILED_TOL = 1e-3  # do not propose within this distance of a failed point


def _validate(
    search_space: dict[str, BaseDistribution] | None,
    n_startup_trials: Any,
    acquisition: Any,
    xi: Any,
    beta: Any,
) -> None:
    if acquisition not in ACQUISITIONS:
        raise SweepConfigError(
            f"{_OPT_KEY}.acquisition",
            f"unknown acquisition {acquisition!r}",
            f"use one of {', '.join(ACQUISITIONS)} (default logei)",
        )
    if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int | np.integer):
        raise SweepConfigError(
            f"{_OPT_KEY}.n_startup_trials",
            f"must be a whole number, got {n_startup_trials!r}",
            "set a positive integer such as 10",
        )
    if n_startup_trials <= 0:
        raise SweepConfigError(
            f"{_OPT_KEY}.n_startup_trials",
            f"must be positive, got {n_startup_trials}",
            "set a positive integer such as 10 (the model needs some points to start from)",
        )
    if not isinstance(xi, int | float) or not math.isfinite(xi) or xi < 0:
        raise SweepConfigError(
            f"{_OPT_KEY}.xi", f"must be a finite number >= 0, got {xi!r}", "use 0.0 (default)"
        )
    if not isinstance(beta, int | float) or not math.isfinite(beta) or beta <= 0:
        raise SweepConfigError(
            f"{_OPT_KEY}.beta", f"must be a finite number > 0, got {beta!r}", "use 2.0 (default)"
        )
    if search_space is not None and not modelable_space(search_space):
        what = ", ".join(search_space) if search_space else "no parameters"
        raise SweepConfigError(
            "hydra.sweeper.params",
            f"bayes has nothing to model: every parameter has a single value ({what})",
            "give at least one parameter a range, e.g. 'lr=tag(log, interval(1e-6, 1e-4))'",
        )


class BayesSampler(BaseSampler):
    """GP-Bayesian optimisation (Matérn-5/2 ARD, MAP hyperparameters, log-EI) for one objective.

    Args:
        search_space: parameter name -> Optuna distribution; ``None`` infers the intersection
            space of finished trials (as Optuna's GPSampler does).
        seed: makes the sweep reproducible.
        n_startup_trials: Sobol points before the model is used (finished trials counted).
        acquisition: ``"logei"`` (log expected improvement, default), ``"logpi"`` (log
            probability of improvement) or ``"ucb"`` (upper confidence bound, ``beta``).
        xi: improvement margin of EI / PI, in standard deviations of the observed values.
        beta: exploration weight of UCB.
        n_candidates: space-filling candidates scored per suggestion before local search.
        n_restarts: local searches per suggestion.
        priors: hyperparameter priors (``nemo_rl_sweep.gp.Priors``).
        warp_outputs: Yeo-Johnson transform the values before modelling (default on).
    """

    def __init__(
        self,
        search_space: dict[str, BaseDistribution] | None = None,
        *,
        seed: int | None = None,
        n_startup_trials: int = 10,
        acquisition: str = "logei",
        xi: float = 0.0,
        beta: float = 2.0,
        n_candidates: int = 2048,
        n_restarts: int = 10,
        priors: Priors = LOW_NOISE_PRIORS,
        warp_outputs: bool = True,
    ) -> None:
        _validate(search_space, n_startup_trials, acquisition, xi, beta)
        self._search_space = dict(search_space) if search_space is not None else None
        self._seed = seed
        self._rng = np.random.RandomState(seed)
        self._sobol_seed = int(self._rng.randint(2**31 - 1))
        self._independent = RandomSampler(seed=seed)
        self._intersection = IntersectionSearchSpace()
        self.n_startup_trials = int(n_startup_trials)
        self.acquisition = acquisition
        self.xi = float(xi)
        self.beta = float(beta)
        self.n_candidates = int(n_candidates)
        self.n_restarts = int(n_restarts)
        self.priors = priors
        self.warp_outputs = bool(warp_outputs)
        self._hyper_cache: dict[tuple, Hyperparameters] = {}
        self._sobol_cache: dict[tuple, np.ndarray] = {}

    # -- Optuna sampler protocol ---------------------------------------------------------------
    def reseed_rng(self) -> None:
        self._rng = np.random.RandomState()
        self._independent.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if self._search_space is not None:
            return modelable_space(self._search_space)
        return modelable_space(self._intersection.calculate(study))

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        if len(study.directions) != 1:
            raise SweepConfigError(
                "hydra.sweeper.direction",
                f"bayes optimises one objective, the study has {len(study.directions)}",
                "use strategy=pareto for several objectives",
            )
        space = SpaceEncoding(search_space)
        trials = study.get_trials(deepcopy=False)
        done, running, failed = [], [], []
        for t in trials:
            if t.number == trial.number:
                continue
            params = _params_of(t)
            if not _fits(params, search_space):
                continue
            if t.state == TrialState.COMPLETE and t.values is not None:
                done.append((params, t.values[0]))
            elif t.state in (TrialState.RUNNING, TrialState.WAITING):
                running.append(params)
            elif t.state == TrialState.FAIL:
                failed.append(params)
        seen = space.encode([p for p, _ in done] + running) if (done or running) else None
        bad = space.encode(failed) if failed else None

        if len(done) < self.n_startup_trials:
            x = self._startup_point(space, trial.number, seen, bad)
        else:
            sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
            X = space.encode([p for p, _ in done])
            y = sign * np.array([v for _, v in done], dtype=float)
            X_run = space.encode(running) if running else None
            x = self._model_point(space, X, y, X_run, seen, bad)
        params = space.decode(x)
        study._storage.set_trial_system_attr(trial._trial_id, _PARAMS_ATTR, json.dumps(params))
        return params

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._independent.after_trial(study, trial, state, values)

    # -- the two ways of proposing a point ---------------------------------------------------------
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
        return _first_new(space.from_uniform(U[index:]), space, seen, bad, self._rng)

    def _model_point(
        self,
        space: SpaceEncoding,
        X: np.ndarray,
        y: np.ndarray,
        X_run: np.ndarray | None,
        seen: np.ndarray | None,
        bad: np.ndarray | None,
    ) -> np.ndarray:
        key = (tuple(space.names), space.dim)
        finite = np.isfinite(y)
        if not finite.all():  # +-inf results: clip to the finite range (NaN trials are FAIL)
            lo, hi = (y[finite].min(), y[finite].max()) if finite.any() else (0.0, 0.0)
            y = np.clip(np.nan_to_num(y, nan=lo, posinf=hi, neginf=lo), lo, hi)
        if self.warp_outputs and len(y) >= 3 and np.ptp(y) > 0:
            y = _yeo_johnson(y)
        with single_thread():
            model = fit_gp(
                X,
                y,
                column_groups=space.column_groups,
                warm_start=self._hyper_cache.get(key),
                priors=self.priors,
                max_iter=100 if len(X) < 200 else 30,
            )
            self._hyper_cache[key] = model.hyper
            best = float(model.to_standard(np.max(y)))
            cond = model
            if X_run is not None and len(X_run):
                mean_run, _ = model.posterior(X_run)
                cond = model.condition_on(X_run, np.minimum(mean_run, np.max(y)))
            acq = self._acquisition_fn(cond, best)
            top = X[np.argsort(-y, kind="stable")[:5]]
            rows, _ = optimize_acquisition(
                acq,
                space,
                self._rng,
                n_candidates=self.n_candidates if len(X) < 300 else self.n_candidates // 2,
                n_restarts=self.n_restarts,
                seeds=top,
                lengthscales=model.lengthscales,
            )
        return _first_new(rows, space, seen, bad, self._rng)

    def _acquisition_fn(self, model: Any, best: float) -> Any:
        if self.acquisition == "logei":
            return lambda Xq: log_ei(*model.posterior_standard(Xq), best, self.xi)
        if self.acquisition == "logpi":
            return lambda Xq: log_pi(*model.posterior_standard(Xq), best, self.xi)
        return lambda Xq: ucb(*model.posterior_standard(Xq), self.beta)


def _yeo_johnson(y: np.ndarray) -> np.ndarray:
    """Yeo-Johnson transform of y (fitted for normality), order preserving."""
    import scipy.stats

    z = (y - np.mean(y)) / np.std(y)
    out, _ = scipy.stats.yeojohnson(z)
    return np.asarray(out, dtype=float)


def _params_of(t: FrozenTrial) -> dict[str, Any]:
    """A trial's parameters, including those a running trial was given but has not read yet."""
    if t.state.is_finished():
        return t.params
    stored = t.system_attrs.get(_PARAMS_ATTR)
    params = dict(json.loads(stored)) if stored else {}
    params.update(t.params)
    return params


def _fits(params: dict[str, Any], space: dict[str, BaseDistribution]) -> bool:
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


def _first_new(
    rows: np.ndarray,
    space: SpaceEncoding,
    seen: np.ndarray | None,
    bad: np.ndarray | None,
    rng: np.random.RandomState,
) -> np.ndarray:
    """The first row that is not a repeat; else a new random point; else (space exhausted)
    the first row."""
    for x in rows:
        if not _is_repeat(x, space, seen, bad):
            return x
    for x in space.sample(4096, rng):
        if not _is_repeat(x, space, seen, bad):
            return x
    return rows[0]


def _is_repeat(
    x: np.ndarray, space: SpaceEncoding, seen: np.ndarray | None, bad: np.ndarray | None
) -> bool:
    """True if ``x`` is a point already tried (or within reach of a failed one)."""
    for pts, tol in ((seen, _SEEN_TOL), (bad, _FAILED_TOL)):
        if pts is not None and len(pts) and np.any(np.max(np.abs(pts - x), axis=1) <= tol):
            return True
    return False


__all__ = ["ACQUISITIONS", "BayesSampler"]

# Optuna's FrozenTrial import above keeps type hints honest; torch is imported so that a
# missing torch fails at import time with a clear ImportError rather than mid-sweep.
_ = (optuna, torch)
