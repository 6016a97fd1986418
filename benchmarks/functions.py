"""Benchmark test functions shared by the benchmark scripts.

Sections are owned by different engineers; add yours in its own section and leave the others alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# --- multi-objective test problems (Pareto engineer) -------------------------------------------
# Each takes a point in [0, 1]^d and returns a tuple of objectives, all minimised. The known true
# hypervolume at reference point (1.1, ..., 1.1) is given for each so tables can show how far off a
# sampler is.


def zdt1(x: Sequence[float]) -> tuple[float, float]:
    """ZDT1 (Zitzler, Deb, Thiele 2000): convex front f2 = 1 - sqrt(f1), at x[1:] = 0."""
    x = np.asarray(x, dtype=float)
    f1 = float(x[0])
    g = 1.0 + 9.0 * float(np.sum(x[1:])) / (x.size - 1)
    return f1, float(g * (1.0 - np.sqrt(f1 / g)))


def zdt2(x: Sequence[float]) -> tuple[float, float]:
    """ZDT2: concave front f2 = 1 - f1^2, reached with x[1:] = 0."""
    x = np.asarray(x, dtype=float)
    f1 = float(x[0])
    g = 1.0 + 9.0 * float(np.sum(x[1:])) / (x.size - 1)
    return f1, float(g * (1.0 - (f1 / g) ** 2))


def dtlz2(x: Sequence[float], n_objectives: int = 3) -> tuple[float, ...]:
    """DTLZ2 (Deb, Thiele, Laumanns and Zitzler 2002): the front is the positive unit sphere octant,
    reached with x[m-1:] = 0.5."""
    x = np.asarray(x, dtype=float)
    m = n_objectives
    g = float(np.sum((x[m - 1 :] - 0.5) ** 2))
    theta = x[: m - 1] * np.pi / 2
    out = []
    for i in range(m):
        f = 1.0 + g
        f *= float(np.prod(np.cos(theta[: m - 1 - i])))
        if i > 0:
            f *= float(np.sin(theta[m - 1 - i]))
        out.append(f)
    return tuple(out)


# True hypervolume of each front at reference point 1.1 in every objective (minimisation):
# ZDT1: 1.21 minus the area under the front f2 = 1 - sqrt(f1) (1/3); ZDT2: minus 2/3.
ZDT1_MAX_HV = 1.21 - 1.0 / 3.0  # 1.1*1.1 - area between front and the axes box [0,1]x[0,1.1]
ZDT2_MAX_HV = 1.21 - 2.0 / 3.0
DTLZ2_3_MAX_HV = 1.1**3 - np.pi / 6.0  # cube minus the positive octant of the unit ball


# --- single-objective test problems with known minima (bayes engineer) -------------------------
# Each is a Problem: an Optuna search space, a function of a parameter dict, and its known minimum,
# so simple regret = best value found - minimum.
import math  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from optuna.distributions import (  # noqa: E402
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


@dataclass(frozen=True)
class Problem:
    """A minimisation problem with a known optimum."""

    name: str
    space: dict[str, BaseDistribution]
    fn: Callable[[dict[str, Any]], float]
    optimum: float

    def __call__(self, params: dict[str, Any]) -> float:
        return float(self.fn(params))


def branin_xy(x1: float, x2: float) -> float:
    """Branin-Hoo on [-5, 10] x [0, 15]; minimum 0.397887 at three points."""
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6_x(x: np.ndarray) -> float:
    """Hartmann 6-D on [0, 1]^6; minimum -3.32237."""
    inner = (_H6_A * (np.asarray(x)[None, :] - _H6_P) ** 2).sum(axis=1)
    return float(-(_H6_ALPHA * np.exp(-inner)).sum())


def ackley_x(x: np.ndarray) -> float:
    """Ackley on [-32.768, 32.768]^d; minimum 0 at the origin."""
    x = np.asarray(x, dtype=float)
    d = len(x)
    return float(
        -20 * math.exp(-0.2 * math.sqrt((x**2).sum() / d))
        - math.exp(np.cos(2 * math.pi * x).sum() / d)
        + 20
        + math.e
    )


def levy_x(x: np.ndarray) -> float:
    """Levy on [-10, 10]^d; minimum 0 at (1, ..., 1)."""
    w = 1 + (np.asarray(x, dtype=float) - 1) / 4
    head = math.sin(math.pi * w[0]) ** 2
    mid = ((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2)).sum()
    tail = (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)
    return float(head + mid + tail)


def _floats(prefix: str, d: int, low: float, high: float) -> dict[str, BaseDistribution]:
    return {f"{prefix}{i}": FloatDistribution(low, high) for i in range(d)}


def _vec(params: dict[str, Any], prefix: str, d: int) -> np.ndarray:
    return np.array([params[f"{prefix}{i}"] for i in range(d)], dtype=float)


BRANIN = Problem(
    "branin",
    {"x1": FloatDistribution(-5.0, 10.0), "x2": FloatDistribution(0.0, 15.0)},
    lambda p: branin_xy(p["x1"], p["x2"]),
    0.39788735772973816,
)
HARTMANN6 = Problem(
    "hartmann6", _floats("x", 6, 0.0, 1.0), lambda p: hartmann6_x(_vec(p, "x", 6)), -3.32236801
)
ACKLEY10 = Problem(
    "ackley10", _floats("x", 10, -32.768, 32.768), lambda p: ackley_x(_vec(p, "x", 10)), 0.0
)
LEVY10 = Problem("levy10", _floats("x", 10, -10.0, 10.0), lambda p: levy_x(_vec(p, "x", 10)), 0.0)

# A space shaped like a training sweep: a float, an int, a log-scaled float and a categorical.
# value = Branin(x, k) with k an integer + a penalty for lr away from 1e-2 (in decades) + an
# offset per optimiser; the minimum is Branin's minimum over integer k (computed below).
_OPT_OFFSET = {"adam": 0.0, "rmsprop": 0.5, "sgd": 2.0}


def _mixed(p: dict[str, Any]) -> float:
    return (
        branin_xy(p["x"], float(p["k"]))
        + 2.0 * (math.log10(p["lr"]) + 2.0) ** 2
        + _OPT_OFFSET[p["optimizer"]]
    )


def _mixed_optimum() -> float:
    from scipy.optimize import minimize_scalar

    best = math.inf
    for k in range(16):
        for lo, hi in ((-5.0, 0.0), (0.0, 5.0), (5.0, 10.0)):
            r = minimize_scalar(branin_xy, args=(float(k),), bounds=(lo, hi), method="bounded")
            best = min(best, float(r.fun))
    return best


MIXED = Problem(
    "mixed",
    {
        "x": FloatDistribution(-5.0, 10.0),
        "k": IntDistribution(0, 15),
        "lr": FloatDistribution(1e-5, 1.0, log=True),
        "optimizer": CategoricalDistribution(("sgd", "adam", "rmsprop")),
    },
    _mixed,
    _mixed_optimum(),
)

PROBLEMS = {p.name: p for p in (BRANIN, HARTMANN6, ACKLEY10, LEVY10, MIXED)}
