"""``strategy: optuna``: any Optuna sampler, named by ``hydra.sweeper.sampler={_target_: ...}``.

This is how a hydra-optuna-sweeper config keeps working: its ``sampler`` node is built as given
(``strategy_options`` are merged into it), TPE when it names no class, with ``hydra.sweeper.seed``
passed on unless the node sets its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.samplers import BaseSampler

from nemo_rl_sweep.samplers.rules import StrategyRules
from nemo_rl_sweep.targets import build_from_target

KEY = "hydra.sweeper.sampler"
DEFAULT_TARGET = "optuna.samplers.TPESampler"


def sampler_node(
    optuna_sampler: Mapping[str, Any] | None, options: Mapping[str, Any], seed: int | None
) -> dict[str, Any]:
    """The ``{_target_: ..., **kwargs}`` node the sampler is built from (a new dict)."""
    node = dict(optuna_sampler or {})
    node.update(options)
    node.setdefault("_target_", DEFAULT_TARGET)
    if seed is not None:
        node.setdefault("seed", seed)
    return node


class _OptunaRules(StrategyRules):
    """Optuna's samplers judge their own arguments; building one is cheap, so the check builds it."""

    def check(
        self,
        n_objectives: int,
        options: Mapping[str, Any],
        *,
        optuna_sampler: Mapping[str, Any] | None,
    ) -> None:
        build_from_target(sampler_node(optuna_sampler, options, None), BaseSampler, KEY)


RULES = _OptunaRules(
    "optuna",
    BaseSampler,
    build=lambda _, seed, options, node, __: build_from_target(
        sampler_node(node, options, seed), BaseSampler, KEY
    ),
)
