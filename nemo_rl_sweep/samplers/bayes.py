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

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.gp import (
    LOW_NOISE_PRIORS,
    GPModel,
    Priors,
    fit_gp,
    log_ei,
    log_pi,
    optimize_acquisition,
    ucb,
)
from nemo_rl_sweep.gp.search_space import SpaceEncoding, modelable_space
from nemo_rl_sweep.gp.threads import single_thread
from nemo_rl_sweep.samplers.model_based import (
    ModelBasedSampler,
    Observed,
    check_startup_trials,
    first_new,
)
from nemo_rl_sweep.samplers.rules import OPTIONS_KEY, StrategyRules

ACQUISITIONS = ("logei", "logpi", "ucb")


def check_one_objective(n_objectives: int) -> None:
    if n_objectives != 1:
        raise SweepConfigError(
            "hydra.sweeper.strategy",
            f"strategy bayes optimises one objective, got {n_objectives}",
            "use strategy=pareto for several objectives",
        )


def check_options(
    n_startup_trials: Any = 10, acquisition: Any = "logei", xi: Any = 0.0, beta: Any = 2.0
) -> None:
    """Refuse option values the sampler cannot use (defaults: those of :class:`BayesSampler`)."""
    if acquisition not in ACQUISITIONS:
        raise SweepConfigError(
            f"{OPTIONS_KEY}.acquisition",
            f"unknown acquisition {acquisition!r}",
            f"use one of {', '.join(ACQUISITIONS)} (default logei)",
        )
    check_startup_trials(n_startup_trials)
    if not isinstance(xi, int | float) or not math.isfinite(xi) or xi < 0:
        raise SweepConfigError(
            f"{OPTIONS_KEY}.xi", f"must be a finite number >= 0, got {xi!r}", "use 0.0 (default)"
        )
    if not isinstance(beta, int | float) or not math.isfinite(beta) or beta <= 0:
        raise SweepConfigError(
            f"{OPTIONS_KEY}.beta", f"must be a finite number > 0, got {beta!r}", "use 2.0 (default)"
        )


def check_space(search_space: dict[str, BaseDistribution] | None) -> None:
    if search_space is not None and not modelable_space(search_space):
        what = ", ".join(search_space) if search_space else "no parameters"
        raise SweepConfigError(
            "hydra.sweeper.params",
            f"bayes has nothing to model: every parameter has a single value ({what})",
            "give at least one parameter a range, e.g. 'lr=tag(log, interval(1e-6, 1e-4))'",
        )


def propose(
    observed: Observed,
    y: np.ndarray,
    rng: np.random.RandomState,
    *,
    fit: Callable[[np.ndarray, np.ndarray], GPModel],
    acquisition: Callable[[GPModel, float], Callable],
    n_candidates: int,
    n_restarts: int,
) -> np.ndarray:
    """The encoded point that maximises ``acquisition`` of a GP fitted to ``y`` at ``observed.X``
    (bigger is better).

    Running points ``observed.X_run`` are conditioned on by a Kriging believer capped at the incumbent; the
    search starts from random candidates and the five best points; the result is never a point
    already tried or near a failed one. ParEGO uses it on its scalarised
    objective.
    """
    space, X, X_run = observed.space, observed.X, observed.X_run
    with single_thread():
        model = fit(X, y)
        best = float(model.to_standard(np.max(y)))
        cond = model
        if X_run is not None and len(X_run):
            mean_run, _ = model.posterior(X_run)
            cond = model.condition_on(X_run, np.minimum(mean_run, np.max(y)))
        rows, _ = optimize_acquisition(
            acquisition(cond, best),
            space,
            rng,
            n_candidates=n_candidates,
            n_restarts=n_restarts,
            seeds=X[np.argsort(-y, kind="stable")[:5]],
            lengthscales=model.lengthscales,
        )
    return first_new(rows, space, observed.seen, observed.bad, rng)


class BayesSampler(ModelBasedSampler):
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
        check_options(n_startup_trials, acquisition, xi, beta)
        check_space(search_space)
        super().__init__(search_space, seed=seed, n_startup_trials=n_startup_trials)
        self.acquisition = acquisition
        self.xi = float(xi)
        self.beta = float(beta)
        self.n_candidates = int(n_candidates)
        self.n_restarts = int(n_restarts)
        self.priors = priors
        self.warp_outputs = bool(warp_outputs)

    # -- Optuna sampler protocol (the rest is ModelBasedSampler's) --------------------------------
    def check_study(self, study: Study) -> None:
        check_one_objective(len(study.directions))

    def _model_point(self, observed: Observed, study: Study, trial: FrozenTrial) -> np.ndarray:
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        y = sign * observed.values[:, 0]
        finite = np.isfinite(y)
        if not finite.all():  # +-inf results: clip to the finite range (NaN trials are FAIL)
            lo, hi = (y[finite].min(), y[finite].max()) if finite.any() else (0.0, 0.0)
            y = np.clip(np.nan_to_num(y, nan=lo, posinf=hi, neginf=lo), lo, hi)
        if self.warp_outputs and len(y) >= 3 and np.ptp(y) > 0:
            y = _yeo_johnson(y)
        return propose(
            observed,
            y,
            self._rng,
            fit=lambda X, y: self._fit(observed.space, X, y),
            acquisition=self._acquisition_fn,
            n_candidates=self.n_candidates if len(y) < 300 else self.n_candidates // 2,
            n_restarts=self.n_restarts,
        )

    def _fit(self, space: SpaceEncoding, X: np.ndarray, y: np.ndarray) -> GPModel:
        key = (tuple(space.names), space.dim)
        model = fit_gp(
            X,
            y,
            column_groups=space.column_groups,
            warm_start=self._hyper_cache.get(key),
            priors=self.priors,
            max_iter=100 if len(X) < 200 else 30,
        )
        self._hyper_cache[key] = model.hyper
        return model

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


class _BayesRules(StrategyRules):
    def check_objectives(self, n_objectives: int) -> None:
        check_one_objective(n_objectives)

    def check_option_values(self, options: Mapping[str, Any], n_objectives: int) -> None:
        check_options(
            **{
                k: options[k]
                for k in ("n_startup_trials", "acquisition", "xi", "beta")
                if k in options
            }
        )


RULES = _BayesRules("bayes", BayesSampler)

__all__ = ["ACQUISITIONS", "RULES", "BayesSampler", "propose"]
