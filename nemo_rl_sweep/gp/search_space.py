"""Map an Optuna search space to the unit cube a Gaussian process models, and back.

Every model-based sampler of this package (bayes, pareto) sees parameters through this one mapping,
so a learning rate means the same number to all of them:

* floats go to [0, 1] linearly, or in log space when ``log=True`` (a learning rate's scale);
* ints (and floats with a ``step``) get one equal-width cell per allowed value, in log space when
  ``log=True``; a model point is always *rounded* to the centre of its cell, so the model never
  believes it can observe a value between two integers;
* categoricals become one-hot columns (one per choice); a valid point has exactly one 1.

Single-valued distributions carry no information and are left out by the caller
(:func:`modelable_space`).
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from scipy.stats import qmc

_SOBOL_LOCK = threading.Lock()  # scipy's Sobol engine is not safe to build from several threads


def modelable_space(space: Mapping[str, BaseDistribution]) -> dict[str, BaseDistribution]:
    """The part of ``space`` a model can learn from: everything with more than one value."""
    return {name: dist for name, dist in space.items() if not dist.single()}


class _Param:
    """How one parameter occupies columns of the encoded space."""

    def __init__(self, name: str, dist: BaseDistribution, first_column: int) -> None:
        self.name = name
        self.dist = dist
        self.kind: str
        self.columns = slice(first_column, first_column + 1)
        self.grid: np.ndarray | None = None  # encoded cell centres of a discrete numeric param
        if isinstance(dist, CategoricalDistribution):
            self.kind = "categorical"
            self.columns = slice(first_column, first_column + len(dist.choices))
            return
        if not isinstance(dist, FloatDistribution | IntDistribution):
            raise TypeError(f"{name}: unsupported distribution {type(dist).__name__}")
        step = dist.step if (isinstance(dist, IntDistribution) or dist.step is not None) else None
        self.log = bool(dist.log)
        if step is None:
            self.kind = "float"
            self.low, self.high = float(dist.low), float(dist.high)
        else:
            self.kind = "discrete"
            self.step = float(step)
            n = int(round((dist.high - dist.low) / self.step)) + 1
            self.values = dist.low + self.step * np.arange(n)
            self.low, self.high = dist.low - 0.5 * self.step, dist.high + 0.5 * self.step
        if self.log:
            self.low, self.high = math.log(self.low), math.log(self.high)
        if self.kind == "discrete":
            self.grid = self._to_unit(self.values)

    @property
    def width(self) -> int:
        return self.columns.stop - self.columns.start

    def _to_unit(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        if self.log:
            v = np.log(v)
        return (v - self.low) / (self.high - self.low)

    def encode(self, value: Any) -> np.ndarray:
        if self.kind == "categorical":
            out = np.zeros(self.width)
            out[self.dist.to_internal_repr(value)] = 1.0  # type: ignore[attr-defined]
            return out
        return np.atleast_1d(np.clip(self._to_unit(float(value)), 0.0, 1.0))

    def encode_many(self, values: list[Any]) -> np.ndarray:
        """Columns (n, width) of n values."""
        if self.kind == "categorical":
            out = np.zeros((len(values), self.width))
            idx = [self.dist.to_internal_repr(v) for v in values]  # type: ignore[attr-defined]
            out[np.arange(len(values)), idx] = 1.0
            return out
        return np.clip(self._to_unit(np.asarray(values, dtype=float)), 0.0, 1.0)[:, None]

    def decode(self, cols: np.ndarray) -> Any:
        if self.kind == "categorical":
            return self.dist.choices[int(np.argmax(cols))]  # type: ignore[attr-defined]
        u = float(np.clip(cols[0], 0.0, 1.0))
        if self.kind == "discrete":
            value = self.values[int(np.argmin(np.abs(self.grid - u)))]
            return int(round(value)) if isinstance(self.dist, IntDistribution) else float(value)
        v = self.low + u * (self.high - self.low)
        v = math.exp(v) if self.log else v
        return float(min(max(v, self.dist.low), self.dist.high))  # type: ignore[attr-defined]

    def from_uniform(self, u: np.ndarray) -> np.ndarray:
        """Columns of this param for uniform draws ``u`` in [0, 1) (n,) -> (n, width)."""
        u = np.clip(u, 0.0, np.nextafter(1.0, 0.0))
        if self.kind == "categorical":
            out = np.zeros((len(u), self.width))
            out[np.arange(len(u)), (u * self.width).astype(int)] = 1.0
            return out
        if self.kind == "discrete":
            return self.grid[np.minimum((u * len(self.grid)).astype(int), len(self.grid) - 1)][
                :, None
            ]
        return u[:, None]

    def round(self, cols: np.ndarray) -> np.ndarray:
        """Project columns (n, width) onto valid encoded values."""
        if self.kind == "categorical":
            out = np.zeros_like(cols)
            out[np.arange(len(cols)), np.argmax(cols, axis=1)] = 1.0
            return out
        if self.kind == "discrete":
            idx = np.argmin(np.abs(cols[:, :1] - self.grid[None, :]), axis=1)
            return self.grid[idx][:, None]
        return np.clip(cols, 0.0, 1.0)


class SpaceEncoding:
    """The encoded (unit-cube, one-hot) view of a search space.

    Attributes used by :mod:`nemo_rl_sweep.gp`:
      ``dim`` (number of columns), ``column_groups`` (column -> parameter index, so all one-hot
      columns of a categorical share one lengthscale), ``continuous_columns`` (columns free for
      gradient steps), ``discrete_params`` (list of (column slice, list of candidate column
      blocks) a coordinate search can try), ``sample(n, rng)`` and ``round(X)``.
    """

    def __init__(self, space: Mapping[str, BaseDistribution]) -> None:
        if not space:
            raise ValueError("empty search space")
        self.names = list(space)
        self.params: list[_Param] = []
        col = 0
        for name, dist in space.items():
            p = _Param(name, dist, col)
            self.params.append(p)
            col += p.width
        self.dim = col
        self.n_params = len(self.params)
        self.column_groups = np.concatenate(
            [np.full(p.width, i, dtype=int) for i, p in enumerate(self.params)]
        )
        self.continuous_columns = np.array(
            [p.columns.start for p in self.params if p.kind == "float"], dtype=int
        )
        self.has_discrete = any(p.kind != "float" for p in self.params)

    # -- Optuna values <-> encoded rows ------------------------------------------------------
    def encode(self, params: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Rows (n, dim) for parameter dicts that hold every name of the space."""
        X = np.zeros((len(params), self.dim))
        for p in self.params:
            column = [values[p.name] for values in params]
            X[:, p.columns] = p.encode_many(column)
        return X

    def decode(self, x: np.ndarray) -> dict[str, Any]:
        """Parameter dict (Optuna external values) of one encoded row."""
        return {p.name: p.decode(x[p.columns]) for p in self.params}

    # -- valid points ------------------------------------------------------------------------
    def from_uniform(self, U: np.ndarray) -> np.ndarray:
        """Encoded valid rows from uniform draws, one column of ``U`` per parameter."""
        return np.concatenate([p.from_uniform(U[:, i]) for i, p in enumerate(self.params)], axis=1)

    def sobol_uniform(self, n: int, seed: int) -> np.ndarray:
        """``n`` scrambled Sobol points in [0, 1)^n_params (a whole power of two is drawn)."""
        m = max(0, math.ceil(math.log2(max(n, 1))))
        with _SOBOL_LOCK:
            engine = qmc.Sobol(self.n_params, scramble=True, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return engine.random_base2(m)[:n]

    def sample(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        """``n`` space-filling valid encoded rows (scrambled Sobol, seeded from ``rng``)."""
        return self.from_uniform(self.sobol_uniform(n, int(rng.randint(2**31 - 1))))

    def round(self, X: np.ndarray) -> np.ndarray:
        """Project encoded rows (n, dim) onto valid points (one-hot, int cell centres, clip)."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        out = np.empty_like(X)
        for p in self.params:
            out[:, p.columns] = p.round(X[:, p.columns])
        return out

    def discrete_options(self) -> list[tuple[slice, np.ndarray]]:
        """For each non-float parameter: its columns and the valid column blocks it can take."""
        out = []
        for p in self.params:
            if p.kind == "categorical":
                out.append((p.columns, np.eye(p.width)))
            elif p.kind == "discrete":
                out.append((p.columns, p.grid[:, None]))
        return out
