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
