"""The baseline the project started from: scikit-learn's GaussianProcessRegressor with expected
improvement, as an Optuna sampler, so the bayes benchmark shows what the project's own GP adds.

Kept as plain as that design was: a Matérn-5/2 ARD kernel times a constant plus a white-noise term,
``normalize_y``, maximum likelihood with scikit-learn's optimiser restarts; the parameters are encoded
into the unit cube the same way as ``bayes`` does (``nemo_rl_sweep.gp.search_space``, log-aware,
one-hot categoricals) so the comparison is about the model and the acquisition, not the encoding;
expected improvement (closed form) is maximised over 2048 random candidates (no gradient search);
the first ``n_startup_trials`` points are uniform random.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.stats
from optuna.distributions import BaseDistribution
from optuna.samplers import RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep.samplers.base import SpaceSampler


class SklearnGPSampler(SpaceSampler):
    """GaussianProcessRegressor + expected improvement over random candidates (module docstring)."""

    def __init__(
        self,
        search_space: dict[str, BaseDistribution],
        *,
        seed: int | None = None,
        n_startup_trials: int = 10,
        n_candidates: int = 2048,
    ) -> None:
        from nemo_rl_sweep.gp.search_space import SpaceEncoding

        super().__init__(search_space, seed=seed, fallback=RandomSampler(seed=seed))
        self._space = dict(search_space)
        self._encoding = SpaceEncoding(self._space)
        self.n_startup_trials = n_startup_trials
        self.n_candidates = n_candidates

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if all(n in t.params for n in self._space)
        ]
        if len(done) < self.n_startup_trials:
            return {}
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        X = self._encoding.encode([t.params for t in done])
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        y = sign * np.array([t.value for t in done], dtype=float)
        kernel = ConstantKernel(1.0) * Matern(
            length_scale=np.full(X.shape[1], 0.5), length_scale_bounds=(1e-3, 1e3), nu=2.5
        ) + WhiteKernel(1e-4, noise_level_bounds=(1e-9, 1.0))
        gp = GaussianProcessRegressor(
            kernel, normalize_y=True, n_restarts_optimizer=2, random_state=self._rng
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gp.fit(X, y)
        cand = self._encoding.sample(self.n_candidates, self._rng)
        mean, sd = gp.predict(cand, return_std=True)
        sd = np.maximum(sd, 1e-12)
        z = (mean - y.max()) / sd
        ei = sd * (z * scipy.stats.norm.cdf(z) + scipy.stats.norm.pdf(z))
        return self._encoding.decode(cand[int(np.argmax(ei))])
