"""The sweeper's keys (``hydra.sweeper.*``), defined once, and the one check that reads them.

``SweepSettings`` is the field list: the Hydra schema (``hydra_plugins.nemo_rl_sweeper.config``) and
the plugin's ``__init__`` are derived from it, so a key is added in one place. ``check_settings``
refuses every bad key before the ledger is touched or a job starts, and returns a ``SweepPlan``: what
the sweep needs, with defaults resolved, leaving the settings as the user wrote them.

Hydra imports the schema at start-up, so this module imports nothing heavy at the top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nemo_rl_sweep.errors import SweepConfigError

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler

    from nemo_rl_sweep.confirmation import ConfirmSettings
    from nemo_rl_sweep.ledger import HeartbeatTiming
    from nemo_rl_sweep.objectives import Objectives
    from nemo_rl_sweep.space import SearchSpace
    from nemo_rl_sweep.warm_start import WarmStartSource


@dataclass(frozen=True)
class SweepSettings:
    """The sweeper's keys, named as in hydra-optuna-sweeper where they mean the same."""

    # grid | random | bayes | multifidelity | pareto | optuna
    # null: optuna when a `sampler` node is given (hydra-optuna-sweeper files), else random
    strategy: str | None = None
    # keyword arguments of the strategy's sampler (e.g. stratified: true, n_startup_trials: 8)
    strategy_options: dict[str, Any] = field(default_factory=dict)
    # one metric name or a list; one direction per metric (minimize | maximize)
    # null: the trainer's default for the recipe (NeMo RL: GRPO validation/accuracy max, SFT
    # validation/val_loss min, DPO validation-default/loss min); a null direction follows the metric
    metric: str | list[str] | None = None
    direction: str | list[str] | None = None
    # total trials in the study (grid: null runs every point)
    n_trials: int | None = 20
    # trials per launcher batch (run at once by joblib / Slurm launchers)
    n_jobs: int = 1
    # null: sqlite file multirun/nemo_rl_sweep.db under the launch folder
    storage: str | None = None
    # null: <task>-<strategy>-<hash of space and objective>, so the same command resumes
    study_name: str | None = None
    # stop the sweep once more than this share of all trials so far has failed
    max_failure_rate: float = 0.5
    seed: int | None = None
    # print the search space and the first trials, launch nothing
    dry_run: bool = False
    # strategy=optuna: {_target_: optuna.samplers.TPESampler, ...}
    sampler: dict[str, Any] | None = None
    # {_target_: optuna.pruners.MedianPruner, ...} or null
    pruner: dict[str, Any] | None = None
    # param dicts (or "recipe") run first (warm start)
    enqueue: list[Any] = field(default_factory=list)
    # seed the study with the COMPLETE trials of an earlier one: {study_name: ..., storage: ...}
    warm_start_from: dict[str, Any] | None = None
    # after the search, re-run the top_k best distinct configurations (a Pareto front's members)
    # with `seeds` new values of the trainer's seed key each (seed_key null: grpo.seed, sft.seed,
    # dpo.seed, ... whichever the trial config has); the answer is the best mean. top_k null: off
    confirm: dict[str, Any] = field(
        default_factory=lambda: {"top_k": None, "seeds": 3, "seed_key": None}
    )
    # seconds a trial may run before it is stopped and failed (kind timeout); null: no limit
    trial_timeout_s: float | None = None
    # seconds between the sweeper's heartbeats for its running trials (Optuna's heartbeat on a
    # database, incl. SQLite; a trial attribute on a journal file); null: off, only a dead sweeper
    # on the same host is seen. A RUNNING trial silent for more than grace_period seconds (null:
    # 2 x heartbeat_interval) is failed as stale by any sweeper of the study, on any host, and re-run
    heartbeat_interval: int | None = 60
    grace_period: int | None = None


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep runs with, every default resolved: the result of ``check_settings``."""

    strategy: str
    objectives: Objectives
    sampler: BaseSampler
    pruner: BasePruner | None
    enqueue: list[dict[str, Any]]
    grid_points: list[dict[str, Any]] | None
    warm_start: WarmStartSource | None
    confirm: ConfirmSettings | None = None
    # the pruner node the jobs rebuild from the ledger: the user's, or the strategy's own
    pruner_node: dict[str, Any] | None = None


DEFAULT_OBJECTIVE = ("validation/accuracy", "maximize")


def objective_or_default(
    metric: Any, direction: Any, default: tuple[str, str] = DEFAULT_OBJECTIVE
) -> tuple[Any, Any]:
    """The metric and direction a sweep runs with: the user's, else ``default`` (the trainer's
    for its recipe); a direction left null follows what the metric's name says it is (a loss is
    minimized), else maximize."""
    from nemo_rl_sweep.objectives import direction_of

    if metric is None:
        return default[0], default[1] if direction is None else direction
    if direction is None:
        names = [metric] if isinstance(metric, str) else list(metric)
        dirs = [default[1] if n == default[0] else direction_of(n) or "maximize" for n in names]
        direction = dirs[0] if isinstance(metric, str) else dirs
    return metric, direction


def resolved_strategy(settings: SweepSettings) -> str:
    """The strategy to run; a hydra-optuna-sweeper file names a sampler, not a strategy."""
    if settings.strategy is not None:
        return settings.strategy
    return "optuna" if settings.sampler else "random"


def check_settings(settings: SweepSettings, space: SearchSpace) -> SweepPlan:
    """Every sweeper key checked, before the ledger is touched or a job starts; mutates nothing."""
    from nemo_rl_sweep.confirmation import check_confirm
    from nemo_rl_sweep.objectives import Objectives
    from nemo_rl_sweep.pruning import check_pruner
    from nemo_rl_sweep.samplers import strategy_rules
    from nemo_rl_sweep.warm_start import check_enqueue, check_source

    check_types(settings)
    metric, direction = objective_or_default(settings.metric, settings.direction)
    objectives = Objectives.from_settings(metric, direction)
    strategy = resolved_strategy(settings)
    rules = strategy_rules(strategy)
    n_objectives = len(objectives.names)
    rules.check(n_objectives, settings.strategy_options, optuna_sampler=settings.sampler)
    n = settings.n_trials
    if strategy != "grid" and n is None:
        raise SweepConfigError(
            "hydra.sweeper.n_trials", "is null", "set hydra.sweeper.n_trials to a positive number"
        )
    _check_positive_int("n_trials", n, "e.g. n_trials=20", allow_none=True)
    _check_positive_int("n_jobs", settings.n_jobs, "e.g. n_jobs=2")
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
    _check_heartbeat(settings.heartbeat_interval, settings.grace_period)
    if not space.params and not settings.enqueue:
        raise SweepConfigError(
            "hydra.sweeper.params",
            "the search space is empty: nothing is swept",
            "pick a search space (search_space=grpo) or sweep a key, e.g. "
            "'policy.optimizer.kwargs.lr=tag(log, interval(1e-4, 1e-2))'",
        )
    enqueue = check_enqueue(settings.enqueue, space, n)
    warm_start = check_source(settings.warm_start_from)
    grid_points = _grid_points(space, n) if strategy == "grid" else None
    # the search completes at most n_trials trials (a grid: its points)
    confirm = check_confirm(settings.confirm, len(grid_points) if grid_points is not None else n)
    sampler = rules.make(
        space.distributions,
        seed=settings.seed,
        options=settings.strategy_options,
        n_objectives=n_objectives,
        optuna_sampler=settings.sampler,
        grid_points=grid_points,
    )
    pruner_node = rules.pruner_node(settings.strategy_options)
    if pruner_node is not None and settings.pruner:
        raise SweepConfigError(
            "hydra.sweeper.pruner",
            f"strategy {strategy} stops trials with its own learning-curve model",
            "remove hydra.sweeper.pruner (tune it with strategy_options.stop_ratio), "
            "or use strategy=bayes with a pruner",
        )
    if pruner_node is None:
        pruner_node = settings.pruner
    pruner = check_pruner(pruner_node, objectives.names)
    return SweepPlan(
        strategy,
        objectives,
        sampler,
        pruner,
        enqueue,
        grid_points,
        warm_start,
        confirm,
        dict(pruner_node) if pruner_node else None,
    )


# what each key may hold: the Hydra schema types every key Any (a wrong type there would be Hydra's
# own multi-line error, exit 1), so the types are checked here, as one Error: line before any job
_STR, _INT, _NUM, _BOOL, _DICT, _LIST, _NONE = str, int, (int, float), bool, dict, list, type(None)
_TYPES: dict[str, tuple[tuple[type, ...], str, str]] = {
    "strategy": ((_STR, _NONE), "a strategy name or null", "strategy=bayes"),
    "strategy_options": ((_DICT,), "a mapping", "strategy_options={n_startup_trials:8}"),
    "metric": ((_STR, _LIST, _NONE), "a metric name, a list of names or null", "metric=score"),
    "direction": (
        (_STR, _LIST, _NONE),
        "minimize, maximize, a list of them or null",
        "direction=maximize",
    ),
    "n_trials": ((_INT, _NONE), "a positive integer or null", "n_trials=20"),
    "n_jobs": ((_INT,), "a positive integer", "n_jobs=2"),
    "storage": ((_STR, _NONE), "a storage URL or null", "storage=sqlite:///ledger.db"),
    "study_name": ((_STR, _NONE), "a study name or null", "study_name=my_study"),
    "max_failure_rate": ((_NUM,), "a number in [0, 1]", "max_failure_rate=0.5"),
    "seed": ((_INT, _NONE), "an integer or null", "seed=0"),
    "dry_run": ((_BOOL,), "true or false", "dry_run=true"),
    "sampler": ((_DICT, _NONE), "a {_target_: ...} mapping or null", "drop the key"),
    "pruner": ((_DICT, _NONE), "a {_target_: ...} mapping or null", "pruner=null"),
    "enqueue": ((_LIST,), "a list of parameter mappings", "enqueue=[]"),
    "warm_start_from": (
        (_DICT, _NONE),
        "a {study_name: ..., storage: ...} mapping or null",
        "warm_start_from=null",
    ),
    "confirm": ((_DICT, _NONE), "a mapping or null", "confirm={top_k:3}"),
    "trial_timeout_s": ((_NUM, _NONE), "a number of seconds or null", "trial_timeout_s=3600"),
    "heartbeat_interval": ((_INT, _NONE), "a positive integer or null", "heartbeat_interval=60"),
    "grace_period": ((_INT, _NONE), "a positive integer or null", "grace_period=180"),
}
SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are unsigned 32-bit


def check_types(settings: SweepSettings) -> None:
    """Every key holds a value of its kind (and strings are not blank), so the checks and the
    sweeper after this one never meet a type they cannot read."""
    for name, (types, kind, example) in _TYPES.items():
        value = getattr(settings, name)
        wrong = (isinstance(value, bool) and bool not in types) or not isinstance(value, types)
        if isinstance(value, str) and not value.strip():
            wrong = True
        if isinstance(value, list) and name in ("metric", "direction"):
            wrong = wrong or not all(isinstance(v, str) for v in value)
        if wrong:
            raise SweepConfigError(
                f"hydra.sweeper.{name}", f"must be {kind}, got {value!r}", f"e.g. {example}"
            )
    timeout = settings.trial_timeout_s
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise SweepConfigError(
            "hydra.sweeper.trial_timeout_s",
            f"must be a positive number of seconds or null, got {timeout!r}",
            "e.g. trial_timeout_s=3600",
        )
    seed = settings.seed
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise SweepConfigError(
            "hydra.sweeper.seed", f"must be in [0, {SEED_MAX}], got {seed}", "e.g. seed=0"
        )


GRID_MAX = 100_000  # points a grid with n_trials null may hold (each is a trial in the ledger)


def _grid_points(space: SearchSpace, n_trials: int | None) -> list[dict[str, Any]]:
    """The grid's first ``n_trials`` points (all of them for null), never the whole product."""
    import itertools

    size = space.grid_size()  # 0: an interval, which space.grid() refuses with its own line
    if n_trials is None and size > GRID_MAX:
        raise SweepConfigError(
            "hydra.sweeper.n_trials",
            f"is null, and the grid has {size} points, more than {GRID_MAX} can run",
            "set n_trials to the number of points to run, or use fewer values",
        )
    return list(itertools.islice(space.grid(), n_trials))


def _check_heartbeat(interval: Any, grace: Any) -> None:
    _check_positive_int(
        "heartbeat_interval", interval, "e.g. heartbeat_interval=60", allow_none=True
    )
    _check_positive_int("grace_period", grace, "e.g. grace_period=180", allow_none=True)
    if grace is not None and interval is None:
        raise SweepConfigError(
            "hydra.sweeper.grace_period",
            "is set but heartbeat_interval is null (no heartbeats to wait for)",
            "set hydra.sweeper.heartbeat_interval, e.g. 60, or leave grace_period null",
        )
    if grace is not None and grace <= interval:
        raise SweepConfigError(
            "hydra.sweeper.grace_period",
            f"{grace} s is not longer than heartbeat_interval={interval} s: live trials would be "
            "failed as stale",
            f"set grace_period to at least 2 x heartbeat_interval, e.g. {2 * interval}",
        )


def heartbeat_timing(settings: SweepSettings) -> HeartbeatTiming | None:
    """The heartbeat's interval and grace in seconds (grace null: twice the interval, as Optuna's
    default), or None when heartbeats are off."""
    from nemo_rl_sweep.ledger import HeartbeatTiming

    if settings.heartbeat_interval is None:
        return None
    interval = settings.heartbeat_interval
    return HeartbeatTiming(interval, settings.grace_period or 2 * interval)


def _check_positive_int(key: str, value: Any, example: str, *, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SweepConfigError(
            f"hydra.sweeper.{key}", f"must be a positive integer, got {value!r}", example
        )
