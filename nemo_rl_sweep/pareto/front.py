"""Pareto dominance, the Pareto front and non-dominated sorting, for any number of objectives.

Every objective has its own direction ("minimize"/"maximize" or a ``StudyDirection``).
Internally everything is turned into minimisation by negating maximised columns, so one dominance
rule serves all mixes of directions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_ALIASES = {"minimize": "minimize", "min": "minimize", "maximize": "maximize", "max": "maximize"}


def normalize_directions(directions: Sequence[Any] | None, n_objectives: int) -> list[str]:
    """Return directions as a list of "minimize"/"maximize" strings (None means all minimise).

    Accepts strings (case-insensitive, "min"/"max" too) and ``StudyDirection`` values, so
    callers can pass ``study.directions`` straight through.
    """
    if directions is None:
        return ["minimize"] * n_objectives
    if isinstance(directions, str):
        directions = [directions]
    out: list[str] = []
    for d in directions:
        name = getattr(d, "name", d)  # StudyDirection.MAXIMIZE -> "MAXIMIZE"
        key = str(name).strip().lower()
        if key not in _ALIASES:
            raise ValueError(f"unknown direction {d!r}: use 'minimize' or 'maximize'")
        out.append(_ALIASES[key])
    if len(out) != n_objectives:
        raise ValueError(f"{len(out)} directions for {n_objectives} objectives")
    return out


def to_minimization(values: Any, directions: Sequence[Any] | None = None) -> np.ndarray:
    """Return a float (n, m) array, every column to be minimised (maximised ones negated)."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :] if arr.size else arr.reshape(0, 0)
    if arr.ndim != 2:
        raise ValueError(f"objective values must be a 2-D array (n, m), got shape {arr.shape}")
    dirs = normalize_directions(directions, arr.shape[1])
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in dirs])
    return arr * sign


def dominates(a: Any, b: Any, directions: Sequence[Any] | None = None) -> bool:
    """True when ``a`` is at least as good as ``b`` in every objective and better in one."""
    pa, pb = to_minimization(np.vstack([np.asarray(a, float), np.asarray(b, float)]), directions)
    return bool(np.all(pa <= pb) and np.any(pa < pb))


def _dominated_matrix(v: np.ndarray) -> np.ndarray:
    """``D[i, j]`` is True when point i dominates point j (v already in minimisation form)."""
    le = np.all(v[:, None, :] <= v[None, :, :], axis=2)
    lt = np.any(v[:, None, :] < v[None, :, :], axis=2)
    return le & lt


def pareto_front_mask(values: Any, directions: Sequence[Any] | None = None) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (duplicates on the front all stay)."""
    v = to_minimization(values, directions)
    if v.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return ~_dominated_matrix(v).any(axis=0)


def pareto_front(values: Any, directions: Sequence[Any] | None = None) -> np.ndarray:
    """Indices of the non-dominated rows of ``values``, in their original order."""
    return np.flatnonzero(pareto_front_mask(values, directions))


def non_dominated_sort(values: Any, directions: Sequence[Any] | None = None) -> list[np.ndarray]:
    """Split row indices into successive fronts: rank 0 is the Pareto front, rank 1 the front of
    what remains, and so on (Deb et al.'s fast non-dominated sorting, O(m n^2))."""
    v = to_minimization(values, directions)
    n = v.shape[0]
    if n == 0:
        return []
    dom = _dominated_matrix(v)
    n_dominators = dom.sum(axis=0)
    fronts: list[np.ndarray] = []
    current = np.flatnonzero(n_dominators == 0)
    while current.size:
        fronts.append(current)
        n_dominators = n_dominators - dom[current].sum(axis=0)
        n_dominators[current] = -1  # done; never selected again
        current = np.flatnonzero(n_dominators == 0)
    return fronts
