"""Strategy names -> their rules (checks and sampler), over today's ``strategies`` functions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.strategies import STRATEGIES, check_strategy, make_sampler

STRATEGY_NAMES: tuple[str, ...] = STRATEGIES


@dataclass(frozen=True)
class _Rules:
    name: str

    def check(
        self,
        n_objectives: int,
        options: Mapping[str, Any],
        *,
        optuna_sampler: Mapping[str, Any] | None,
    ) -> None:
        check_strategy(self.name, n_objectives)
        if self.name == "pareto":
            from nemo_rl_sweep.samplers.pareto import validate_pareto_options

            keys = ("reference_point", "method", "n_startup_trials")
            validate_pareto_options(n_objectives, **{k: options[k] for k in keys if k in options})

    def make(
        self,
        search_space: dict[str, BaseDistribution],
        *,
        seed: int | None,
        options: Mapping[str, Any],
        n_objectives: int,
        optuna_sampler: Mapping[str, Any] | None,
        grid_points: list[dict[str, Any]] | None,
    ) -> BaseSampler:
        return make_sampler(
            self.name,
            search_space,
            seed=seed,
            options=options,
            optuna_sampler=optuna_sampler,
            grid_points=grid_points,
        )


def strategy_rules(name: str) -> _Rules:
    if name not in STRATEGY_NAMES:
        raise SweepConfigError(
            "hydra.sweeper.strategy",
            f"unknown strategy {name!r}",
            f"use one of {', '.join(STRATEGY_NAMES)}",
        )
    return _Rules(name)
