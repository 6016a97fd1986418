"""``strategy: multifidelity``: which configuration to start and which running trial to stop, both
decided from one model of the learning curves (``samplers/curves.py``) fitted on every validation in
the ledger.

What a user pays is training steps, not trials. The model (``CurveModel``, kernel in
``gp/curve_gp.py``) says what a partial curve means for the final value: a final value observes a GP
over configurations alone, an earlier validation observes it plus a deviation that vanishes at the
last step, whose size the fit learns. So:

* **Start** (the sampler, in the sweeper): after ``n_startup_trials`` Sobol points, the configuration
  with the highest log expected improvement of its *final* value (the curve model at the last step)
  over the best final value of a COMPLETE trial. Every new trial costs the same steps if it runs to
  the end, so EI per step ranks configurations as EI does; what a trial really costs is decided by
  the stop rule, which the choice of start does not model (a limit, see below). Trials still
  running are conditioned on as in ``bayes`` (a Kriging believer at the last step, capped at the
  incumbent), on top of their reported partial curves, which are real data.
* **Stop** (the pruner, inside each job, at each reported validation): once ``min_complete`` trials
  are COMPLETE, the job fits the same model and asks what its own validations did to its prospects,
  in expected improvement of the final value per training step: EI now (model with its own curve
  so far) over the steps it has left, against EI before (the same model without its own rows, i.e.
  what was known when it started) over a whole run. It stops when the first falls below
  ``stop_ratio`` (default 0.25) times the second: its curve made it a much worse bet than it was.
  ``tolerance`` counts coming within that margin of the incumbent as improving on it.
  "Now" is widened first: its variance is multiplied by ``CurveModel.miscalibration(step)``, the
  mean squared z-score of the COMPLETE trials' final values against what the model predicted from
  their curves up to the same step (held out, not refitted; shrunk towards 1 by 3 prior counts),
  and capped at the variance before. The fit learns one size of curve deviation for all
  configurations; on the GRPO curves early values rank bad configurations well and good ones
  badly (among configurations ending above 0.8, accuracy at steps 10-50 is hardly related to the
  final one), so the unwidened rule stopped near-best configurations after 1-6 validations. On
  seeds 0-7 the widening took the median steps to target from 1035 / 685 / 855 to
  735 / 640 / 795 (GRPO / saturating / peaking), median best final 0.9805 / 0.8764 / 0.7152 to
  0.9961 / 0.8768 / 0.7149, all 8 sweeps reaching the target on each (peers on those seeds:
  bayes + Median 1050 on GRPO, bayes without pruning 1450 / 1650 on saturating / peaking).
  On the fresh seeds 10-19 the medians did not move as much: 845 / 685 / 1100 against
  840 / 675 / 985 without it, but every GRPO sweep reached the target (10/10, was 8/10).
  Two rules we measured and dropped (2 seeds, ``benchmarks/multifidelity_benchmark.py``): "stop when
  P(final beats the incumbent) < 5%" stopped 142 of 146 trials on the GRPO curves (once the
  incumbent is good that probability is small for almost every configuration, even the one the
  sampler just chose, before its curve says anything); "stop when continuing earns less per step
  than the best fresh configuration" also stopped good trials at their first validation, because
  the best of 512 unexplored points always looks better than any one trial. Comparing a trial with
  itself is robust to both: where early values say little about final ones (the model learns a
  short lengthscale in the step), EI hardly moves and the trial runs on. ``stop_ratio`` 0.1, 0.25,
  0.5 and 1.0 were tried on 2 seeds with the first (stationary) model, and 0.05, 0.1, 0.25 and 0.5
  on seeds 0-7 with the curve-shaped one; 0.25 stayed: 0.1 and 0.05 were as good in median but
  missed the target in 2 of 8 GRPO sweeps (good curves run on longer, bad ones too).
  ``min_complete`` 2 (was 3): on seeds 0-7 it reached the target sooner on all three problems
  (median 1035 / 685 / 855 steps against 1075 / 795 / 860 on GRPO / saturating / peaking); 1 was
  better on GRPO and worse on peaking (one whole run is too little to set the scale of the curves).
  A stopped trial keeps its curve in the ledger; the next fit learns from it as a partial curve,
  never as a final value, so early stops inform the model without biasing it.

The pruner is recorded in the study like any pruner (``nemo_rl_sweep.pruning``), so each job rebuilds
it and decides for itself: the same under the basic, joblib and Slurm launchers and with several slots.

Measured and not kept (``benchmarks/multifidelity_benchmark.py``; the first two on tuning seeds
0-3, before the widening):

* continuing a stopped trial (freeze-thaw's "thaw"): the sampler proposed the paused trial whose
  log EI of the final value per remaining step beat the best new configuration's per whole run,
  the benchmark resumed it from its pause at the cost of the remaining steps only, and the pruner
  compared it with what was known at the thaw. Steps to target about the same (median 1110 vs
  1195 on GRPO, equal on saturating and peaking; the trials it picked were stopped again within
  one or two validations; the good ones the rule stops are not the ones the model later
  prefers). A stopped trial stays PRUNED and its
  configuration is not proposed again. (On NeMo RL a thaw would relaunch on the trial's own folder
  and checkpoint, which ``trainers/nemo_rl/folder.py`` ties to one trial number; not built.)
* a start rule counting what a new trial will really cost: log EI minus the log of the expected
  steps, ``first validation + (last - first) * P(final beats the incumbent)``. Fewer steps on
  saturating (675 vs 870), more on peaking (1140 vs 765): it prefers long shots, which crossing
  curves hide until late.

Tuning seeds 0-7, GRPO / saturating / peaking median steps to target, with the widening above:

* the widening from the plain mean of z^2 (0 prior counts): 870 / 660 / 795; 6 prior counts:
  855 on GRPO. Unshrunk, the median of z^2 (scaled to 1 for a calibrated model) instead of the
  mean: 1175 on GRPO (it widens less: the misses that matter are few and large); z^2 of the
  better half of the COMPLETE trials only: 840 on GRPO against 870, noise.
* 3 Sobol startup trials instead of 5 (with the unshrunk widening): 1310 / 580 / 1125, worse on
  GRPO and peaking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from optuna.distributions import BaseDistribution
from optuna.pruners import BasePruner
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.gp import DEFAULT_PRIORS, log_ei, optimize_acquisition
from nemo_rl_sweep.gp.search_space import SpaceEncoding, modelable_space
from nemo_rl_sweep.gp.threads import single_thread
from nemo_rl_sweep.samplers.bayes import check_one_objective, check_space
from nemo_rl_sweep.samplers.curves import CurveModel, collect
from nemo_rl_sweep.samplers.model_based import (
    ModelBasedSampler,
    Observed,
    first_new,
    fits,
    params_of,
)
from nemo_rl_sweep.samplers.rules import OPTIONS_KEY, StrategyRules

PRUNER_TARGET = "nemo_rl_sweep.samplers.multifidelity.CurvePruner"
POINTS_PER_TRIAL = 8


def _number(key: str, value: Any, ok: bool, need: str, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
        raise SweepConfigError(f"{OPTIONS_KEY}.{key}", f"must be {need}, got {value!r}", fix)


def check_stop_options(
    stop_ratio: Any = 0.25, tolerance: Any = 0.0, min_complete: Any = 2, max_step: Any = None
) -> None:
    """Refuse stop-rule values the pruner cannot use (defaults: those of :class:`CurvePruner`)."""
    r = stop_ratio
    _number(
        "stop_ratio",
        r,
        isinstance(r, int | float) and math.isfinite(r) and r > 0,
        "a finite number > 0",
        "e.g. 0.25 (default)",
    )
    _number(
        "tolerance",
        tolerance,
        isinstance(tolerance, int | float) and math.isfinite(tolerance) and tolerance >= 0,
        "a finite number >= 0",
        "a margin in the metric's units, e.g. 0.0 (default)",
    )
    if isinstance(min_complete, bool) or not isinstance(min_complete, int) or min_complete < 1:
        raise SweepConfigError(
            f"{OPTIONS_KEY}.min_complete",
            f"must be a whole number >= 1, got {min_complete!r}",
            "use 2 (default): the model needs whole curves before it may stop one",
        )
    if max_step is not None and (
        isinstance(max_step, bool) or not isinstance(max_step, int) or max_step < 1
    ):
        raise SweepConfigError(
            f"{OPTIONS_KEY}.max_step",
            f"must be a whole number >= 1 or null, got {max_step!r}",
            "use null (default: the last step COMPLETE trials reported) or the recipe's last step",
        )


def _sign(study: Study) -> float:
    return 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0


class CurvePruner(BasePruner):
    """Stops a trial when its own validations cut its expected improvement of the best final value
    per remaining step below ``stop_ratio`` times what it was before them (module docstring)."""

    def __init__(
        self,
        stop_ratio: float = 0.25,
        tolerance: float = 0.0,
        min_complete: int = 2,
        max_step: int | None = None,
    ) -> None:
        check_stop_options(stop_ratio, tolerance, min_complete, max_step)
        self.stop_ratio = float(stop_ratio)
        self.tolerance = float(tolerance)
        self.min_complete = int(min_complete)
        self.max_step = max_step
        self._hyper: np.ndarray | None = None
        # log(EI per remaining step now / EI per step before its own validations), last decision
        self.last_log_ratio: float | None = None
        # the factor the last decision widened the model's variance by (CurveModel.miscalibration)
        self.last_widening: float | None = None

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        self.last_log_ratio = self.last_widening = None
        step = trial.last_step
        if step is None or len(study.directions) != 1:
            return False
        trials = study.get_trials(deepcopy=False)
        if sum(t.state == TrialState.COMPLETE for t in trials) < self.min_complete:
            return False
        search_space = modelable_space(trial.distributions)
        if not search_space:
            return False
        # the job's own trial is RUNNING in the ledger with the values it reported so far
        others = [t for t in trials if t.number != trial.number] + [trial]
        space = SpaceEncoding(search_space)
        sign = _sign(study)
        curves = collect(
            others,
            search_space,
            space,
            sign=sign,
            max_step=self.max_step,
            points_per_trial=POINTS_PER_TRIAL,
        )
        if curves is None or not len(curves.final_y) or step >= curves.max_step:
            return False
        with single_thread():
            model = CurveModel(curves, space, priors=DEFAULT_PRIORS, warm_start=self._hyper)
            self._hyper = model.hyper
            x = space.encode([trial.params])
            incumbent = float(model.gp.to_standard(float(np.max(curves.final_y)) - self.tolerance))
            mean_before, var_before = model.without(trial.number).final_standard(x)
            mean_now, var_now = model.final_standard(x)
            # as wide as the model's past predictions from this step proved to need, never wider
            # than before the trial's own validations
            self.last_widening = model.miscalibration(step)
            var_now = torch.minimum(var_now * self.last_widening, var_before)
            before = float(log_ei(mean_before, var_before, incumbent)[0])
            now = float(log_ei(mean_now, var_now, incumbent)[0])
            per_step = (now - math.log(curves.max_step - step)) - (
                before - math.log(curves.max_step)
            )
            self.last_log_ratio = float(per_step)
        return self.last_log_ratio < math.log(self.stop_ratio)


class MultiFidelitySampler(ModelBasedSampler):
    """Starts the configuration with the best expected final value improvement (module docstring).

    Args:
        search_space: parameter name -> Optuna distribution (None: inferred, as ``bayes``).
        seed: makes the sweep reproducible.
        n_startup_trials: Sobol points before the model is used (COMPLETE and PRUNED counted).
        stop_ratio, tolerance, min_complete, max_step: the stop rule, handed to
            :class:`CurvePruner` through :meth:`pruner_node`.
        n_candidates, n_restarts: the acquisition search, as in ``bayes``.
    """

    def __init__(
        self,
        search_space: dict[str, BaseDistribution] | None = None,
        *,
        seed: int | None = None,
        n_startup_trials: int = 5,
        stop_ratio: float = 0.25,
        tolerance: float = 0.0,
        min_complete: int = 2,
        max_step: int | None = None,
        n_candidates: int = 1024,
        n_restarts: int = 5,
    ) -> None:
        check_stop_options(stop_ratio, tolerance, min_complete, max_step)
        check_space(search_space)
        super().__init__(search_space, seed=seed, n_startup_trials=n_startup_trials)
        self.stop = {
            "stop_ratio": float(stop_ratio),
            "tolerance": float(tolerance),
            "min_complete": int(min_complete),
            "max_step": max_step,
        }
        self.n_candidates = int(n_candidates)
        self.n_restarts = int(n_restarts)
        self._hyper: np.ndarray | None = None

    def pruner_node(self) -> dict[str, Any]:
        """The ``{_target_: ...}`` node of this sweep's stop rule, recorded in the ledger."""
        return {"_target_": PRUNER_TARGET, **self.stop}

    def check_study(self, study: Study) -> None:
        check_one_objective(len(study.directions))

    def _model_point(self, observed: Observed, study: Study, trial: FrozenTrial) -> np.ndarray:
        space = observed.space
        search_space = dict(zip(space.names, (p.dist for p in space.params), strict=True))
        trials = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        curves = collect(
            trials,
            search_space,
            space,
            sign=_sign(study),
            max_step=self.stop["max_step"],
            points_per_trial=POINTS_PER_TRIAL,
        )
        if curves is None:  # nothing reported yet (every trial still running): keep filling space
            return self._startup_point(space, trial.number, observed.seen, observed.bad)
        with single_thread():
            model = CurveModel(curves, space, priors=DEFAULT_PRIORS, warm_start=self._hyper)
            self._hyper = model.hyper
            tried = space.encode([p for p in _tried(trials, search_space)])
            if len(curves.final_y):
                best = float(np.max(curves.final_y))
            else:  # every trial so far was stopped: the best configuration the model believes in
                best = float(np.max(model.final(tried)[0]))
            gp = model.gp
            if observed.X_run is not None and len(observed.X_run):
                run_mean, _ = model.final(observed.X_run)
                gp = gp.condition_on(model.at_end(observed.X_run), np.minimum(run_mean, best))
            best_std = float(gp.to_standard(best))

            def acquisition(Xq: Any) -> Any:
                import torch

                ones = torch.ones(Xq.shape[0], 1, dtype=Xq.dtype)
                return log_ei(*gp.posterior_standard(torch.cat([Xq, ones], 1)), best_std, 0.0)

            mean_tried = model.final(tried)[0]
            rows, _ = optimize_acquisition(
                acquisition,
                space,
                self._rng,
                n_candidates=self.n_candidates,
                n_restarts=self.n_restarts,
                seeds=tried[np.argsort(-mean_tried, kind="stable")[:5]],
                lengthscales=gp.lengthscales[:-1],
            )
        return first_new(rows, space, observed.seen, observed.bad, self._rng)


def _tried(trials: list[FrozenTrial], search_space: dict[str, BaseDistribution]) -> list[dict]:
    out = []
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.FAIL):
            params = params_of(t)
            if fits(params, search_space):
                out.append(params)
    return out


class _MultiFidelityRules(StrategyRules):
    def check_objectives(self, n_objectives: int) -> None:
        check_one_objective(n_objectives)

    def check_option_values(self, options: Mapping[str, Any], n_objectives: int) -> None:
        from nemo_rl_sweep.samplers.model_based import check_startup_trials

        if "n_startup_trials" in options:
            check_startup_trials(options["n_startup_trials"])
        keys = ("stop_ratio", "tolerance", "min_complete", "max_step")
        check_stop_options(**{k: options[k] for k in keys if k in options})

    def pruner_node(self, options: Mapping[str, Any]) -> dict[str, Any] | None:
        keys = ("stop_ratio", "tolerance", "min_complete", "max_step")
        return {"_target_": PRUNER_TARGET, **{k: options[k] for k in keys if k in options}}


RULES = _MultiFidelityRules("multifidelity", MultiFidelitySampler)

__all__ = ["RULES", "CurvePruner", "MultiFidelitySampler", "check_stop_options"]
