"""The sweep loop: ask the strategy for a batch, launch it, record what came back, repeat.

It knows nothing of Hydra: the caller passes a ``launch`` function that runs a batch of trials (the
Hydra plugin hands it to whatever Hydra launcher is configured). Everything a user has spent is in the
ledger as soon as it exists: trials are recorded as they finish and the result files are rewritten after
every batch, so a crash loses at most the trials that were running.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.errors import SweepConfigError, SweepStopped
from nemo_rl_sweep.objectives import Objectives, TrialFailure
from nemo_rl_sweep.outputs.progress import ConsoleProgress
from nemo_rl_sweep.pruning import check_pruner, record_pruner
from nemo_rl_sweep.samplers.grid import GridSampler
from nemo_rl_sweep.space import SearchSpace, trial_overrides
from nemo_rl_sweep.strategies import check_strategy, make_sampler
from nemo_rl_sweep.warm_start import check_warm_start, seed_sweep


@dataclass
class SweepSettings:
    """The sweeper's keys (``hydra.sweeper.*``), named as in hydra-optuna-sweeper where they mean the same."""

    strategy: str | None = None  # None: optuna if `sampler` is set, else random
    strategy_options: dict[str, Any] = field(default_factory=dict)
    metric: str | list[str] = "validation/accuracy"
    direction: str | list[str] = "maximize"
    n_trials: int | None = 20
    n_jobs: int = 1
    storage: str | None = None
    study_name: str | None = None
    max_failure_rate: float = 0.5
    seed: int | None = None
    dry_run: bool = False
    sampler: dict[str, Any] | None = None
    pruner: dict[str, Any] | None = None
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    # seed the study with the finished trials of an earlier one: {study_name, storage}
    warm_start_from: dict[str, Any] | None = None


@dataclass
class TrialJob:
    """One trial handed to the launcher: its ledger number and its Hydra overrides."""

    number: int
    overrides: list[str]


@dataclass
class JobOutcome:
    """What came back from one job: a return value, or the error that ended it."""

    value: Any = None
    error: BaseException | str | None = None
    job_dir: str | None = None
    duration_s: float | None = None


Launch = Callable[[Sequence[TrialJob]], Sequence[JobOutcome]]


@dataclass
class SweepResult:
    study: optuna.Study
    storage_url: str
    sweep_dir: Path
    new_trials: list[int]


def check_settings(settings: SweepSettings, space: SearchSpace) -> Objectives:
    """Every sweeper key checked, before the ledger is touched or a job starts."""
    objectives = Objectives.from_settings(settings.metric, settings.direction)
    if settings.strategy is None:  # a hydra-optuna-sweeper file names a sampler, not a strategy
        settings.strategy = "optuna" if settings.sampler else "random"
    check_strategy(settings.strategy, len(objectives.names))
    if settings.sampler and settings.strategy != "optuna":
        raise SweepConfigError(
            "hydra.sweeper.sampler",
            f"is used by strategy optuna only, the strategy is {settings.strategy}",
            "set hydra.sweeper.strategy=optuna, or remove hydra.sweeper.sampler",
        )
    n = settings.n_trials
    if settings.strategy != "grid" and n is None:
        raise SweepConfigError(
            "hydra.sweeper.n_trials", "is null", "set hydra.sweeper.n_trials to a positive number"
        )
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
        raise SweepConfigError(
            "hydra.sweeper.n_trials", f"must be a positive integer, got {n!r}", "e.g. n_trials=20"
        )
    nj = settings.n_jobs
    if isinstance(nj, bool) or not isinstance(nj, int) or nj <= 0:
        raise SweepConfigError(
            "hydra.sweeper.n_jobs", f"must be a positive integer, got {nj!r}", "e.g. n_jobs=2"
        )
    rate = settings.max_failure_rate
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise SweepConfigError(
            "hydra.sweeper.max_failure_rate",
            f"must be a number in [0, 1], got {rate!r}",
            "e.g. max_failure_rate=0.5",
        )
    if settings.seed is not None and (
        isinstance(settings.seed, bool) or not isinstance(settings.seed, int)
    ):
        raise SweepConfigError(
            "hydra.sweeper.seed",
            f"must be an integer or null, got {settings.seed!r}",
            "e.g. seed=0",
        )
    if not space.params and not settings.enqueue:
        raise SweepConfigError(
            "hydra.sweeper.params",
            "the search space is empty: nothing is swept",
            "pick a search space (search_space=grpo) or sweep a key, e.g. "
            "'policy.optimizer.kwargs.lr=tag(log, interval(1e-4, 1e-2))'",
        )
    check_warm_start(settings, space)  # enqueue entries fit the space; warm_start_from's shape
    return objectives


class Sweep:
    """One sweep over ``space``; ``run()`` returns when the budget is spent or the sweep must stop."""

    def __init__(
        self,
        space: SearchSpace,
        settings: SweepSettings,
        launch: Launch,
        sweep_dir: str | Path,
        *,
        task_name: str = "sweep",
        ledger_dir: str | Path | None = None,
        progress: ConsoleProgress | None = None,
    ) -> None:
        self.space = space
        self.settings = settings
        self.launch = launch
        self.sweep_dir = Path(sweep_dir)
        self.progress = progress or ConsoleProgress()
        self.objectives = check_settings(settings, space)
        self.distributions = space.distributions
        self.grid_points = list(space.grid()) if settings.strategy == "grid" else None
        if self.grid_points is not None and settings.n_trials is not None:
            self.grid_points = self.grid_points[: settings.n_trials]
        self.sampler = make_sampler(
            settings.strategy,
            self.distributions,
            seed=settings.seed,
            options=settings.strategy_options,
            optuna_sampler=settings.sampler,
            grid_points=self.grid_points,
        )
        if settings.strategy == "pareto":  # a reference point must have one value per metric
            from nemo_rl_sweep.samplers.pareto import validate_pareto_options

            opts = settings.strategy_options
            validate_pareto_options(
                len(self.objectives.names),
                **{
                    k: opts[k]
                    for k in ("reference_point", "method", "n_startup_trials")
                    if k in opts
                },
            )
        self.pruner = check_pruner(settings.pruner, self.objectives.names)
        base = Path(ledger_dir) if ledger_dir is not None else self.sweep_dir.parent
        self.storage_url = (
            ledger.absolute_storage_url(settings.storage, Path.cwd())
            if settings.storage
            else ledger.default_storage_url(base)
        )
        identity = {
            "space": space.describe(),
            "metric": list(self.objectives.names),
            "direction": list(self.objectives.directions),
            "strategy": settings.strategy,
            "seed": settings.seed,
        }
        self.study_name = settings.study_name or ledger.default_study_name(
            task_name, settings.strategy, identity
        )
        self.study: optuna.Study | None = None
        self.new_trials: list[int] = []

    # ---------------------------------------------------------------------------------- public

    def preview(self, n: int = 5) -> list[list[str]]:
        """The overrides of the first trials this sweep would launch, without touching the ledger."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # a copy: Optuna samplers keep per-study state and RNG draws the real sweep must not lose
        study = optuna.create_study(
            directions=list(self.objectives.directions), sampler=copy.deepcopy(self.sampler)
        )
        self._enqueue_initial(study)
        out = []
        total = len(self.grid_points) if self.grid_points is not None else self.settings.n_trials
        for _ in range(min(n, total or n)):
            trial = self._ask(study)
            if trial is None:
                break
            out.append(trial_overrides(self.space, trial.params))
            study.tell(trial, state=TrialState.FAIL)
        return out

    def open(self) -> optuna.Study:
        """Open (or create) the study, refusing a storage or a study that does not fit this sweep."""
        if self.study is None:
            self.study = ledger.open_study(
                ledger.open_storage(self.storage_url),
                self.study_name,
                self.objectives.directions,
                self.objectives.names,
                sampler=self.sampler,
                pruner=self.pruner,
            )
        return self.study

    def run(self) -> SweepResult:
        study = self.open()
        study.set_user_attr(ledger.STUDY_ATTR_STRATEGY, self.settings.strategy)
        study.set_user_attr(ledger.STUDY_ATTR_SPACE, self.space.describe())
        record_pruner(study, self.settings.pruner)  # the jobs rebuild it from the ledger
        seed_sweep(study, self.settings, self.space, self.storage_url, self.progress.message)
        stale = ledger.fail_stale_trials(study)
        if stale:
            self.progress.message(
                f"{len(stale)} trial(s) of a sweeper that stopped were marked failed: "
                + ", ".join(str(t.number) for t in stale)
            )
        done = [t for t in study.get_trials(deepcopy=False) if t.state in ledger.FINISHED]
        if done:
            self.progress.message(
                f"resuming study {self.study_name!r}: {len(done)} finished trial(s) kept"
            )
        self._enqueue_initial(study)
        self.progress.message(f"strategy {self.settings.strategy}, ledger {self.storage_url}")
        self.progress.sweep_started(study, self.settings.n_trials)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        restore = _sigterm_as_interrupt()
        try:
            while True:
                batch_size = self._next_batch_size(study)
                if batch_size <= 0:
                    break
                trials = []
                for _ in range(batch_size):
                    trial = self._ask(study)
                    if trial is None:
                        break
                    trials.append(trial)
                if not trials:
                    break
                self._run_batch(study, trials)
                self._write_results(study)
                self._check_failures(study)
        finally:
            restore()
            self._write_results(study)
            self.progress.sweep_finished(study)
        return SweepResult(study, self.storage_url, self.sweep_dir, list(self.new_trials))

    # --------------------------------------------------------------------------------- helpers

    def _enqueue_initial(self, study: optuna.Study) -> None:
        for params in self.settings.enqueue:
            study.enqueue_trial(dict(params), skip_if_exists=True)
        if isinstance(self.sampler, GridSampler):
            # pending_points skips points held by live or finished trials (not by stale ones, which
            # Optuna's skip_if_exists would wrongly count); a point two sweepers enqueue at once
            # runs once, see _ask
            for point in list(self.sampler.pending_points(study)):
                study.enqueue_trial(point)

    def _next_batch_size(self, study: optuna.Study) -> int:
        trials = study.get_trials(deepcopy=False)
        if isinstance(self.sampler, GridSampler):
            return min(self.settings.n_jobs, sum(t.state == TrialState.WAITING for t in trials))
        used = sum(ledger.counts_toward_budget(t) for t in trials)
        assert self.settings.n_trials is not None
        return min(self.settings.n_jobs, self.settings.n_trials - used)

    def _ask(self, study: optuna.Study) -> optuna.Trial | None:
        """A new trial with every parameter sampled, or None when the budget or the grid is used up.

        Several sweepers may share the study, so a trial is claimed first and checked after: a grid
        point another sweeper already holds, or a trial past ``n_trials`` (counted in trial-number
        order, which the storage assigns atomically), is closed as surplus and never launched.
        """
        grid = isinstance(self.sampler, GridSampler)
        while True:
            if grid and not any(
                t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False)
            ):
                return None
            trial = study.ask()
            system_attrs = study._storage.get_trial_system_attrs(trial._trial_id)
            if grid:
                if not system_attrs.get("fixed_params"):
                    _close_surplus(study, trial, "no grid point was left for it")
                    return None
                point = system_attrs["fixed_params"]
                if _point_held_before(study, trial.number, point):
                    _close_surplus(study, trial, "another sweeper holds the same grid point")
                    continue
            elif self._budget_rank(study, trial.number) > self.settings.n_trials:
                _close_surplus(study, trial, "the study's n_trials were already used up")
                return None
            for name, dist in self.distributions.items():
                suggest(trial, name, dist)
            trial.set_user_attr(ledger.ATTR_OWNER, ledger.owner_tag())
            trial.set_user_attr(ledger.ATTR_OVERRIDES, trial_overrides(self.space, trial.params))
            return trial

    @staticmethod
    def _budget_rank(study: optuna.Study, number: int) -> int:
        return sum(
            ledger.counts_toward_budget(t)
            for t in study.get_trials(deepcopy=False)
            if t.number <= number and t.state != TrialState.WAITING
        )

    def _run_batch(self, study: optuna.Study, trials: list[optuna.Trial]) -> None:
        jobs = [TrialJob(t.number, trial_overrides(self.space, t.params)) for t in trials]
        for job in jobs:
            self.progress.trial_started(job.number, job.overrides)
        try:
            outcomes = list(self.launch(jobs))
        except KeyboardInterrupt:
            for trial in trials:
                ledger.mark_stale(
                    study, trial._trial_id, "the sweep was interrupted (Ctrl-C) while it ran"
                )
            raise SweepStopped(
                "interrupted: finished trials are in the ledger; run the same command to resume "
                f"(study {self.study_name!r} in {self.storage_url})"
            ) from None
        if len(outcomes) != len(trials):
            raise RuntimeError(
                f"the launcher returned {len(outcomes)} results for {len(trials)} jobs"
            )
        for trial, outcome in zip(trials, outcomes):
            self._record(study, trial, outcome)

    def _record(self, study: optuna.Study, trial: optuna.Trial, outcome: JobOutcome) -> None:
        self.new_trials.append(trial.number)
        if outcome.job_dir:
            trial.set_user_attr(ledger.ATTR_JOB_DIR, str(outcome.job_dir))
        if outcome.duration_s is not None:
            trial.set_user_attr(ledger.ATTR_DURATION, float(outcome.duration_s))
        state, values, reason = self._judge(outcome)
        if reason:
            trial.set_user_attr(ledger.ATTR_FAIL_REASON, reason)
        if values is not None:
            _, metrics = values
            trial.set_user_attr(ledger.ATTR_METRICS, metrics)
            frozen = study.tell(trial, values[0])
        else:
            frozen = study.tell(trial, state=state)
        self.progress.trial_finished(study, frozen)

    def _judge(
        self, outcome: JobOutcome
    ) -> tuple[TrialState, tuple[list[float], dict[str, float]] | None, str | None]:
        error = outcome.error
        if error is not None:
            if is_pruned(error):
                return TrialState.PRUNED, None, None
            return TrialState.FAIL, None, describe_error(error)
        try:
            return TrialState.COMPLETE, self.objectives.read(outcome.value), None
        except TrialFailure as exc:
            return TrialState.FAIL, None, str(exc)

    def _check_failures(self, study: optuna.Study) -> None:
        finished = [
            t
            for t in study.get_trials(deepcopy=False, states=ledger.FINISHED)
            if ledger.counts_toward_budget(t)
        ]
        failed = [t for t in finished if t.state == TrialState.FAIL]
        if not failed:
            return
        new = set(self.new_trials)
        mine = [t for t in finished if t.number in new]
        missing = [
            t
            for t in mine
            if "did not report metric" in str(t.user_attrs.get(ledger.ATTR_FAIL_REASON, ""))
        ]
        if mine and len(missing) == len(mine):
            raise SweepStopped(
                f"stopped: no trial reported the objective; {missing[-1].user_attrs[ledger.ATTR_FAIL_REASON]}. "
                "Fix: set hydra.sweeper.metric to a metric the job reports"
            )
        rate = len(failed) / len(finished)
        if rate > self.settings.max_failure_rate:
            last = failed[-1]
            raise SweepStopped(
                f"stopped: {len(failed)} of {len(finished)} trials failed ({rate:.0%}), more than "
                f"max_failure_rate={self.settings.max_failure_rate}; last failure (trial "
                f"{last.number}): {last.user_attrs.get(ledger.ATTR_FAIL_REASON, 'unknown')}"
            )

    def _write_results(self, study: optuna.Study) -> None:
        from nemo_rl_sweep.outputs.results import write_results

        write_results(study, self.sweep_dir, self.storage_url)


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """``trial.suggest_*`` for any distribution, through Optuna's public API."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise TypeError(f"unsupported distribution {dist!r}")


def is_pruned(error: BaseException | str) -> bool:
    """A job stopped by the pruner; the exception may arrive pickled or only as text."""
    if isinstance(error, optuna.TrialPruned):
        return True
    return type(error).__name__ == "TrialPruned" or (
        isinstance(error, str) and "TrialPruned" in error.splitlines()[0] if error else False
    )


def describe_error(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error.strip() or "the job failed"
    text = str(error).strip()
    if not text and error.__cause__ is not None:
        text = str(error.__cause__).strip()
    head = f"{type(error).__name__}: {text}" if text else type(error).__name__
    tb = "".join(traceback.format_tb(error.__traceback__)[-1:]).strip()
    return head if not tb else f"{head} [{tb.splitlines()[0].strip()}]"


def _sigterm_as_interrupt() -> Callable[[], None]:
    """SIGTERM (scancel of the sweeper's own job, a shutdown) stops the sweep as Ctrl-C does."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _point_held_before(study: optuna.Study, number: int, point: dict[str, Any]) -> bool:
    from nemo_rl_sweep.samplers.grid import holds_point, point_of

    return any(
        t.number < number and holds_point(t) and point_of(t) == point
        for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.WAITING
    )


def _close_surplus(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """A claimed trial that must not run: failed and stale, so it counts nowhere."""
    ledger.mark_stale(study, trial._trial_id, f"not run: {reason}")
