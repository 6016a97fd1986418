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


# Disconnected fronts (issue 18): the front falls apart into pieces, so a sampler must jump gaps.


def zdt3(x: Sequence[float]) -> tuple[float, float]:
    """ZDT3: f2 = g (1 - sqrt(f1/g) - f1/g sin(10 pi f1)); at x[1:] = 0 (g = 1) the front is the
    five non-dominated pieces of that curve, f1 in [0, 0.852], f2 in [-0.773, 1]."""
    x = np.asarray(x, dtype=float)
    f1 = float(x[0])
    g = 1.0 + 9.0 * float(np.sum(x[1:])) / (x.size - 1)
    r = f1 / g
    return f1, float(g * (1.0 - np.sqrt(r) - r * np.sin(10.0 * np.pi * f1)))


def dtlz7(x: Sequence[float], n_objectives: int = 3) -> tuple[float, ...]:
    """DTLZ7 (Deb et al. 2002): f_i = x_i for i < m, f_m = (1 + g) (m - sum f_i/(1+g) (1 +
    sin(3 pi f_i))); at x[m-1:] = 0 (g = 1) the front is 2^(m-1) separate pieces, f_m in [2.6, 6]
    for m = 3."""
    x = np.asarray(x, dtype=float)
    m = n_objectives
    f = x[: m - 1]
    g = 1.0 + 9.0 * float(np.mean(x[m - 1 :]))
    h = m - float(np.sum(f / (1.0 + g) * (1.0 + np.sin(3.0 * np.pi * f))))
    return (*map(float, f), float((1.0 + g) * h))


def _cummin_hv_1d(best: np.ndarray, a: np.ndarray, ref: float) -> float:
    """Integral over the grid ``a`` of (ref - best)^+, where best[i] is the front's lowest last
    objective among points no worse than a[i] in the others (trapezoid rule)."""
    return float(np.trapezoid(np.clip(ref - best, 0.0, None), a))


def _zdt3_max_hv(ref: tuple[float, float], n: int = 400_001) -> float:
    # HV = int_0^r1 (r2 - min_{t <= min(a, 1)} h(t))^+ da, h(t) = 1 - sqrt(t) - t sin(10 pi t)
    a = np.linspace(0.0, ref[0], n)
    t = np.minimum(a, 1.0)
    h = 1.0 - np.sqrt(t) - t * np.sin(10.0 * np.pi * t)
    return _cummin_hv_1d(np.minimum.accumulate(h), a, ref[1])


def _dtlz7_3_max_hv(ref: tuple[float, float, float], n: int = 4001) -> float:
    # At g = 1, f3 = 2 (3 - phi(f1) - phi(f2)), phi(t) = t/2 (1 + sin(3 pi t)); the best f3 among
    # front points with f1 <= a, f2 <= b uses the running maximum of phi, so the dominated volume
    # is a double integral over (a, b) of (r3 - 6 + 2 Phi(a) + 2 Phi(b))^+.
    a = np.linspace(0.0, ref[0], n)
    b = np.linspace(0.0, ref[1], n)
    ta, tb = np.minimum(a, 1.0), np.minimum(b, 1.0)
    pa = np.maximum.accumulate(ta / 2 * (1 + np.sin(3 * np.pi * ta)))
    pb = np.maximum.accumulate(tb / 2 * (1 + np.sin(3 * np.pi * tb)))
    inner = np.clip(ref[2] - 6.0 + 2.0 * pa[:, None] + 2.0 * pb[None, :], 0.0, None)
    return float(np.trapezoid(np.trapezoid(inner, b, axis=1), a))


# Hypervolume references of the disconnected problems (the front's nadir plus ~10% of its range,
# as for the others) and the true maximum hypervolume there.
ZDT3_REF = (1.1, 1.1)
DTLZ7_3_REF = (1.1, 1.1, 6.6)
ZDT3_MAX_HV = _zdt3_max_hv(ZDT3_REF)
DTLZ7_3_MAX_HV = _dtlz7_3_max_hv(DTLZ7_3_REF)


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
