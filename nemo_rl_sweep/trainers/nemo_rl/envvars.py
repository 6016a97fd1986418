"""Values that depend on the job's environment are resolved in the job, never in the sweeper.

A recipe may read ``${oc.env:HF_HOME}``; the job's environment (the launcher's setup lines, then
``trainer.env``) sets it, the login node running the sweeper often does not. So the check before
launch leaves every such value, and every value computed from one, for the job
(:func:`without_env_values`), and the job resolves them with ``trainer.env`` applied
(:func:`job_environment`), as the NeMo RL script it starts will.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

__all__ = ["env_dependent_keys", "job_environment", "reads_env", "without_env_values"]

# resolvers whose value is the environment's: OmegaConf's oc.env and its old name env
_ENV_RESOLVER = re.compile(r"\$\{\s*(oc\.env|env)\s*:")
_REFERENCE = re.compile(r"\$\{\s*([A-Za-z_][\w.\-]*)\s*\}")


def reads_env(value: Any) -> bool:
    """Whether a raw (unresolved) value reads an environment variable itself."""
    return isinstance(value, str) and bool(_ENV_RESOLVER.search(value))


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, f"{prefix}[{i}]" if prefix else f"[{i}]")
    else:
        yield prefix, node


def _under(key: str, other: str) -> bool:
    """``key`` is ``other`` or inside it, or contains it (a reference to a whole section)."""
    return key == other or key.startswith(other + ".") or other.startswith(key + ".")


def env_dependent_keys(cfg: DictConfig | Mapping[str, Any]) -> set[str]:
    """The keys whose value reads the environment, directly or through other keys."""
    raw = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    leaves = dict(_leaves(raw))
    dependent = {key for key, value in leaves.items() if reads_env(value)}
    changed = bool(dependent)
    while changed:
        changed = False
        for key, value in leaves.items():
            if key in dependent or not isinstance(value, str):
                continue
            refs = _REFERENCE.findall(value)
            if any(_under(ref, dep) for ref in refs for dep in dependent):
                dependent.add(key)
                changed = True
    return dependent


def without_env_values(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` with every environment-dependent value missing (``???``), so it resolves
    (``throw_on_missing=False``) with nothing the job's environment will decide."""
    copy = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    assert isinstance(copy, DictConfig)
    for key in env_dependent_keys(copy):
        key = key.split("[", 1)[0]  # a list item: the whole list is left for the job
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(copy, parent_key) if parent_key else copy
        if leaf and isinstance(parent, DictConfig):
            parent[leaf] = MISSING
    return copy


@contextmanager
def job_environment(extra: Mapping[str, str] | None) -> Iterator[dict[str, str]]:
    """``os.environ`` with ``extra`` (``trainer.env``) applied while the block runs, restored
    after; yields the job's environment as the training script will get it."""
    saved = dict(os.environ)
    os.environ.update({str(k): str(v) for k, v in (extra or {}).items()})
    try:
        yield dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)
