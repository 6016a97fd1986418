"""The Matérn-5/2 kernel with one lengthscale per input group (ARD).

Matérn-5/2 is twice differentiable: smooth enough for gradient-based acquisition search, rough
enough not to over-smooth real response surfaces the way the squared-exponential kernel does.
"""

from __future__ import annotations

import math
from typing import Any

import torch

_SQRT5 = math.sqrt(5.0)


class _Matern52(torch.autograd.Function):
    """k(r2) = (1 + sqrt(5 r2) + 5/3 r2) exp(-sqrt(5 r2)) as a function of the squared distance.

    Written as a function of r2 with a hand-made derivative because autograd through sqrt(r2)
    divides by zero at r2 = 0 (a point and itself), although the true derivative there is finite:
    dk/dr2 = -5/6 (1 + sqrt(5 r2)) exp(-sqrt(5 r2)).
    """

    @staticmethod
    def forward(ctx: Any, r2: torch.Tensor) -> torch.Tensor:
        s = torch.sqrt(5.0 * r2)
        e = torch.exp(-s)
        ctx.save_for_backward((-5.0 / 6.0) * (1.0 + s) * e)
        return (1.0 + s + (5.0 / 3.0) * r2) * e

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (d,) = ctx.saved_tensors
        return grad * d


def matern52(r2: torch.Tensor) -> torch.Tensor:
    """Matérn-5/2 correlation of squared scaled distances ``r2`` (any shape, >= 0)."""
    return _Matern52.apply(r2.clamp_min(0.0))


def scaled_sqdist(X1: torch.Tensor, X2: torch.Tensor, inv_sq_ls: torch.Tensor) -> torch.Tensor:
    """sum_j (x1_j - x2_j)^2 / l_j^2 for every pair: (..., n1, d), (n2, d) -> (..., n1, n2).

    Computed from explicit differences (not the |a|^2 + |b|^2 - 2ab expansion) so that the
    distance of a point to itself is exactly 0 and the posterior variance at data is exact.
    """
    diff = X1.unsqueeze(-2) - X2
    return (diff * diff) @ inv_sq_ls
