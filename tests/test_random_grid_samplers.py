"""The grid and random samplers on plain Optuna studies, as library users call them."""

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from nemo_rl_sweep.samplers.base import from_unit
from nemo_rl_sweep.samplers.grid import GridSampler
from nemo_rl_sweep.samplers.random import RandomSampler
from nemo_rl_sweep.space import parse_overrides

SPACE = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "g": IntDistribution(2, 16, step=2),
    "opt": CategoricalDistribution(("adam", "sgd")),
}


def _run(sampler, n, space=SPACE):
    study = optuna.create_study(sampler=sampler)
    for _ in range(n):
        trial = study.ask(space)
        study.tell(trial, 0.0)
    return study.trials


def test_stratified_random_puts_one_point_in_each_stratum():
    space = {"x": FloatDistribution(0.0, 1.0), "lr": FloatDistribution(1e-4, 1.0, log=True)}
    trials = _run(RandomSampler(space, seed=3, stratified=True), 16, space)
    xs = sorted(int(t.params["x"] * 16) for t in trials)
    assert xs == list(range(16))
    decades = sorted(int((math.log10(t.params["lr"]) + 4) * 4) for t in trials)
    assert decades == list(range(16))  # log-aware: even in log space


def test_uniform_random_is_log_aware_and_seeded():
    a = _run(RandomSampler(SPACE, seed=7), 200)
    b = _run(RandomSampler(SPACE, seed=7), 200)
    assert [t.params for t in a] == [t.params for t in b]
    below = sum(t.params["lr"] < 1e-3 for t in a) / len(a)
    assert 0.35 < below < 0.65  # half the log range lies below 1e-3
    assert {t.params["g"] for t in a} == {2, 4, 6, 8, 10, 12, 14, 16}
    assert {t.params["opt"] for t in a} == {"adam", "sgd"}


def test_random_values_stay_in_their_domains():
    for t in _run(RandomSampler(SPACE, seed=0), 100):
        assert 1e-5 <= t.params["lr"] <= 1e-1
        assert t.params["g"] % 2 == 0


@pytest.mark.parametrize("u", [0.0, 0.5, 0.999999999, 1.0])
def test_from_unit_edges(u):
    assert from_unit(IntDistribution(1, 3), u) in (1, 2, 3)
    assert 1 <= from_unit(IntDistribution(1, 64, log=True), u) <= 64
    assert 0.0 <= from_unit(FloatDistribution(0.0, 0.75, step=0.25), u) <= 0.75


def test_grid_sampler_on_a_plain_study_visits_each_point_once():
    space = parse_overrides(["a=choice(x, y)", "b=range(0, 3)"])
    points = list(space.grid())
    sampler = GridSampler(space.distributions, points)
    trials = _run(sampler, len(points), space.distributions)
    assert [t.params for t in trials] == points
    study = optuna.create_study(sampler=sampler)
    for t in trials:
        study.add_trial(t)
    with pytest.raises(RuntimeError, match="every grid point has been run"):
        study.ask(space.distributions)
