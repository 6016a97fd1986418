"""Acquisition functions, all to be maximised, for a GP that models "bigger is better".

Expected improvement over the best value so far, EI(x) = sigma * h(z) with
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
"""

from __future__ import annotations

import math

import torch

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_SQRT_PI_2 = 0.5 * math.log(0.5 * math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_TAIL = -1.0 / math.sqrt(torch.finfo(torch.float64).eps)  # about -6.7e7


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
