"""Random search: uniform draws, or a stratified (scrambled Sobol) sequence.

Plain uniform draws leave gaps and clumps; with a few dozen expensive trials a stratified design covers
each dimension evenly, which is what classic HPO guides call a "stratified grid". The k-th point of the
sequence goes to trial number k, so a resumed sweep, or several sweepers on one study, continue the
same sequence instead of starting it again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial
from scipy.stats import qmc

from nemo_rl_sweep.samplers.base import SpaceSampler, from_unit
from nemo_rl_sweep.samplers.rules import StrategyRules


class RandomSampler(SpaceSampler):
    """Uniform (log-aware) random search; ``stratified=True`` draws a scrambled Sobol sequence."""

    def __init__(
        self,
        search_space: dict[str, BaseDistribution] | None = None,
        *,
        seed: int | None = None,
        stratified: bool = False,
    ) -> None:
        super().__init__(search_space, seed=seed)
        self.stratified = bool(stratified)
        self._sobol_seed = (
            seed if seed is not None else int(np.random.SeedSequence().entropy % 2**31)
        )

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        names = sorted(search_space)
        if self.stratified:
            engine = qmc.Sobol(d=len(names), scramble=True, seed=self._sobol_seed)
            if trial.number:
                engine.fast_forward(trial.number)
            point = engine.random(1)[0]
        else:
            point = np.random.RandomState(
                None if self._seed is None else (self._seed, trial.number)
            ).uniform(size=len(names))
        return {name: from_unit(search_space[name], float(u)) for name, u in zip(names, point)}


RULES = StrategyRules("random", RandomSampler)
