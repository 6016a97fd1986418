"""What a strategy accepts, checked before any trial runs, and how it builds its sampler.

Each strategy module (``grid``, ``random``, ``bayes``, ``pareto``, ``optuna``) holds one ``RULES``
object: its objective count, its option names (by default, the keyword arguments of its sampler
class), the checks of its option values, and the construction of its sampler. The sweep asks the
rules, never the strategy's name, so a new strategy is one new module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.targets import check_kwargs

OPTIONS_KEY = "hydra.sweeper.strategy_options"

# (search_space, seed, options, optuna_sampler, grid_points) -> the strategy's sampler
Build = Callable[
    [
        dict[str, BaseDistribution],
        int | None,
        dict[str, Any],
        Mapping[str, Any] | None,
        list[dict[str, Any]] | None,
    ],
    BaseSampler,
]


class StrategyRules:
    """A strategy whose options are the keyword arguments of ``sampler_class``.

    Subclasses narrow what they accept by overriding :meth:`check_objectives`,
    :meth:`check_option_names` and :meth:`check_option_values`; they must raise every ``SweepConfigError`` the sampler's
    construction would raise about them, so a bad setting is refused before the ledger is touched.
    """

    def __init__(
        self, name: str, sampler_class: type[BaseSampler], build: Build | None = None
    ) -> None:
        self.name = name
        self.sampler_class = sampler_class
        self._build = build or self._from_options

    def _from_options(
        self,
        search_space: dict[str, BaseDistribution],
        seed: int | None,
        options: dict[str, Any],
        optuna_sampler: Mapping[str, Any] | None,
        grid_points: list[dict[str, Any]] | None,
    ) -> BaseSampler:
        return self.sampler_class(search_space, seed=seed, **options)

    def check(
        self,
        n_objectives: int,
        options: Mapping[str, Any],
        *,
        optuna_sampler: Mapping[str, Any] | None,
    ) -> None:
        """Refuse (``SweepConfigError``) what this strategy cannot run; mutates nothing."""
        self.check_objectives(n_objectives)
        if optuna_sampler:
            raise SweepConfigError(
                "hydra.sweeper.sampler",
                f"is used by strategy optuna only, the strategy is {self.name}",
                "set hydra.sweeper.strategy=optuna, or remove hydra.sweeper.sampler",
            )
        self.check_option_names(options)
        self.check_option_values(options, n_objectives)

    def check_objectives(self, n_objectives: int) -> None:
        """Any number of objectives is fine unless a strategy says otherwise."""

    def check_option_names(self, options: Mapping[str, Any]) -> None:
        """The options are the keyword arguments of the sampler class."""
        check_kwargs(self.sampler_class, options, OPTIONS_KEY, f"strategy {self.name}")

    def check_option_values(self, options: Mapping[str, Any], n_objectives: int) -> None:
        """Options whose names are right may still have values the strategy refuses."""

    def pruner_node(self, options: Mapping[str, Any]) -> dict[str, Any] | None:
        """The ``{_target_: ...}`` pruner this strategy stops trials with (None: the user's choice,
        ``hydra.sweeper.pruner``); a strategy whose decisions include stopping trials names it."""
        return None

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
        """The strategy's sampler over ``search_space``, by default built from its options."""
        return self._build(search_space, seed, dict(options), optuna_sampler, grid_points)
