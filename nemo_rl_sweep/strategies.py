"""Strategy names -> samplers, with every option checked before a trial runs.

The names are the public contract (``hydra.sweeper.strategy``); the samplers live one a module under
``nemo_rl_sweep.samplers``, imported only when chosen, so picking ``grid`` never loads a GP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.targets import build_from_target, check_kwargs, import_target

STRATEGIES = ("grid", "random", "bayes", "pareto", "optuna")
_SAMPLER_CLASSES = {
    "random": "nemo_rl_sweep.samplers.random:RandomSampler",
    "bayes": "nemo_rl_sweep.samplers.bayes:BayesSampler",
    "pareto": "nemo_rl_sweep.samplers.pareto:ParetoSampler",
}


def check_strategy(strategy: str, n_objectives: int) -> None:
    if strategy not in STRATEGIES:
        raise SweepConfigError(
            "hydra.sweeper.strategy",
            f"unknown strategy {strategy!r}",
            f"use one of {', '.join(STRATEGIES)}",
        )
    if strategy == "pareto" and n_objectives < 2:
        raise SweepConfigError(
            "hydra.sweeper.metric",
            "strategy pareto needs two or more objectives",
            "list them, e.g. hydra.sweeper.metric=[validation/accuracy,train/tokens_generated] "
            "hydra.sweeper.direction=[maximize,minimize]",
        )
    if strategy == "bayes" and n_objectives > 1:
        raise SweepConfigError(
            "hydra.sweeper.strategy",
            f"strategy bayes optimises one objective, got {n_objectives}",
            "use strategy=pareto for several objectives",
        )


def make_sampler(
    strategy: str,
    search_space: dict[str, BaseDistribution],
    *,
    seed: int | None,
    options: Mapping[str, Any] | None = None,
    optuna_sampler: Mapping[str, Any] | None = None,
    grid_points: list[dict[str, Any]] | None = None,
) -> BaseSampler:
    """The sampler of ``strategy`` over ``search_space`` with ``options`` (its keyword arguments)."""
    options = dict(options or {})
    if strategy == "grid":
        from nemo_rl_sweep.samplers.grid import GridSampler

        if options:
            raise SweepConfigError(
                "hydra.sweeper.strategy_options",
                f"strategy grid takes no options, got {sorted(options)}",
                "remove them",
            )
        return GridSampler(search_space, grid_points or [], seed=seed)
    if strategy == "optuna":
        node = dict(optuna_sampler or {})
        if options:
            node.update(options)
        if "_target_" not in node:
            node["_target_"] = "optuna.samplers.TPESampler"
        if seed is not None and "seed" not in node:
            node["seed"] = seed
        return build_from_target(node, BaseSampler, "hydra.sweeper.sampler")
    cls = import_target(_SAMPLER_CLASSES[strategy], "hydra.sweeper.strategy")
    check_kwargs(cls, options, "hydra.sweeper.strategy_options", f"strategy {strategy}")
    return cls(search_space, seed=seed, **options)
