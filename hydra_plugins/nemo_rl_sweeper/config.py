"""The sweeper's config schema, registered as ``hydra/sweeper: nemo_rl``.

Keys carry hydra-optuna-sweeper's names where they mean the same (``direction``, ``n_trials``,
``n_jobs``, ``storage``, ``study_name``, ``max_failure_rate``, ``params``, ``sampler``, ``seed``), so
a sweep moves over by changing one ``override /hydra/sweeper:`` line.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class NemoRLSweeperConf:
    _target_: str = "hydra_plugins.nemo_rl_sweeper.sweeper.NemoRLSweeper"
    # hand `sampler`/`pruner` over as {_target_: ...} nodes, checked by nemo_rl_sweep, not as objects
    _recursive_: bool = False
    # grid | random | bayes | pareto | optuna
    # null: optuna when a `sampler` node is given (hydra-optuna-sweeper files), else random
    strategy: str | None = None
    # keyword arguments of the strategy's sampler (e.g. stratified: true, n_startup_trials: 8)
    strategy_options: dict[str, Any] = field(default_factory=dict)
    # one metric name or a list; one direction per metric (minimize | maximize)
    metric: Any = "validation/accuracy"
    direction: Any = "maximize"
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
    # (Any, not dict | None: OmegaConf cannot merge a command-line dict into a None-typed dict node)
    sampler: Any = None
    # {_target_: optuna.pruners.MedianPruner, ...} or null
    pruner: Any = None
    # param dicts run first (warm start)
    enqueue: list[Any] = field(default_factory=list)
    # seed the study with the COMPLETE trials of an earlier one: {study_name: ..., storage: ...}
    warm_start_from: Any = None
    # key -> Hydra sweep string; filled by the search_space config group
    params: dict[str, Any] | None = None
    # set by the sweeper for each job so the job can find its ledger trial; not for users
    trial_number: int | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="nemo_rl", node=NemoRLSweeperConf, provider="nemo_rl_sweeper"
)
