"""Priors on the GP hyperparameters (the fit is maximum a posteriori, not maximum likelihood).

Why priors: with 10-40 points, maximum likelihood happily explains the data with a huge
lengthscale in some dimension (switching it off for good) or with all variation as noise. So:

* lengthscales (unit-cube inputs): log-normal, median 0.5, log-sd 1 (95% between ~0.07 and
  ~3.6). We tried a median that grows with the dimension (sqrt(d) style, as argued by Hvarfner
  et al. 2024) and medians of 1 and 0.37: on Hartmann6 at 40 trials (20 seeds) the long
  lengthscales got stuck in local optima far more often; 0.5 had the fewest bad runs. The
  slope ``ls_dim_slope`` is kept as a setting (0 by default).
* signal variance of the standardised outputs: Gamma(2, 1), mode 1;
* noise variance, ``LOW_NOISE_PRIORS`` (BayesSampler's default): log-normal, median 1e-4, log-sd 2.5: prefers a near-interpolating model (so
  the last trials can refine the optimum instead of calling small differences noise) yet is
  nearly flat over the plausible range (variance 0.1, i.e. a noise sd of 0.3 standard
  deviations of the results, costs under 4 nats), so noisy training runs still get their
  noise. The Gamma(1.1, 30) prior (Optuna GPSampler's choice; ``DEFAULT_PRIORS``, fit_gp's
  default, which the Pareto sampler was tuned with) was 2-3x worse at refining Branin's
  optimum in 40 trials. Plus a floor of 1e-6 for a
  well-conditioned Cholesky factor.
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
    noise_log_loc: float | None = None  # set: log-normal noise prior instead of the Gamma
    noise_log_scale: float = 2.5

    def lengthscale_median(self, n_params: int) -> float:
        return math.exp(self.ls_loc + self.ls_dim_slope * math.log(max(n_params, 1)))

    def log_prob(
        self, log_ls: torch.Tensor, signal_var: torch.Tensor, noise_var: torch.Tensor, n_params: int
    ) -> torch.Tensor:
        """Unnormalised log prior density (constants dropped: they do not move the optimum)."""
        mu = self.ls_loc + self.ls_dim_slope * math.log(max(n_params, 1))
        lp = (-0.5 * ((log_ls - mu) / self.ls_scale) ** 2).sum()
        lp = lp + (self.signal_shape - 1.0) * torch.log(signal_var) - self.signal_rate * signal_var
        lp = lp + self.noise_log_prob(noise_var)
        return lp

    def noise_log_prob(self, noise_var):  # type: ignore[no-untyped-def]
        """Unnormalised log prior of the noise variance (float or tensor)."""
        log = torch.log if torch.is_tensor(noise_var) else math.log
        if self.noise_log_loc is not None:
            return -0.5 * ((log(noise_var) - self.noise_log_loc) / self.noise_log_scale) ** 2
        return (self.noise_shape - 1.0) * log(noise_var) - self.noise_rate * noise_var

    def noise_log_prob_grad(self, noise_var: float) -> float:
        """d(noise_log_prob)/d(noise_var)."""
        if self.noise_log_loc is not None:
            z = (math.log(noise_var) - self.noise_log_loc) / self.noise_log_scale
            return -z / (self.noise_log_scale * noise_var)
        return (self.noise_shape - 1.0) / noise_var - self.noise_rate


#: fit_gp's default: Gamma noise prior (what the Pareto sampler is tuned with).
DEFAULT_PRIORS = Priors()
#: BayesSampler's default: the log-normal noise prior described above.
LOW_NOISE_PRIORS = Priors(noise_log_loc=math.log(1e-4))
