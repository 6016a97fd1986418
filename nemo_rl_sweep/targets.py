"""Building ``{_target_: dotted.Class, **kwargs}`` nodes (samplers, pruners) with checks.

Hydra's ``instantiate`` would do, but the library stays usable without Hydra, and a user deserves to
hear which argument is wrong before the first trial, not a traceback from inside Optuna.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from nemo_rl_sweep.errors import SweepConfigError


def build_from_target(node: Mapping[str, Any], base: type, key: str) -> Any:
    """Instantiate ``{_target_: dotted.Class, **kwargs}``, a subclass of ``base``, or refuse it."""
    node = dict(node)
    target = node.pop("_target_", None)
    if not isinstance(target, str) or not target:
        raise SweepConfigError(key, "has no _target_", f"set {key}._target_ to a class path")
    cls = import_target(target, f"{key}._target_")
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise SweepConfigError(
            f"{key}._target_",
            f"{target} is not a {base.__module__}.{base.__name__}",
            "fix the path",
        )
    check_kwargs(cls, node, key, target)
    try:
        return cls(**node)
    except SweepConfigError:
        raise
    except Exception as exc:  # the class's own argument checks
        raise SweepConfigError(key, f"{target} refused its arguments ({exc})", "fix them") from None


def import_target(path: str, key: str) -> Any:
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError, ValueError):
        raise SweepConfigError(
            key, f"cannot import {path!r}", "check the spelling, e.g. optuna.samplers.TPESampler"
        ) from None


def check_kwargs(cls: type, kwargs: Mapping[str, Any], key: str, what: str) -> None:
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
