"""The ``nemo_rl`` Hydra sweeper: a thin adapter from Hydra to ``nemo_rl_sweep.loop``.

It reads the search space (config group + command line), checks every key against the trial config
before any job starts, and hands trials to whatever Hydra launcher is configured: one job at a time
where the launcher allows it (``slots``: submitit, joblib), so the loop keeps every slot busy, else
in batches (the basic launcher). The engine, and every heavy import, lives in ``nemo_rl_sweep``.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Sequence
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.nemo_rl_sweeper import config as _config  # noqa: F401  (registers the schema)
from nemo_rl_sweep.job import unwrap_return, wrap_return
from nemo_rl_sweep.settings import SweepSettings


class TimedTask:
    """The user's task function, timed: a job's own duration, whichever launcher runs it."""

    def __init__(self, task_function: TaskFunction) -> None:
        self.task_function = task_function

    def __call__(self, cfg: DictConfig) -> Any:
        from nemo_rl_sweep.job import trial_deadline

        start = time.monotonic()
        with trial_deadline(_trial_timeout_s()):
            value = self.task_function(cfg)
        duration = time.monotonic() - start
        _write_job_metrics(value, duration)
        return wrap_return(value, duration)


def _trial_timeout_s() -> float | None:
    """The job's ``hydra.sweeper.trial_timeout_s`` (checked by the sweeper before any job)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return OmegaConf.select(HydraConfig.get(), "sweeper.trial_timeout_s", default=None)


def _write_job_metrics(value: Any, duration: float) -> None:
    """Leave the job's numbers in its own folder, next to Hydra's config and log."""
    import json
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    numbers = _container(value) if OmegaConf.is_config(value) else value
    if not isinstance(numbers, dict):
        numbers = {"value": numbers}
    out = Path(HydraConfig.get().runtime.output_dir) / "metrics.json"
    out.write_text(json.dumps({**numbers, "duration_s": duration}, indent=2, default=str))


class NemoRLSweeper(Sweeper):
    """Its parameters are the schema's keys (``config.py``): ``SweepSettings``'s fields, the search
    space ``params`` and each job's ``trial_number`` (read by the job, not here)."""

    def __init__(
        self,
        strategy: str | None,
        strategy_options: Any,
        metric: Any,
        direction: Any,
        n_trials: int | None,
        n_jobs: int,
        storage: str | None,
        study_name: str | None,
        max_failure_rate: float,
        seed: int | None,
        dry_run: bool,
        sampler: Any,
        pruner: Any,
        enqueue: Any,
        warm_start_from: Any,
        confirm: Any,
        trial_timeout_s: Any = None,
        heartbeat_interval: Any = 60,
        grace_period: Any = None,
        params: Any = None,
        trial_number: int | None = None,
    ) -> None:
        self.settings = SweepSettings(
            strategy=strategy,
            strategy_options=_container(strategy_options),
            metric=_container(metric),
            direction=_container(direction),
            n_trials=n_trials,
            n_jobs=n_jobs,
            storage=storage,
            study_name=study_name,
            max_failure_rate=max_failure_rate,
            seed=seed,
            dry_run=dry_run,
            sampler=_container(sampler),
            pruner=_container(pruner),
            enqueue=_container(enqueue),
            warm_start_from=_container(warm_start_from),
            confirm=_container(confirm),
            trial_timeout_s=trial_timeout_s,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
        )
        self.params = {} if params is None else _container(params)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None
        self.job_idx = 0
        self._running: Any = None
        self._composed: dict[tuple[str, ...], DictConfig] = {}

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=TimedTask(task_function), config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from nemo_rl_sweep.errors import SweepConfigError, SweepStopped

        try:
            return self._sweep(arguments)
        except (SweepConfigError, SweepStopped) as exc:
            print(
                f"Error: {exc}" if isinstance(exc, SweepConfigError) else str(exc), file=sys.stderr
            )
            sys.exit(2 if isinstance(exc, SweepConfigError) else 3)
        except Exception as exc:
            from nemo_rl_sweep.ledger import unwritable_text

            text = unwritable_text(exc)
            if text is None:
                raise
            print(f"Error: {text}", file=sys.stderr)
            sys.exit(3)

    def _sweep(self, arguments: list[str]) -> Any:
        from dataclasses import replace
        from pathlib import Path

        from nemo_rl_sweep.errors import SweepConfigError
        from nemo_rl_sweep.loop import Sweep
        from nemo_rl_sweep.screening import check_feasible
        from nemo_rl_sweep.settings import check_types, objective_or_default, resolved_strategy
        from nemo_rl_sweep.space import parse_overrides, parse_params
        from nemo_rl_sweep.warm_start import expand_recipe_entries

        assert self.config is not None
        check_types(self.settings)
        if not isinstance(self.params, dict):
            raise SweepConfigError(
                "hydra.sweeper.params",
                f"must be a mapping of config key to sweep, got {self.params!r}",
                "e.g. params: {x: 'interval(0, 1)'}",
            )
        trainer = _trainer_of(self.config)
        strategy = resolved_strategy(self.settings)
        command_line = parse_overrides(arguments)
        fixed = [f.override() for f in command_line.fixed.values()]
        space = parse_params(self._space_params(trainer, strategy, fixed))
        space = space.with_overrides(command_line)
        enqueue = expand_recipe_entries(self.settings.enqueue, space, self._recipe_value)
        metric, direction = objective_or_default(
            self.settings.metric, self.settings.direction, trainer.default_objective(self.config)
        )
        settings = replace(self.settings, enqueue=enqueue, metric=metric, direction=direction)
        self.settings = settings
        sweep_dir = Path(self.config.hydra.sweep.dir).absolute()
        ledger_dir = Path(self.config.hydra.runtime.cwd) / "multirun"
        slots, batch_reason = self._slots(settings.n_jobs)
        sweep = Sweep(
            space,
            settings,
            self._launch,
            sweep_dir,
            task_name=str(self.config.hydra.job.name),
            ledger_dir=ledger_dir,
            slots=slots,
            batch_reason=batch_reason,
            screen=self._screen if trainer.has_rules else None,
        )
        trial_cfg = self._check_trial_config(space, sweep)
        sweep.set_seed_key(_lookup(trial_cfg if trial_cfg is not None else self.config))
        if trainer.has_rules:
            check_feasible(space, sweep.plan.grid_points, self._screen, print)
        if settings.dry_run:
            return _print_dry_run(sweep)
        from nemo_rl_sweep.ledger import check_writable_folder

        # a read-only or full disk is found here, not by the first job or the first results file
        check_writable_folder(sweep_dir, "hydra.sweep.dir", f"the sweep folder {sweep_dir}")
        sweep.open()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self._ledger_url, self._study_name = sweep.storage_url, sweep.study_name
        self._running = sweep
        result = sweep.run()
        self._free_disk(result.study)
        from nemo_rl_sweep.outputs.plots import write_plots
        from nemo_rl_sweep.outputs.summary import print_summary

        write_plots(result.study, result.sweep_dir)  # never raises; a failed plot is one line
        print_summary(result.study, result.sweep_dir, result.storage_url)
        return result

    # ---------------------------------------------------------------------------------------

    def _space_params(self, trainer: Any, strategy: str, fixed: list[str]) -> Any:
        """The search space group's keys; a preset's ``auto`` becomes the space that fits the
        trainer and its recipe (composed by Hydra, as if named on the command line)."""
        assert self.config is not None and self.hydra_context is not None
        if self.config.hydra.runtime.choices.get(SPACE_GROUP) != "auto":
            return self.params
        name = trainer.default_search_space(self.config, strategy)
        composed = self.hydra_context.config_loader.load_sweep_config(
            self.config, [*fixed, f"{SPACE_GROUP}={name}"]
        )
        print(
            f"search space: {name} (auto, for trainer {trainer.name}); name another with {SPACE_GROUP}=<name>"
        )
        return {**(_container(composed.hydra.sweeper.params) or {}), **self.params}

    def _trial_config(self, overrides: Sequence[str]) -> DictConfig:
        """The config a trial with ``overrides`` gets, without its ``hydra`` node: Hydra composes
        it once per choice of config groups; the other keys are applied as Hydra applies them."""
        from nemo_rl_sweep.trainers.nemo_rl.config import apply_overrides

        assert self.config is not None and self.hydra_context is not None
        choices = self.config.hydra.runtime.choices
        groups = tuple(o for o in overrides if o.split("=", 1)[0].lstrip("+~") in choices)
        base = self._composed.get(groups)
        if base is None:
            base = self.hydra_context.config_loader.load_sweep_config(self.config, list(groups))
            with open_dict(base):
                base.pop("hydra", None)
            self._composed[groups] = base
        cfg = copy.deepcopy(base)
        return apply_overrides(cfg, [o for o in overrides if o not in groups])

    def _screen(self, overrides: list[str]) -> str | None:
        """The screening hook the loop calls before a trial launches: the trainer's broken rule."""
        cfg = self._trial_config(overrides)
        return _trainer_of(cfg).infeasible(cfg)

    def _recipe_value(self, key: str) -> Any:
        """The trial config's value at ``key`` (for ``enqueue: [recipe]``); KeyError if it has none."""
        return _lookup(self.config)(key)

    def _check_trial_config(self, space: Any, sweep: Any) -> DictConfig | None:
        """Refuse, before any job, a swept key the run would never read or the trial config lacks
        (unless written ``+key``), then check the first trial's config and return it (the
        confirmation's seed key is looked up in it)."""
        from nemo_rl_sweep.errors import SweepConfigError

        assert self.config is not None
        choices = self.config.hydra.runtime.choices
        swept = [key for key in space.params if key not in choices]
        _trainer_of(self.config).check_keys(self.config, swept)
        for key, param in {**space.params, **space.fixed}.items():
            if param.prefix or key in choices or key.startswith("hydra."):
                continue
            if (
                OmegaConf.select(self.config, key, default=_ABSENT, throw_on_missing=False)
                is _ABSENT
            ):
                raise SweepConfigError(
                    key,
                    "is not a key of the trial config",
                    f"check the spelling, or write +{key} to add it",
                )
        _check_metrics(self.config, self.settings.metric)
        assert self.hydra_context is not None
        _check_launcher(self.config)
        trial_cfg = None
        for overrides in sweep.preview(1):
            try:
                trial_cfg = self.hydra_context.config_loader.load_sweep_config(
                    self.config, list(overrides)
                )
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise SweepConfigError(
                    "trial overrides",
                    f"Hydra cannot compose a trial config ({first})",
                    "fix the key or value it names",
                ) from None
            trainer = _trainer_of(trial_cfg)
            with open_dict(trial_cfg):
                trial_cfg.pop("hydra", None)
            trainer.check(
                trial_cfg,
                self.settings.metric,
                self.settings.direction,
                trials_at_once=_trials_at_once(self.config, self.settings.n_jobs),
            )
            check_launcher = getattr(self.launcher, "check_trial", None)
            if check_launcher is not None:  # the ray.sub trial mode: its files, then Slurm
                check_launcher(trial_cfg, ask_slurm=not self.settings.dry_run)
        return trial_cfg

    def _slots(self, n_jobs: int) -> tuple[Any, str]:
        """The loop's ``JobSlots`` when the launcher can start one job at a time, else why not."""
        from hydra_plugins.nemo_rl_sweeper.slots import HydraSlots, runner_for

        runner, why_not = runner_for(self.launcher, n_jobs)
        if runner is None:
            return None, why_not
        return HydraSlots(runner, self._job_batch, _outcome, self._take_job_idx), ""

    def _take_job_idx(self, n: int) -> int:
        """The first of ``n`` job indexes, unique in this process whichever mode runs the jobs."""
        first = self.job_idx
        self.job_idx += n
        return first

    def _job_batch(self, jobs: Sequence[Any]) -> list[list[str]]:
        """Each job's Hydra overrides; first, what finished trials no longer need is freed."""
        from nemo_rl_sweep.job import job_overrides

        if self._running is not None and self._running.study is not None:
            self._free_disk(self._running.study)  # before the next jobs write their own
        objective = _objective_overrides(self.settings.metric, self.settings.direction)
        return [
            list(job.overrides)
            + job_overrides(job.number, self._ledger_url, self._study_name)
            + objective
            for job in jobs
        ]

    def _free_disk(self, study: Any) -> None:
        """What finished trials no longer need goes (``trainer.checkpoints``); the bytes freed
        add up in the ledger, for the summary. Never stops the sweep."""
        from nemo_rl_sweep import ledger
        from nemo_rl_sweep.trainers import FinishedTrial, get_trainer

        try:
            best = {t.number for t in study.best_trials}
        except ValueError:
            best = set()
        finished = [
            FinishedTrial(
                t.user_attrs[ledger.ATTR_JOB_DIR],
                study.study_name,
                t.number,
                self._ledger_url,
                t.number in best,
            )
            for t in study.get_trials(deepcopy=False, states=ledger.FINISHED)
            if t.user_attrs.get(ledger.ATTR_JOB_DIR)
            and not t.user_attrs.get(ledger.ATTR_COPIED_FROM)
        ]
        trainer = get_trainer(OmegaConf.select(self.config, "trainer.name", default="embedded"))
        try:
            freed = trainer.free_disk(self.config, finished)
        except OSError as exc:
            print(f"[nemo_rl_sweep] could not delete checkpoints: {exc}", file=sys.stderr)
            return
        if freed:
            total = int(study.user_attrs.get(ledger.STUDY_ATTR_FREED_BYTES, 0)) + freed
            study.set_user_attr(ledger.STUDY_ATTR_FREED_BYTES, total)

    def _launch(self, jobs: Sequence[Any]) -> list[Any]:
        """The batch fallback: the whole batch through the launcher's own ``launch``."""
        batch = self._job_batch(jobs)
        returns = self.launcher.launch(batch, initial_job_idx=self._take_job_idx(len(batch)))
        return [_outcome(ret) for ret in returns]


def _outcome(ret: Any) -> Any:
    """A Hydra ``JobReturn`` as the loop's ``JobOutcome``."""
    from hydra_plugins.nemo_rl_sweeper.submitit_jobs import explain
    from nemo_rl_sweep.job import JobOutcome

    raw = getattr(ret, "_return_value", None)
    job_dir = _job_dir(ret)
    status = getattr(getattr(ret, "status", None), "name", "COMPLETED")
    if status == "FAILED" or isinstance(raw, BaseException):
        return JobOutcome(failure=explain(raw), job_dir=job_dir)
    value, duration_s = unwrap_return(raw)
    return JobOutcome(value=value, job_dir=job_dir, duration_s=duration_s)


_ABSENT = object()
SPACE_GROUP = "search_space@hydra.sweeper.params"


def _trainer_of(config: Any) -> Any:
    from nemo_rl_sweep.trainers import get_trainer

    return get_trainer(OmegaConf.select(config, "trainer.name", default="embedded"))


def _objective_overrides(metric: Any, direction: Any) -> list[str]:
    """The sweep's resolved objective, for the job (pruning reports it, the runner reads it)."""
    from nemo_rl_sweep.space import format_value

    def text(value: Any) -> str:
        if isinstance(value, str):
            return format_value(value)
        return "[" + ",".join(format_value(v) for v in value) + "]"

    return [f"hydra.sweeper.metric={text(metric)}", f"hydra.sweeper.direction={text(direction)}"]


def _lookup(config: DictConfig) -> Any:
    """``lookup(key)``: the config's value at ``key``, KeyError when it has none."""

    def lookup(key: str) -> Any:
        value = OmegaConf.select(config, key, default=_ABSENT, throw_on_missing=False)
        if value is _ABSENT:
            raise KeyError(key)
        return _container(value)

    return lookup


def _check_launcher(config: DictConfig) -> None:
    """A Slurm launcher on a machine without Slurm would fail every trial; say so up front."""
    import shutil

    from nemo_rl_sweep.errors import SweepConfigError

    target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    if "SlurmLauncher" in target and shutil.which("sbatch") is None:
        raise SweepConfigError(
            "hydra/launcher",
            "submitit_slurm needs Slurm's sbatch, which is not on PATH here",
            "run on a Slurm login node, or use hydra/launcher=basic (or joblib) on this machine",
        )


def _trials_at_once(config: DictConfig, n_jobs: int) -> int | None:
    """How many trials the launcher runs side by side on this node; None when they run on other
    nodes (Slurm) or the launcher is not one we know."""
    import os

    target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    if target.endswith("BasicLauncher"):
        return 1
    if target.endswith("JoblibLauncher"):
        workers = int(OmegaConf.select(config, "hydra.launcher.n_jobs", default=-1) or -1)
        if workers < 0:  # joblib: -1 is every core, -2 all but one, ...
            workers = max(1, (os.cpu_count() or 1) + 1 + workers)
        return max(1, min(n_jobs, workers))
    if target.endswith("LocalLauncher"):  # submitit's local launcher
        return max(1, n_jobs)
    return None


def _check_metrics(config: DictConfig, metric: Any) -> None:
    """A trainer that lists what it reports (``trainer.metrics``) lets us refuse a typo up front."""
    from nemo_rl_sweep.errors import SweepConfigError
    from nemo_rl_sweep.trainers import get_trainer

    trainer = get_trainer(OmegaConf.select(config, "trainer.name", default="embedded"))
    reported = trainer.metrics(config)
    if reported is None:
        return
    names = [metric] if isinstance(metric, str) else list(_container(metric) or [])
    for name in names:
        if name not in reported:
            raise SweepConfigError(
                "hydra.sweeper.metric",
                f"{name!r} is not reported by trainer {OmegaConf.select(config, 'trainer.name')}",
                "use one of " + ", ".join(str(m) for m in reported),
            )


def _job_dir(ret: Any) -> str | None:
    """The job's own output folder (its working dir only when Hydra changed into it)."""
    hydra_cfg = getattr(ret, "hydra_cfg", None)
    try:
        return str(hydra_cfg.hydra.runtime.output_dir)
    except Exception:
        return getattr(ret, "working_dir", None)


def _container(value: Any) -> Any:
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _print_dry_run(sweep: Any) -> None:
    print(f"[dry run] study {sweep.study_name!r} in {sweep.storage_url}")
    objectives = sweep.objectives
    print(
        "[dry run] objective: "
        + ", ".join(f"{n} ({d})" for n, d in zip(objectives.names, objectives.directions))
    )
    print(f"[dry run] strategy {sweep.plan.strategy}, search space:")
    for key, text in sweep.space.describe().items():
        print(f"  {key}: {text}")
    print("[dry run] first trials it would launch (nothing was launched):")
    for i, overrides in enumerate(sweep.preview(5)):
        print(f"  #{i} " + " ".join(overrides))
