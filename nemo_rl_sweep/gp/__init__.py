"""Gaussian-process Bayesian optimisation parts, written for this package.

Reusable by any model-based sampler:

* :func:`fit_gp` (X, y) -> :class:`GPModel`: Matérn-5/2 ARD GP on unit-cube rows (one-hot
  columns for categoricals), standardised outputs, MAP hyperparameters under :class:`Priors`;
  ``GPModel.posterior(Xq) -> (mean, var)``; ``GPModel.condition_on`` for pending points.
* :func:`log_ei`, :func:`log_pi`, :func:`ucb`, :class:`LogEHVI`: acquisition functions (stable
  log-EI, exact log expected hypervolume improvement).
* :class:`SpaceEncoding` (``gp.search_space``): an Optuna search space as the unit cube the GP
  models, and back.
* :func:`optimize_acquisition`: Sobol candidates + batched L-BFGS-B + discrete coordinate search.
"""

from nemo_rl_sweep.gp.acquisition import LogEHVI, log_ei, log_h, log_pi, merged_boxes, ucb
from nemo_rl_sweep.gp.model import GPModel, Hyperparameters, fit_gp, standardise
from nemo_rl_sweep.gp.optimize import evaluate, optimize_acquisition
from nemo_rl_sweep.gp.priors import DEFAULT_PRIORS, LOW_NOISE_PRIORS, NOISE_FLOOR, Priors

__all__ = [
    "DEFAULT_PRIORS",
    "LOW_NOISE_PRIORS",
    "NOISE_FLOOR",
    "GPModel",
    "Hyperparameters",
    "LogEHVI",
    "Priors",
    "evaluate",
    "fit_gp",
    "log_ei",
    "log_h",
    "log_pi",
    "merged_boxes",
    "optimize_acquisition",
    "standardise",
    "ucb",
]
