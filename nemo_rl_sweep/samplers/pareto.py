"""``strategy: pareto``: multi-objective Bayesian optimisation as an Optuna sampler.

Users trade accuracy against cost (step time, tokens, GPU-hours) and want the whole front of best
trade-offs. Each trial is expensive, so the default method is model-based:

* ``method="ehvi"`` (default): one Gaussian process per objective (``nemo_rl_sweep.gp``) and the
  *exact* expected hypervolume improvement over the current front, in log space
  (:class:`nemo_rl_sweep.gp.acquisition.LogEHVI`), maximised by Sobol candidates, perturbations of the
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
  objective) if given, else :func:`nemo_rl_sweep.pareto.reference.ehvi_reference_point`: an
  estimate ``N`` of the true front's nadir plus 10% of ``N`` minus the front's ideal (Ishibuchi et
  al. 2018). With two objectives ``N`` is each objective's robust observed worst value; with more,
  the nadir of the front without its dominance-resistant points (alpha-dominance), pushed out to
  trials that were on the front, were left behind, and lie beyond the front by more than its
  extent (another piece of a disconnected front may lie there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from optuna.distributions import BaseDistribution
from optuna.samplers import NSGAIISampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.gp import GPModel, fit_gp, log_ei, optimize_acquisition
from nemo_rl_sweep.gp.acquisition import LogEHVI
from nemo_rl_sweep.gp.search_space import SpaceEncoding
from nemo_rl_sweep.gp.threads import single_thread
from nemo_rl_sweep.pareto.front import pareto_front_mask, to_minimization
from nemo_rl_sweep.pareto.reference import ehvi_reference_point
from nemo_rl_sweep.samplers.bayes import propose
from nemo_rl_sweep.samplers.model_based import (
    ModelBasedSampler,
    Observed,
    check_startup_trials,
    first_new,
)
from nemo_rl_sweep.samplers.rules import OPTIONS_KEY, StrategyRules

METHODS = ("ehvi", "parego", "nsga2")
REFERENCE_POINT_KEY = f"{OPTIONS_KEY}.reference_point"


def check_objectives(n_objectives: int) -> None:
    if n_objectives < 2:
        raise SweepConfigError(
            "hydra.sweeper.metric",
            f"strategy pareto needs 2 or more objectives, got {n_objectives}",
            "list several metrics, e.g. metric=[validation/accuracy,timing/train/total_step_time] "
            "with one direction each, or use strategy=bayes for one objective",
        )


def validate_reference_point(
    reference_point: Any, n_objectives: int, key: str = REFERENCE_POINT_KEY
) -> np.ndarray:
    """Return the reference point as a float array, or raise ``SweepConfigError`` naming ``key``."""
    try:
        ref = np.asarray(reference_point, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise SweepConfigError(
            key,
            f"reference point {reference_point!r} is not a list of numbers",
            "write e.g. [0, 10]",
        ) from exc
    if ref.size != n_objectives:
        raise SweepConfigError(
            key,
            f"reference point has {ref.size} values but there are {n_objectives} objectives",
            f"give exactly {n_objectives} numbers, one per metric, in metric order",
        )
    if not np.all(np.isfinite(ref)):
        raise SweepConfigError(key, "reference point has a NaN or inf", "use finite numbers")
    return ref


def validate_pareto_options(
    n_objectives: int | None,
    *,
    reference_point: Sequence[float] | None = None,
    method: str = "ehvi",
    n_startup_trials: Any = 10,
) -> np.ndarray | None:
    """Refuse bad pareto settings with one ``SweepConfigError`` line (``n_objectives`` = number of
    metrics; ``None`` skips the checks that need it).

    Returns the reference point as an array (or None)."""
    if method not in METHODS:
        raise SweepConfigError(
            f"{OPTIONS_KEY}.method",
            f"unknown method {method!r}",
            f"use one of {', '.join(METHODS)} (default ehvi)",
        )
    check_startup_trials(n_startup_trials)
    if reference_point is not None and n_objectives is None:
        # its length is checked against the study on the first ask
        n_objectives = int(np.size(reference_point))
    elif n_objectives is None:
        return None
    else:
        check_objectives(n_objectives)
    if reference_point is None:
        return None
    return validate_reference_point(reference_point, n_objectives)


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
        ref = validate_pareto_options(
            None, reference_point=reference_point, method=method, n_startup_trials=n_startup_trials
        )
        # NSGA-II proposes every parameter itself, so it is also what draws the ones outside the space
        self._nsga2 = (
            NSGAIISampler(seed=seed, population_size=population_size) if method == "nsga2" else None
        )
        super().__init__(
            search_space, seed=seed, n_startup_trials=n_startup_trials, fallback=self._nsga2
        )
        self._weights_seed = int(self._rng.randint(2**31 - 1))
        self.method = method
        self.reference_point = None if ref is None else [float(v) for v in ref]
        self.n_candidates = int(n_candidates)
        self.n_restarts = int(n_restarts)

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
    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if self._nsga2 is not None:
            self.check_study(study)
            return self._nsga2.infer_relative_search_space(study, trial)
        return super().infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if self._nsga2 is not None:
            return self._nsga2.sample_relative(study, trial, search_space)
        return super().sample_relative(study, trial, search_space)

    def _model_point(self, observed: Observed, study: Study, trial: FrozenTrial) -> np.ndarray:
        Y = to_minimization(observed.values, study.directions)
        if self.method == "parego":
            return self._parego_point(observed, Y, trial.number)
        ref = None
        if self.reference_point is not None:
            ref = to_minimization(np.array([self.reference_point]), study.directions)[0]
        return self._ehvi_point(observed, Y, ref)

    # -- proposals ----------------------------------------------------------------------------------
    def _fit(self, space: SpaceEncoding, X: np.ndarray, y: np.ndarray, tag: int) -> GPModel:
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

    def _ehvi_point(self, observed: Observed, Y: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
        space, X, X_run = observed.space, observed.X, observed.X_run
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
            # Default reference: an estimate of the true front's nadir plus 10% of its range; with
            # two objectives the observed range, with more the front's nadir without dominance-
            # resistant points, pushed out to regions the front reached and left (another piece
            # of a disconnected front may lie there). See ehvi_reference_point for why.
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
        return first_new(rows, space, observed.seen, observed.bad, self._rng)

    def _parego_point(self, observed: Observed, Y: np.ndarray, index: int) -> np.ndarray:
        m = Y.shape[1]
        w = np.random.RandomState((self._weights_seed + index) % 2**32).dirichlet(np.ones(m))
        Yn, _, _ = _unit_range(Y)
        # augmented Chebyshev scalarisation (to be minimised); the model maximises its negative
        score = -(np.max(w * Yn, axis=1) + 0.05 * np.sum(w * Yn, axis=1))
        return propose(
            observed,
            score,
            self._rng,
            fit=lambda X, y: self._fit(observed.space, X, y, -1),
            acquisition=lambda model, best: lambda Xq: log_ei(*model.posterior_standard(Xq), best),
            n_candidates=self.n_candidates,
            n_restarts=self.n_restarts,
        )


def _unit_range(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each objective's observed range mapped to [0, 1] (a constant objective to 0); with the
    offset and span that undo it."""
    lo = Y.min(axis=0)
    span = np.where(Y.max(axis=0) - lo > 0, Y.max(axis=0) - lo, 1.0)
    return (Y - lo) / span, lo, span


class _ParetoRules(StrategyRules):
    def check_objectives(self, n_objectives: int) -> None:
        check_objectives(n_objectives)

    def check_option_values(self, options: Mapping[str, Any], n_objectives: int) -> None:
        validate_pareto_options(
            n_objectives,
            **{
                k: options[k]
                for k in ("reference_point", "method", "n_startup_trials")
                if k in options
            },
        )


RULES = _ParetoRules("pareto", ParetoSampler)

__all__ = [
    "METHODS",
    "RULES",
    "ParetoSampler",
    "validate_pareto_options",
    "validate_reference_point",
]
