"""Log expected hypervolume improvement (log-EHVI), exact for independent Gaussian objectives.

The region no observed point dominates (inside the reference box) is a union of disjoint boxes
(:func:`nemo_rl_sweep.pareto.hypervolume.non_dominated_boxes`). A new point y adds, in box b, the
volume prod_k (u_bk - max(l_bk, y_k))^+, so with one independent GP per objective

    EHVI = sum_b prod_k E[(u_bk - max(l_bk, Y_k))^+],  Y_k ~ N(mu_k, s_k^2).

Each factor is an integral of the normal CDF: E[(u - max(l, Y))^+] = int_l^u Phi((t - mu)/s) dt
= s (h(z_u) - h(z_l)), z = (. - mu)/s, with h(z) = phi(z) + z Phi(z), the function inside
expected improvement. No Monte-Carlo, no sample noise; we work with log h (stable in the far tail,
from ``nemo_rl_sweep.gp.log_h``), so the value and its gradient stay finite even where the
improvement is 1e-300 and a gradient search still knows which way is better (the log-EI idea
carried to hypervolume).

All quantities here are in minimisation form.
"""

from __future__ import annotations

import numpy as np
import torch

from nemo_rl_sweep.gp import log_h
from nemo_rl_sweep.gp.acquisition import log1mexp
from nemo_rl_sweep.pareto.hypervolume import non_dominated_boxes

_DT = torch.float64
_MAX_ELEMENTS = 1_500_000  # rows x boxes x objectives per block: bounds memory on big fronts


def merged_boxes(front_min: np.ndarray, ref_min: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`non_dominated_boxes`, with neighbours along the last grid axis merged when they have
    the same top (same free column), which removes most boxes of a 3-D front."""
    lower, upper = non_dominated_boxes(front_min, ref_min)
    m = lower.shape[1]
    if m < 3 or len(lower) < 2:
        return lower, upper
    # Rows are in C order of the grid, so the last grid axis (objective m-2) varies fastest.
    keep_lo, keep_hi = [lower[0].copy()], [upper[0].copy()]
    for lo, hi in zip(lower[1:], upper[1:], strict=True):
        prev_lo, prev_hi = keep_lo[-1], keep_hi[-1]
        same_column = (
            np.array_equal(lo[: m - 2], prev_lo[: m - 2])
            and np.array_equal(hi[: m - 2], prev_hi[: m - 2])
            and hi[m - 1] == prev_hi[m - 1]
            and lo[m - 2] == prev_hi[m - 2]
        )
        if same_column:
            prev_hi[m - 2] = hi[m - 2]
        else:
            keep_lo.append(lo.copy())
            keep_hi.append(hi.copy())
    return np.array(keep_lo), np.array(keep_hi)


class LogEHVI:
    """log EHVI of a point given per-objective posterior means and variances.

    ``__call__(mean, var)`` takes (n, m) tensors (minimisation form, same units as the boxes) and
    returns (n,) log EHVI values, differentiable.

    Boxes share their sides: in each objective there are only O(front size) distinct (lower,
    upper) intervals, so each factor's log is computed once per distinct interval and gathered
    into the boxes, rather than once per box.
    """

    def __init__(self, front_min: np.ndarray, ref_min: np.ndarray) -> None:
        lower, upper = merged_boxes(np.asarray(front_min, float), np.asarray(ref_min, float))
        self.n_boxes, self.m = lower.shape
        self._sides = []  # per objective: (lower, upper, lower is finite) of distinct intervals
        self._index = []  # per objective: box -> its interval
        for k in range(self.m):
            pairs, inv = np.unique(
                np.stack([lower[:, k], upper[:, k]], 1), axis=0, return_inverse=True
            )
            finite = np.isfinite(pairs[:, 0])
            lo = torch.as_tensor(np.where(finite, pairs[:, 0], 0.0), dtype=_DT)
            self._sides.append(
                (lo, torch.as_tensor(pairs[:, 1], dtype=_DT), torch.as_tensor(finite))
            )
            self._index.append(torch.as_tensor(inv.reshape(-1), dtype=torch.long))

    def _log_factor(self, mu: torch.Tensor, s: torch.Tensor, k: int) -> torch.Tensor:
        """log E[(u - max(l, Y))^+] for every distinct interval of objective k: (n, P_k)."""
        lo, up, finite = self._sides[k]
        log_hu = log_h((up[None] - mu[:, None]) / s[:, None])
        log_hl = log_h((lo[None] - mu[:, None]) / s[:, None])
        # h(z_l) < h(z_u) as l < u; where l = -inf, h(z_l) = 0 and the factor is s h(z_u).
        diff = torch.where(finite[None], log_hl - log_hu, torch.full_like(log_hu, -1.0))
        gap = torch.where(finite[None], log1mexp(diff.clamp_max(-1e-15)), torch.zeros_like(diff))
        return log_hu + gap + torch.log(s)[:, None]

    def _block(self, mean: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for k in range(self.m):
            total = total + self._log_factor(mean[:, k], sd[:, k], k)[:, self._index[k]]
        return torch.logsumexp(total, dim=1)

    def __call__(self, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        sd = torch.sqrt(var.clamp_min(1e-18))
        step = max(1, _MAX_ELEMENTS // max(1, self.n_boxes))
        if mean.shape[0] <= step:
            return self._block(mean, sd)
        return torch.cat(
            [self._block(mean[i : i + step], sd[i : i + step]) for i in range(0, len(mean), step)]
        )
