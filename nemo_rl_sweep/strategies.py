"""Strategy names -> samplers, with every option checked before a trial runs.

The names are the public contract (``hydra.sweeper.strategy``); the samplers live one a module under
``nemo_rl_sweep.samplers``, imported only when chosen, so picking ``grid`` never loads a GP.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler

from nemo_rl_sweep.errors import SweepConfigError

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
    cls = _import_target(_SAMPLER_CLASSES[strategy], "hydra.sweeper.strategy")
    _check_kwargs(cls, options, "hydra.sweeper.strategy_options", f"strategy {strategy}")
    return cls(search_space, seed=seed, **options)


def build_from_target(node: Mapping[str, Any], base: type, key: str) -> Any:
    """Instantiate ``{_target_: dotted.Class, **kwargs}`` (a sampler or pruner) with checks.

    Hydra's ``instantiate`` would do, but this library stays usable without Hydra, and a user deserves
    to hear which argument is wrong before the first trial, not a traceback from inside Optuna.
    """
    node = dict(node)
    target = node.pop("_target_", None)
    if not isinstance(target, str) or not target:
        raise SweepConfigError(key, "has no _target_", f"set {key}._target_ to a class path")
    cls = _import_target(target, f"{key}._target_")
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise SweepConfigError(
            f"{key}._target_",
            f"{target} is not a {base.__module__}.{base.__name__}",
            "fix the path",
        )
    _check_kwargs(cls, node, key, target)
    try:
        return cls(**node)
    except SweepConfigError:
        raise
    except Exception as exc:  # the class's own argument checks
        raise SweepConfigError(key, f"{target} refused its arguments ({exc})", "fix them") from None


def _import_target(path: str, key: str) -> Any:
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError, ValueError):
        raise SweepConfigError(
            key, f"cannot import {path!r}", "check the spelling, e.g. optuna.samplers.TPESampler"
        ) from None


def _check_kwargs(cls: type, kwargs: Mapping[str, Any], key: str, what: str) -> None:
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if n != "self" and p.kind != p.VAR_POSITIONAL]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise SweepConfigError(
            f"{key}.{unknown[0]}",
            f"is not an argument of {what}",
            f"use one of: {', '.join(a for a in accepted if a != 'search_space')}",
        )
