"""The one sampler base: search-space inference, seeding and the fallback draws."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from nemo_rl_sweep.samplers.base import UniformDraws, from_unit
from nemo_rl_sweep.samplers.bayes import BayesSampler
from nemo_rl_sweep.samplers.pareto import ParetoSampler
from nemo_rl_sweep.samplers.random import RandomSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "x": FloatDistribution(0.0, 1.0),
    "n": IntDistribution(1, 4),
    "fixed": FloatDistribution(0.5, 0.5),
}
# a known space none of whose names the trials below suggest: every value is a fallback draw
OTHER = {"z": FloatDistribution(0.0, 1.0)}


def _ask_values(sampler, n: int, names=("x", "n", "c")) -> list[tuple]:
    """Params of ``n`` trials that suggest names the sampler was not given."""
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        values = (
            trial.suggest_float(names[0], 0.0, 1.0),
            trial.suggest_int(names[1], 1, 4),
            trial.suggest_categorical(names[2], ["a", "b", "c"]),
        )
        study.tell(trial, values[0])
        out.append(values)
    return out


def test_known_space_is_used_and_model_based_samplers_drop_single_values():
    study = optuna.create_study()
    trial = study.ask()
    frozen = study.trials[0]
    assert RandomSampler(SPACE, seed=0).infer_relative_search_space(study, frozen) == SPACE
    modelled = BayesSampler(SPACE, seed=0).infer_relative_search_space(study, frozen)
    assert sorted(modelled) == ["n", "x"]
    study.tell(trial, 0.0)


def test_without_a_space_the_intersection_of_finished_trials_is_inferred():
    study = optuna.create_study(sampler=RandomSampler(seed=1))
    for i in range(3):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_float("fixed", 0.5, 0.5)
        if i == 0:
            trial.suggest_int("only_first", 1, 3)
        study.tell(trial, 0.0)
    frozen = study.trials[-1]
    for sampler in (RandomSampler(seed=1), BayesSampler(seed=1), ParetoSampler(seed=1)):
        if isinstance(sampler, ParetoSampler):
            two = optuna.create_study(directions=["minimize", "minimize"])
            for t in study.trials:
                two.add_trial(
                    optuna.trial.create_trial(
                        params=t.params, distributions=t.distributions, values=[0.0, 0.0]
                    )
                )
            assert list(sampler.infer_relative_search_space(two, frozen)) == ["x"]
        else:
            assert list(sampler.infer_relative_search_space(study, frozen)) == ["x"]


def test_fallback_draws_are_seeded_and_follow_the_strategy():
    # grid and random: from_unit on a generator seeded like the sampler
    first = _ask_values(RandomSampler(OTHER, seed=3), 4)
    assert first == _ask_values(RandomSampler(OTHER, seed=3), 4)
    assert first != _ask_values(RandomSampler(OTHER, seed=4), 4)
    draws = UniformDraws(3)
    assert first[0][0] == draws.sample_independent(None, None, "x", FloatDistribution(0.0, 1.0))
    # the GP samplers: Optuna's RandomSampler with the same seed draws the unknown parameters
    outside = _ask_values(BayesSampler(OTHER, seed=5, n_startup_trials=100), 3)
    assert outside == _ask_values(optuna.samplers.RandomSampler(seed=5), 3)


def test_reseed_rng_reseeds_the_sampler_and_its_fallback():
    sampler = RandomSampler(SPACE, seed=0)
    again = RandomSampler(SPACE, seed=0)
    sampler.reseed_rng()
    dist = CategoricalDistribution(list(range(1000)))
    draws = [sampler.sample_independent(None, None, "c", dist) for _ in range(3)]
    assert draws != [again.sample_independent(None, None, "c", dist) for _ in range(3)]
    assert sampler._rng.uniform() != again._rng.uniform()


def test_from_unit_maps_the_ends_inside_the_distribution():
    assert from_unit(IntDistribution(1, 3), 1.0) == 3
    assert from_unit(CategoricalDistribution(["a", "b"]), 0.0) == "a"
