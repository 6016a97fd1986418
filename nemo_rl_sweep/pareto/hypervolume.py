"""Exact hypervolume, hypervolume improvement and a box decomposition of the non-dominated region.

All public functions take values in the user's units plus per-objective directions; internally every
objective is minimised and the reference point is the corner that bounds the measured region.

Algorithms (written for small fronts, tens to a few hundred points, as a sweep produces):
- 2-D: a sort and a sweep, O(n log n).
- 3-D and up: slice along the last objective and recurse (the "hypervolume by slicing objectives"
  scheme): O(n^2 log n) in 3-D, still exact in any dimension.
- The region *not* dominated by a front (inside the reference box) is split into disjoint boxes
  on the grid of the front's coordinates; the sampler's expected hypervolume improvement sums
  over them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nemo_rl_sweep.pareto.front import normalize_directions, pareto_front_mask, to_minimization


def default_reference_point(
    values: Any, directions: Sequence[Any] | None = None, margin: float = 0.1
) -> np.ndarray:
    """Worst observed value of each objective, pushed ``margin`` x (its observed range) further out.

    In the user's units: for a maximised objective the point lies below the smallest value, for a
    minimised one above the largest. A constant objective gets ``margin`` x max(|value|, 1).
    """
    v = to_minimization(values, directions)
    if v.shape[0] == 0:
        raise ValueError("cannot derive a reference point from zero observations")
    worst = v.max(axis=0)
    spread = worst - v.min(axis=0)
    spread = np.where(spread > 0, spread, np.maximum(np.abs(worst), 1.0))
    ref_min = worst + margin * spread
    sign = _signs(directions, v.shape[1])
    return ref_min * sign


def _signs(directions: Sequence[Any] | None, m: int) -> np.ndarray:
    return np.array([-1.0 if d == "maximize" else 1.0 for d in normalize_directions(directions, m)])


def _prepare(points: Any, reference_point: Any, directions: Sequence[Any] | None):
    p = np.asarray(points, dtype=float)
    if p.ndim == 1:
        p = p.reshape(1, -1) if p.size else p.reshape(0, np.asarray(reference_point).size)
    m = p.shape[1]
    ref = np.asarray(reference_point, dtype=float).reshape(-1)
    if ref.size != m or not np.all(np.isfinite(ref)):
        raise ValueError(f"reference point {reference_point!r} is not {m} finite numbers")
    ref = ref * _signs(directions, m)
    p = to_minimization(p, directions)
    p = p[np.all(np.isfinite(p), axis=1)]
    p = p[np.all(p < ref, axis=1)]  # points not strictly better than the reference add nothing
    return p, ref


def _hv_min(p: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of minimisation points ``p`` (all strictly below ``ref``)."""
    n, m = p.shape
    if n == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - p[:, 0].min())
    if n == 1:
        return float(np.prod(ref - p[0]))
    p = p[pareto_front_mask(p)]
    if m == 2:
        order = np.lexsort((p[:, 1], p[:, 0]))
        x, y = p[order, 0], p[order, 1]
        y_best = np.minimum.accumulate(y)
        x_next = np.append(x[1:], ref[0])
        return float(np.sum((x_next - x) * (ref[1] - y_best)))
    order = np.argsort(p[:, -1], kind="stable")
    p = p[order]
    z_next = np.append(p[1:, -1], ref[-1])
    total = 0.0
    for i in range(p.shape[0]):
        depth = z_next[i] - p[i, -1]
        if depth > 0:
            total += depth * _hv_min(p[: i + 1, :-1], ref[:-1])
    return total


def hypervolume(
    points: Any, reference_point: Any, directions: Sequence[Any] | None = None
) -> float:
    """Exact volume of the objective region dominated by ``points`` and bounded by the reference.

    ``points`` is (n, m) in the user's units; ``directions`` gives each column's direction (default:
    all minimised). Points not strictly better than the reference point in every objective add
    nothing. The result is 0.0 for an empty set.
    """
    p, ref = _prepare(points, reference_point, directions)
    return _hv_min(p, ref)


def non_dominated_boxes(
    front_min: np.ndarray, ref_min: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint boxes whose union is the part of ``{y < ref}`` no point of ``front_min`` dominates.

    Minimisation form. Returns ``(lower, upper)``, each (n_boxes, m); lower bounds may be ``-inf``.
    The grid of the front's coordinates in the first m-1 objectives is cut into cells; above each
    cell the free region is a single column, unbounded below, up to the lowest last-objective value
    of the points that dominate the cell's lower corner. So there are prod(k_j + 1) boxes for k_j
    distinct coordinates in objective j (n + 1 in 2-D).
    """
    ref = np.asarray(ref_min, dtype=float)
    m = ref.size
    f = np.asarray(front_min, dtype=float).reshape(-1, m)
    f = f[np.all(f < ref, axis=1)]
    if f.shape[0]:
        f = f[pareto_front_mask(f)]
    edges = [np.concatenate(([-np.inf], np.unique(f[:, j]), [ref[j]])) for j in range(m - 1)]
    lows = [e[:-1] for e in edges]
    highs = [e[1:] for e in edges]
    lo = np.stack([g.ravel() for g in np.meshgrid(*lows, indexing="ij")], axis=1)
    hi = np.stack([g.ravel() for g in np.meshgrid(*highs, indexing="ij")], axis=1)
    if f.shape[0]:
        covers = np.all(f[None, :, : m - 1] <= lo[:, None, :], axis=2)  # (cells, points)
        top = np.where(covers, f[None, :, m - 1], np.inf).min(axis=1)
        top = np.minimum(top, ref[m - 1])
    else:
        top = np.full(lo.shape[0], ref[m - 1])
    lower = np.concatenate([lo, np.full((lo.shape[0], 1), -np.inf)], axis=1)
    upper = np.concatenate([hi, top[:, None]], axis=1)
    return lower, upper


def hypervolume_improvement(
    new_points: Any,
    front: Any,
    reference_point: Any,
    directions: Sequence[Any] | None = None,
) -> np.ndarray:
    """Hypervolume each row of ``new_points`` would add, alone, to the set ``front``.

    Computed exactly on the box decomposition of the region ``front`` leaves free.
    """
    new = np.asarray(new_points, dtype=float)
    m = new.shape[-1]
    new = to_minimization(new.reshape(-1, m), directions)
    f, ref = _prepare(np.asarray(front, float).reshape(-1, m), reference_point, directions)
    lower, upper = non_dominated_boxes(f, ref)
    lengths = upper[None] - np.maximum(lower[None], new[:, None, :])
    return np.clip(lengths, 0.0, None).prod(axis=2).sum(axis=1)
