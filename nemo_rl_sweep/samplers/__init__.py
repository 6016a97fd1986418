"""The strategies: one module each, found by the name ``hydra.sweeper.strategy`` gives.

The names are the public contract. Each module holds its sampler and its ``RULES``
(:class:`nemo_rl_sweep.samplers.rules.StrategyRules`); a module is imported only when its strategy is
chosen, so picking ``grid`` never loads torch or the GP.
"""

from __future__ import annotations

import importlib

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.samplers.rules import StrategyRules

STRATEGY_NAMES: tuple[str, ...] = ("grid", "random", "bayes", "multifidelity", "pareto", "optuna")


def strategy_rules(name: str) -> StrategyRules:
    """The rules of strategy ``name``: what it accepts and how it builds its sampler."""
    if name not in STRATEGY_NAMES:
        raise SweepConfigError(
            "hydra.sweeper.strategy",
            f"unknown strategy {name!r}",
            f"use one of {', '.join(STRATEGY_NAMES)}",
        )
    return importlib.import_module(f"nemo_rl_sweep.samplers.{name}").RULES


__all__ = ["STRATEGY_NAMES", "StrategyRules", "strategy_rules"]
