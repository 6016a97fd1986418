"""``strategy: pareto``: multi-objective Bayesian optimisation as an Optuna sampler.

Users trade accuracy against cost (step time, tokens, GPU-hours) and want the whole front of best
trade-offs. Each trial is expensive, so the default method is model-based:

* ``method="ehvi"`` (default): one Gaussian process per objective (``nemo_rl_sweep.gp``) and the
  *exact* expected hypervolume improvement over the current front, in log space
  (:mod:`nemo_rl_sweep.pareto.acquisition`), maximised by Sobol candidates, perturbations of the
  Pareto-optimal points and batched L-BFGS-B (``nemo_rl_sweep.gp.optimize_acquisition``).
* ``method="parego"``: ParEGO (Knowles 2006): each suggestion draws a random weight vector, turns the
  normalised objectives into one augmented-Chebyshev score and maximises log-EI of a GP on it.
* ``method="nsga2"``: Optuna's NSGA-II, for budgets of hundreds of cheap trials.

Shared behaviour (as ``BayesSampler``):

* The first ``n_startup_trials`` points are a seeded scrambled Sobol sequence.
* RUNNING trials (the rest of a batch, another sweeper's trials) are handled by a Kriging believer:
  each objective's GP is conditioned on its own prediction at the running points, and those
  predictions join the front, so the next point of a batch goes somewhere else.
* FAIL trials are not fitted, and their points are never proposed again.
* ``study.directions`` are honoured (maximised objectives are negated internally).
* The reference point of the acquisition is ``reference_point`` (user units, one number per
  objective) if given, else :func:`nemo_rl_sweep.pareto.reference.ehvi_reference_point`: the
  front's worst values, extended to regions the front reached and left, plus 10% of each
  objective's observed range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from optuna.distributions import BaseDistribution
from optuna.samplers import NSGAIISampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.gp import fit_gp, log_ei, optimize_acquisition
from nemo_rl_sweep.gp.threads import single_thread
from nemo_rl_sweep.pareto.acquisition import LogEHVI
from nemo_rl_sweep.pareto.front import pareto_front_mask, to_minimization
from nemo_rl_sweep.pareto.hypervolume import validate_reference_point
from nemo_rl_sweep.pareto.reference import ehvi_reference_point
from nemo_rl_sweep.samplers._encoding import SpaceEncoding
from nemo_rl_sweep.samplers._model_based import (
    OPTIONS_KEY,
    ModelBasedSampler,
    check_startup_trials,
    first_new,
)

METHODS = ("ehvi", "parego", "nsga2")
_OPT_KEY = OPTIONS_KEY


def validate_pareto_options(
    n_objectives: int | None,
    *,
    reference_point: Sequence[float] | None = None,
    method: str = "ehvi",
    n_startup_trials: Any = 10,
) -> np.ndarray | None:
    """Refuse bad pareto settings with one ``SweepConfigError`` line; the sweeper can call this
    before any job starts (``n_objectives`` = number of metrics; ``None`` skips those checks).

    Returns the reference point as an array (or None)."""
    if method not in METHODS:
        raise SweepConfigError(
            f"{_OPT_KEY}.method",
            f"unknown method {method!r}",
            f"use one of {', '.join(METHODS)} (default ehvi)",
        )
    check_startup_trials(n_startup_trials)
    if n_objectives is None:
        return None
    if n_objectives < 2:
        raise SweepConfigError(
            "hydra.sweeper.metric",
            f"strategy pareto needs 2 or more objectives, got {n_objectives}",
            "list several metrics, e.g. metric=[validation/accuracy,timing/train/total_step_time] "
            "with one direction each, or use strategy=bayes for one objective",
        )
    if reference_point is None:
        return None
    return validate_reference_point(
        reference_point, n_objectives, key=f"{_OPT_KEY}.reference_point"
    )


class ParetoSampler(ModelBasedSampler):
    """Multi-objective optimiser: GP per objective + exact log-EHVI (or ParEGO, or NSGA-II).

    Args:
        search_space: parameter name -> Optuna distribution; ``None`` infers the intersection
            space of finished trials.
        seed: makes the sweep reproducible.
        n_startup_trials: Sobol points before the models are used (finished trials counted).
        reference_point: one value per objective in the metrics' own units, bounding the
            hypervolume the acquisition improves; default: derived from the trials
            (:func:`nemo_rl_sweep.pareto.reference.ehvi_reference_point`).
        method: ``"ehvi"`` (default), ``"parego"`` or ``"nsga2"``.
        n_candidates: space-filling candidates scored per suggestion before local search.
        n_restarts: local searches per suggestion.
        population_size: NSGA-II population (``method="nsga2"`` only).
    """

    def __init__(
        self,
        search_space: dict[str, BaseDistribution] | None = None,
        *,
        seed: int | None = None,
        n_startup_trials: int = 10,
        reference_point: Sequence[float] | None = None,
        method: str = "ehvi",
        n_candidates: int = 1024,
        n_restarts: int = 8,
        population_size: int = 50,
    ) -> None:
        validate_pareto_options(
            None, reference_point=reference_point, method=method, n_startup_trials=n_startup_trials
        )
        ref = None
        if reference_point is not None:  # its length is checked against the study on first ask
            ref = validate_reference_point(
                reference_point, int(np.size(reference_point)), key=f"{_OPT_KEY}.reference_point"
            )
        super().__init__(search_space, seed=seed, n_startup_trials=n_startup_trials)
        self._weights_seed = int(self._rng.randint(2**31 - 1))
        self.method = method
        self.reference_point = None if ref is None else [float(v) for v in ref]
        self.n_candidates = int(n_candidates)
        self.n_restarts = int(n_restarts)
        self._nsga2 = (
            NSGAIISampler(seed=seed, population_size=population_size) if method == "nsga2" else None
        )

    # -- checks ----------------------------------------------------------------------------------
    def check_study(self, study: Study) -> None:
        """Raise ``SweepConfigError`` if this sampler cannot serve ``study`` (called on every ask)."""
        validate_pareto_options(
            len(study.directions),
            reference_point=self.reference_point,
            method=self.method,
            n_startup_trials=self.n_startup_trials,
        )

    # -- Optuna sampler protocol ------------------------------------------------------------------
    def reseed_rng(self) -> None:
        super().reseed_rng()
        if self._nsga2 is not None:
            self._nsga2.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        self.check_study(study)
        if self._nsga2 is not None:
            return self._nsga2.infer_relative_search_space(study, trial)
        return super().infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if self._nsga2 is not None:
            return self._nsga2.sample_relative(study, trial, search_space)
        if not search_space:
            return {}
        space = SpaceEncoding(search_space)
        history = self._history(study, trial, search_space)
        done, running = history.done, history.running
        seen, bad = history.seen(space), history.bad(space)

        if len(done) < self.n_startup_trials:
            x = self._startup_point(space, trial.number, seen, bad)
        else:
            X = space.encode([p for p, _ in done])
            Y = to_minimization(np.array([v for _, v in done], dtype=float), study.directions)
            X_run = space.encode(running) if running else None
            ref = None
            if self.reference_point is not None:
                ref = to_minimization(np.array([self.reference_point]), study.directions)[0]
            if self.method == "parego":
                x = self._parego_point(space, X, Y, X_run, seen, bad, trial.number)
            else:
                x = self._ehvi_point(space, X, Y, X_run, seen, bad, ref)
        params = space.decode(x)
        self._remember(study, trial, params)
        return params

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if self._nsga2 is not None:
            return self._nsga2.sample_independent(study, trial, param_name, param_distribution)
        return super().sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if self._nsga2 is not None:
            self._nsga2.before_trial(study, trial)
        else:
            super().before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        if self._nsga2 is not None:
            self._nsga2.after_trial(study, trial, state, values)
        else:
            super().after_trial(study, trial, state, values)

    # -- proposals ----------------------------------------------------------------------------------
    def _fit(self, space: SpaceEncoding, X: np.ndarray, y: np.ndarray, tag: int) -> Any:
        key = (tuple(space.names), space.dim, tag)
        warm = self._hyper_cache.get(key)
        model = fit_gp(
            X,
            y,
            column_groups=space.column_groups,
            warm_start=warm,
            max_iter=100 if len(X) < 200 else 30,
            # A fresh start as well as the warm one guards against a poor local optimum; every
            # 5th fit is enough for that and halves the time of a suggestion.
            try_default_start=warm is None or len(X) % 5 == 0,
        )
        self._hyper_cache[key] = model.hyper
        return model

    def _seeds(self, X: np.ndarray, mask: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        if len(idx) > 10:
            idx = self._rng.choice(idx, 10, replace=False)
        return X[idx]

    def _ehvi_point(
        self,
        space: SpaceEncoding,
        X: np.ndarray,
        Y: np.ndarray,
        X_run: np.ndarray | None,
        seen: np.ndarray | None,
        bad: np.ndarray | None,
        ref: np.ndarray | None,
    ) -> np.ndarray:
        m = Y.shape[1]
        with single_thread():
            # Objectives on a common scale (observed range -> [0, 1]): the boxes and the
            # posterior live in the same units, and no objective's size dominates the product.
            Yn, lo, span = _unit_range(Y)
            models = [self._fit(space, X, Yn[:, k], k) for k in range(m)]
            front = Yn[pareto_front_mask(Yn)]
            if X_run is not None and len(X_run):
                believed = np.stack([mdl.posterior(X_run)[0] for mdl in models], axis=1)
                models = [mdl.condition_on(X_run, believed[:, k]) for k, mdl in enumerate(models)]
                front = np.vstack([front, believed])
                front = front[pareto_front_mask(front)]
            # Default reference: the front's nadir, pushed out to where the front once reached and
            # was left behind (another piece of a disconnected front may lie there), plus 10% of
            # each objective's range; see ehvi_reference_point for why.
            ref_n = ehvi_reference_point(Yn, front) if ref is None else (ref - lo) / span
            acq = LogEHVI(front, ref_n)

            def fn(Xq: torch.Tensor) -> torch.Tensor:
                posts = [mdl.posterior(Xq) for mdl in models]
                mean = torch.stack([p[0] for p in posts], dim=1)
                var = torch.stack([p[1] for p in posts], dim=1)
                return acq(mean, var)

            rows, _ = optimize_acquisition(
                fn,
                space,
                self._rng,
                n_candidates=self.n_candidates,
                n_restarts=self.n_restarts,
                seeds=self._seeds(X, pareto_front_mask(Yn)),
                n_per_seed=32,
                lengthscales=np.min([mdl.lengthscales for mdl in models], axis=0),
            )
        return first_new(rows, space, seen, bad, self._rng)

    def _parego_point(
        self,
        space: SpaceEncoding,
        X: np.ndarray,
        Y: np.ndarray,
        X_run: np.ndarray | None,
        seen: np.ndarray | None,
        bad: np.ndarray | None,
        index: int,
    ) -> np.ndarray:
        m = Y.shape[1]
        w = np.random.RandomState((self._weights_seed + index) % 2**32).dirichlet(np.ones(m))
        Yn, _, _ = _unit_range(Y)
        # augmented Chebyshev scalarisation (to be minimised); the model maximises its negative
        score = -(np.max(w * Yn, axis=1) + 0.05 * np.sum(w * Yn, axis=1))
        with single_thread():
            model = self._fit(space, X, score, -1)
            best = float(model.to_standard(np.max(score)))
            cond = model
            if X_run is not None and len(X_run):
                mean_run, _ = model.posterior(X_run)
                cond = model.condition_on(X_run, np.minimum(mean_run, np.max(score)))
            rows, _ = optimize_acquisition(
                lambda Xq: log_ei(*cond.posterior_standard(Xq), best),
                space,
                self._rng,
                n_candidates=self.n_candidates,
                n_restarts=self.n_restarts,
                seeds=X[np.argsort(-score, kind="stable")[:5]],
                lengthscales=model.lengthscales,
            )
        return first_new(rows, space, seen, bad, self._rng)


def _unit_range(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each objective's observed range mapped to [0, 1] (a constant objective to 0); with the
    offset and span that undo it."""
    lo = Y.min(axis=0)
    span = np.where(Y.max(axis=0) - lo > 0, Y.max(axis=0) - lo, 1.0)
    return (Y - lo) / span, lo, span


__all__ = ["METHODS", "ParetoSampler", "validate_pareto_options"]
