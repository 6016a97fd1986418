"""Maximise an acquisition function over an encoded search space.

Acquisition surfaces are multi-modal and flat almost everywhere, so one local search is not
enough and a pure random search is not precise enough. We do both:

1. score many space-filling (scrambled Sobol) candidates, plus small perturbations of the best
   points observed so far (the optimum is usually near them late in a sweep);
2. start a local search from the best few: L-BFGS-B on the continuous columns, all starts in one
   batched problem, with each column divided by its GP lengthscale so the problem is well
   conditioned; then a coordinate search over each integer / categorical parameter's values;
   repeat once if the discrete part moved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import scipy.optimize
import torch

from nemo_rl_sweep.gp.threads import single_thread

AcquisitionFn = Callable[[torch.Tensor], torch.Tensor]
_CHUNK = 1024
_MANY_VALUES = 32  # discrete params with more values are searched coarsely + locally


class SpaceLike(Protocol):
    """What the optimiser needs from an encoding (``gp.search_space.SpaceEncoding`` has it)."""

    dim: int
    continuous_columns: np.ndarray

    def sample(self, n: int, rng: np.random.RandomState) -> np.ndarray: ...

    def round(self, X: np.ndarray) -> np.ndarray: ...

    def discrete_options(self) -> list[tuple[slice, np.ndarray]]: ...


def evaluate(fn: AcquisitionFn, X: np.ndarray) -> np.ndarray:
    """Acquisition values of rows ``X`` without gradients, in chunks to bound memory."""
    out = []
    with torch.no_grad():
        for i in range(0, len(X), _CHUNK):
            out.append(fn(torch.as_tensor(X[i : i + _CHUNK], dtype=torch.float64)).numpy())
    return np.concatenate(out) if out else np.empty(0)


def _perturb(
    seeds: np.ndarray, n: int, space: SpaceLike, rng: np.random.RandomState, scale: float
) -> np.ndarray:
    """``n`` valid points near each seed row: Gaussian steps on floats, resampled discretes."""
    X = np.repeat(seeds, n, axis=0)
    cols = space.continuous_columns
    if len(cols):
        X[:, cols] = np.clip(X[:, cols] + scale * rng.standard_normal((len(X), len(cols))), 0, 1)
    options = space.discrete_options()
    if options:
        p = 1.0 / max(len(options) + len(cols), 1)
        for sl, blocks in options:
            flip = rng.uniform(size=len(X)) < p
            if flip.any():
                X[flip, sl] = blocks[rng.randint(len(blocks), size=int(flip.sum()))]
    return space.round(X)


def _refine_continuous(
    fn: AcquisitionFn, X0: np.ndarray, cols: np.ndarray, scale: np.ndarray, max_iter: int
) -> np.ndarray:
    """Batched L-BFGS-B over the continuous columns of every start (rows of X0)."""
    k = len(X0)
    base = torch.as_tensor(X0, dtype=torch.float64)
    cols_t = torch.as_tensor(cols)
    scale_t = torch.as_tensor(scale, dtype=torch.float64)

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        zt = torch.as_tensor(z.reshape(k, len(cols)), dtype=torch.float64).requires_grad_(True)
        X = base.clone()
        X[:, cols_t] = zt * scale_t
        vals = fn(X)
        finite = torch.isfinite(vals)
        loss = -torch.where(finite, vals, torch.zeros_like(vals)).sum()
        loss.backward()
        g = zt.grad.numpy().reshape(-1).copy()
        return float(loss.detach()), np.nan_to_num(g)

    z0 = (X0[:, cols] / scale).reshape(-1)
    bounds = [(0.0, 1.0 / s) for s in scale] * k
    res = scipy.optimize.minimize(
        fun, z0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": max_iter}
    )
    X = X0.copy()
    X[:, cols] = np.clip(res.x.reshape(k, len(cols)) * scale, 0.0, 1.0)
    return X


def _coordinate_search(
    fn: AcquisitionFn, X: np.ndarray, vals: np.ndarray, space: SpaceLike
) -> tuple[np.ndarray, np.ndarray, bool]:
    """One sweep over discrete parameters: each start takes the best value of each, in turn."""
    moved = False
    X = X.copy()
    vals = vals.copy()
    for sl, blocks in space.discrete_options():
        for i in range(len(X)):
            if len(blocks) > _MANY_VALUES:
                cur = int(np.argmin(np.abs(blocks - X[i, sl]).sum(1)))
                idx = np.unique(
                    np.concatenate(
                        [
                            np.linspace(0, len(blocks) - 1, _MANY_VALUES).round().astype(int),
                            np.clip(np.arange(cur - 3, cur + 4), 0, len(blocks) - 1),
                        ]
                    )
                )
                cand_blocks = blocks[idx]
            else:
                cand_blocks = blocks
            trial = np.repeat(X[i : i + 1], len(cand_blocks), axis=0)
            trial[:, sl] = cand_blocks
            v = evaluate(fn, trial)
            j = int(np.argmax(v))
            if v[j] > vals[i] + 1e-12:
                X[i] = trial[j]
                vals[i] = v[j]
                moved = True
    return X, vals, moved


def optimize_acquisition(
    fn: AcquisitionFn,
    space_encoding: SpaceLike,
    rng: np.random.RandomState,
    *,
    n_candidates: int = 2048,
    n_restarts: int = 10,
    seeds: np.ndarray | None = None,
    n_per_seed: int = 64,
    perturb_scale: float = 0.05,
    lengthscales: np.ndarray | None = None,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximise ``fn`` (batched: (m, dim) tensor -> (m,) tensor) over valid encoded points.

    ``seeds``: rows worth searching near (e.g. the best observed points). ``lengthscales``
    (one per column) precondition the gradient search. Returns every local optimum and every
    scored candidate as (rows, values), best first; rows are valid (rounded) points, so the
    caller can skip a row it must not repeat and take the next.
    """
    space = space_encoding
    with single_thread():
        pool = [space.sample(n_candidates, rng)]
        if seeds is not None and len(seeds):
            seeds = space.round(np.atleast_2d(seeds))
            pool += [seeds, _perturb(seeds, n_per_seed, space, rng, perturb_scale)]
        cand = np.concatenate(pool)
        cand_vals = evaluate(fn, cand)
        cand_vals = np.where(np.isfinite(cand_vals), cand_vals, -np.inf)
        order = np.argsort(-cand_vals, kind="stable")
        starts = cand[order[:n_restarts]]
        start_vals = cand_vals[order[:n_restarts]]

        cols = np.asarray(space.continuous_columns, dtype=int)
        scale = (
            np.ones(len(cols))
            if lengthscales is None
            else np.clip(np.asarray(lengthscales, dtype=float)[cols], 1e-3, 1.0)
        )
        X, vals = starts, start_vals
        for _ in range(2):
            if len(cols):
                X_new = space.round(_refine_continuous(fn, X, cols, scale, max_iter))
                v_new = evaluate(fn, X_new)
                better = v_new > vals
                X = np.where(better[:, None], X_new, X)
                vals = np.where(better, v_new, vals)
            if not space.discrete_options():
                break
            X, vals, moved = _coordinate_search(fn, X, vals, space)
            if not moved or not len(cols):
                break

        rows = np.concatenate([X, cand[order[n_restarts:]]])
        rvals = np.concatenate([vals, cand_vals[order[n_restarts:]]])
        final = np.argsort(-rvals, kind="stable")
        return rows[final], rvals[final]
