"""Priors on the GP hyperparameters (the fit is maximum a posteriori, not maximum likelihood).

Why priors: with 10-40 points, maximum likelihood happily explains the data with a huge
lengthscale in some dimension (switching it off for good) or with all variation as noise. The
priors below keep lengthscales near the scale of the unit cube, widening with the number of
parameters (in d dimensions points are further apart, so functions must look smoother to be
learnable, as argued by Hvarfner et al. 2024, "Vanilla Bayesian optimization performs great in
high dimensions"), keep the signal variance of the standardised outputs near 1, and keep the
noise small but not zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Smallest noise variance (standardised units): keeps the Cholesky factor well conditioned.
NOISE_FLOOR = 1e-6


@dataclass(frozen=True)
class Priors:
    """Prior settings; the defaults are what BayesSampler uses.

    ``ls_loc + ls_dim_slope * log(n_params)`` is the median of the log-normal lengthscale prior
    (unit-cube inputs), ``ls_scale`` its spread in log space.
    """

    ls_loc: float = -0.7
    ls_dim_slope: float = 0.0
    ls_scale: float = 1.0
    signal_shape: float = 2.0  # Gamma(shape, rate) on the signal variance
    signal_rate: float = 1.0
    noise_shape: float = 1.1  # Gamma(shape, rate) on the noise variance
    noise_rate: float = 30.0

    def lengthscale_median(self, n_params: int) -> float:
        return math.exp(self.ls_loc + self.ls_dim_slope * math.log(max(n_params, 1)))

    def log_prob(
        self, log_ls: torch.Tensor, signal_var: torch.Tensor, noise_var: torch.Tensor, n_params: int
    ) -> torch.Tensor:
        """Unnormalised log prior density (constants dropped: they do not move the optimum)."""
        mu = self.ls_loc + self.ls_dim_slope * math.log(max(n_params, 1))
        lp = (-0.5 * ((log_ls - mu) / self.ls_scale) ** 2).sum()
        lp = lp + (self.signal_shape - 1.0) * torch.log(signal_var) - self.signal_rate * signal_var
        lp = lp + (self.noise_shape - 1.0) * torch.log(noise_var) - self.noise_rate * noise_var
        return lp


DEFAULT_PRIORS = Priors()
