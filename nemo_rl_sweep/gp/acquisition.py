"""Acquisition functions, all to be maximised.

Single objective, for a GP that models "bigger is better": log expected improvement
(:func:`log_ei`), log probability of improvement (:func:`log_pi`) and the upper confidence bound
(:func:`ucb`). Several objectives, in minimisation form: log expected hypervolume improvement
(:class:`LogEHVI`). Both expected improvements rest on one stable :func:`log_h`.

**Log-EI.** Expected improvement over the best value so far, EI(x) = sigma * h(z) with
z = (mu - best - xi) / sigma and h(z) = phi(z) + z Phi(z), underflows to exactly 0 once z is
below about -38: the whole unexplored space then looks equally worthless and a gradient search
has nothing to climb. We therefore maximise log EI and compute log h(z) without ever forming
h(z) in the tail (the approach of Ament et al. 2023, "Unexpected improvements to expected
improvement for Bayesian optimization"):

* z > -1: h(z) is of order 1; take log(phi(z) + z Phi(z)) directly;
* -1/sqrt(eps) < z <= -1: h(z) = phi(z) * (1 - |z| Phi(z)/phi(z)) and the ratio Phi/phi is
  sqrt(pi/2) * erfcx(-z/sqrt(2)) (the scaled complementary error function, which does not
  underflow), so log h = -z^2/2 - log sqrt(2 pi) + log1mexp(log|z| + log erfcx(..) + log sqrt(pi/2));
* z <= -1/sqrt(eps): 1 - |z| Phi/phi rounds to 0 in float64, but its expansion is 1/z^2, so
  log h = -z^2/2 - log sqrt(2 pi) - 2 log|z|.

Each branch only sees inputs valid for it (the other lanes get a harmless stand-in), so
gradients are finite everywhere.

**Log-EHVI**, exact for independent Gaussian objectives. The region no observed point dominates (inside the reference box) is a union of disjoint boxes
(:func:`nemo_rl_sweep.pareto.hypervolume.non_dominated_boxes`). A new point y adds, in box b, the
volume prod_k (u_bk - max(l_bk, y_k))^+, so with one independent GP per objective

    EHVI = sum_b prod_k E[(u_bk - max(l_bk, Y_k))^+],  Y_k ~ N(mu_k, s_k^2).

Each factor is an integral of the normal CDF: E[(u - max(l, Y))^+] = int_l^u Phi((t - mu)/s) dt
= s (h(z_u) - h(z_l)), z = (. - mu)/s, with h(z) = phi(z) + z Phi(z), the function inside
expected improvement. No Monte-Carlo, no sample noise; we work with log h (stable in the far tail,
:func:`log_h` above), so the value and its gradient stay finite even where the
improvement is 1e-300 and a gradient search still knows which way is better (the log-EI idea
carried to hypervolume). All quantities of :class:`LogEHVI` are in minimisation form.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nemo_rl_sweep.pareto.hypervolume import non_dominated_boxes

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_SQRT_PI_2 = 0.5 * math.log(0.5 * math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_TAIL = -1.0 / math.sqrt(torch.finfo(torch.float64).eps)  # about -6.7e7
_DT = torch.float64
_MAX_ELEMENTS = 1_500_000  # rows x boxes x objectives per log-EHVI block: bounds memory


def log1mexp(t: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(t)) for t < 0, accurate near 0 and for very negative t."""
    near = t > -math.log(2.0)
    t_near = torch.where(near, t, torch.full_like(t, -1.0))
    t_far = torch.where(near, torch.full_like(t, -1.0), t)
    return torch.where(near, torch.log(-torch.expm1(t_near)), torch.log1p(-torch.exp(t_far)))


def log_h(z: torch.Tensor) -> torch.Tensor:
    """log(phi(z) + z Phi(z)), finite for every finite z (see the module docstring)."""
    upper = z > -1.0
    tail = z <= _TAIL
    mid = ~upper & ~tail

    zu = torch.where(upper, z, torch.zeros_like(z))
    pdf = torch.exp(-0.5 * zu * zu - _LOG_SQRT_2PI)
    cdf = 0.5 * torch.special.erfc(-zu * _INV_SQRT2)
    out_upper = torch.log(pdf + zu * cdf)

    zm = torch.where(mid, z, torch.full_like(z, -2.0))
    t = torch.log(-zm) + torch.log(torch.special.erfcx(-zm * _INV_SQRT2)) + _LOG_SQRT_PI_2
    out_mid = -0.5 * zm * zm - _LOG_SQRT_2PI + log1mexp(t)

    zt = torch.where(tail, z, torch.full_like(z, 2.0 * _TAIL))
    out_tail = -0.5 * zt * zt - _LOG_SQRT_2PI - 2.0 * torch.log(-zt)

    return torch.where(upper, out_upper, torch.where(mid, out_mid, out_tail))


def log_ei(mean: torch.Tensor, var: torch.Tensor, best: float, xi: float = 0.0) -> torch.Tensor:
    """log E[max(f - best - xi, 0)] for f ~ N(mean, var), stable deep in the tail."""
    sigma = torch.sqrt(var)
    return log_h((mean - best - xi) / sigma) + torch.log(sigma)


def log_pi(mean: torch.Tensor, var: torch.Tensor, best: float, xi: float = 0.0) -> torch.Tensor:
    """log P(f > best + xi), via the stable log of the normal CDF."""
    return torch.special.log_ndtr((mean - best - xi) / torch.sqrt(var))


def ucb(mean: torch.Tensor, var: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Upper confidence bound mean + sqrt(beta) * sigma."""
    return mean + math.sqrt(beta) * torch.sqrt(var)


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
