"""BayesSampler on real Optuna studies (in-memory storage)."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.samplers.bayes import BayesSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

BRANIN_SPACE = {"x1": FloatDistribution(-5.0, 10.0), "x2": FloatDistribution(0.0, 15.0)}
BRANIN_MIN = 0.397887


def branin(p: dict) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def run(study: optuna.Study, fn, n: int, space=BRANIN_SPACE) -> list[dict]:
    out = []
    for _ in range(n):
        t = study.ask(space)
        out.append(dict(t.params))
        study.tell(t, fn(t.params))
    return out


def test_finds_branin_optimum_region_in_30_trials() -> None:
    study = optuna.create_study(sampler=BayesSampler(BRANIN_SPACE, seed=0))
    run(study, branin, 30)
    assert study.best_value - BRANIN_MIN < 0.05
    # the best point sits at one of Branin's three minimisers
    minimisers = [(-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)]
    bp = study.best_params
    assert min(math.dist((bp["x1"], bp["x2"]), m) for m in minimisers) < 0.5


def test_maximises_when_the_study_says_so() -> None:
    study = optuna.create_study(direction="maximize", sampler=BayesSampler(BRANIN_SPACE, seed=1))
    run(study, lambda p: -branin(p), 30)
    assert study.best_value > -BRANIN_MIN - 0.05


def test_space_filling_start_then_model() -> None:
    sampler = BayesSampler(BRANIN_SPACE, seed=0, n_startup_trials=4)
    study = optuna.create_study(sampler=sampler)
    params = run(study, branin, 4)
    X = np.array([[p["x1"], p["x2"]] for p in params])
    # Sobol: the 4 points land in 4 different quadrants of the box
    quadrants = {(x1 > 2.5, x2 > 7.5) for x1, x2 in X}
    assert len(quadrants) == 4


def test_pending_trials_are_not_repeated() -> None:
    study = optuna.create_study(sampler=BayesSampler(BRANIN_SPACE, seed=2))
    done = run(study, branin, 12)
    batch = [study.ask(BRANIN_SPACE) for _ in range(4)]  # all RUNNING at once
    pts = np.array([[t.params["x1"], t.params["x2"]] for t in batch])
    old = np.array([[p["x1"], p["x2"]] for p in done])
    for i in range(4):
        others = np.delete(pts, i, axis=0)
        assert np.min(np.abs(others - pts[i]).max(1)) > 1e-3  # batch points differ
        assert np.min(np.abs(old - pts[i]).max(1)) > 1e-6  # and are new
    for t in batch:
        study.tell(t, branin(t.params))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 16


def test_failed_trials_are_not_fitted_and_not_proposed_again() -> None:
    space = {"k": IntDistribution(0, 4), "c": CategoricalDistribution(("a", "b", "c"))}
    broken = {(1, "a"), (3, "b"), (4, "c")}

    def objective(p: dict) -> float:
        if (p["k"], p["c"]) in broken:
            raise RuntimeError("training diverged")
        return (p["k"] - 2) ** 2 + {"a": 0.0, "b": 0.5, "c": 1.0}[p["c"]]

    study = optuna.create_study(sampler=BayesSampler(space, seed=0, n_startup_trials=5))
    seen = []
    for _ in range(15):  # exactly the number of configurations
        t = study.ask(space)
        key = (t.params["k"], t.params["c"])
        seen.append(key)
        try:
            study.tell(t, objective(t.params))
        except RuntimeError:
            study.tell(t, state=TrialState.FAIL)
    assert len(set(seen)) == 15  # nothing repeated, failed ones included
    assert study.best_params == {"k": 2, "c": "a"}


def test_same_seed_same_sweep() -> None:
    a = optuna.create_study(sampler=BayesSampler(BRANIN_SPACE, seed=7, n_startup_trials=5))
    b = optuna.create_study(sampler=BayesSampler(BRANIN_SPACE, seed=7, n_startup_trials=5))
    assert run(a, branin, 12) == run(b, branin, 12)
    c = optuna.create_study(sampler=BayesSampler(BRANIN_SPACE, seed=8, n_startup_trials=5))
    assert run(c, branin, 3) != [t.params for t in a.trials[:3]]


def test_mixed_space_and_inferred_search_space() -> None:
    space = {
        "lr": FloatDistribution(1e-5, 1e-1, log=True),
        "n": IntDistribution(1, 8),
        "opt": CategoricalDistribution(("adam", "sgd")),
        "fixed": FloatDistribution(0.5, 0.5),
    }

    def objective(p: dict) -> float:
        return (math.log10(p["lr"]) + 3) ** 2 + (p["n"] - 5) ** 2 + (p["opt"] == "sgd")

    study = optuna.create_study(sampler=BayesSampler(seed=0, n_startup_trials=4))  # no space
    params = run(study, objective, 16, space)
    for p in params:
        assert isinstance(p["n"], int) and p["opt"] in ("adam", "sgd") and p["fixed"] == 0.5
        assert 1e-5 <= p["lr"] <= 1e-1
    assert study.best_value < 1.5


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"acquisition": "ei_naive"}, "acquisition"),
        ({"n_startup_trials": 0}, "n_startup_trials"),
        ({"n_startup_trials": -3}, "n_startup_trials"),
        ({"xi": -0.1}, "xi"),
        ({"search_space": {"a": FloatDistribution(1.0, 1.0)}}, "params"),
        ({"search_space": {}}, "params"),
    ],
)
def test_bad_options_are_refused_in_one_line(kwargs: dict, key: str) -> None:
    with pytest.raises(SweepConfigError) as err:
        BayesSampler(**kwargs)
    msg = str(err.value)
    assert "\n" not in msg and err.value.key.endswith(key) and "Fix:" in msg


def test_multi_objective_study_is_refused() -> None:
    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=BayesSampler(BRANIN_SPACE, seed=0)
    )
    with pytest.raises(SweepConfigError, match="pareto"):
        study.ask(BRANIN_SPACE)


def _proposals_in_an_infeasible_region(mark_infeasible: bool) -> int:
    """Maximise x - (y - 0.5)^2 where x > 0.6 cannot run: its trials fail, as NeMo RL's rules
    make them fail before launch; count the proposals there after the Sobol start."""
    from optuna.distributions import FloatDistribution

    from nemo_rl_sweep import ledger
    from nemo_rl_sweep.objectives import FailureKind

    space = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)}
    study = optuna.create_study(
        direction="maximize", sampler=BayesSampler(space, seed=0, n_startup_trials=6)
    )
    inside = 0
    for i in range(24):
        trial = study.ask(space)
        x, y = trial.params["x"], trial.params["y"]
        if x > 0.6:
            inside += i >= 6
            if mark_infeasible:
                trial.set_user_attr(ledger.ATTR_FAIL_KIND, FailureKind.INFEASIBLE.value)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, x - (y - 0.5) ** 2)
    return inside


def test_bayes_learns_to_avoid_a_region_whose_trials_are_infeasible():
    """An infeasible trial is fitted with the worst value seen; a plain failure is not (it may be
    transient), so the model keeps extrapolating into the region."""
    learned = _proposals_in_an_infeasible_region(mark_infeasible=True)
    unmarked = _proposals_in_an_infeasible_region(mark_infeasible=False)
    assert learned <= 4  # of 18 model-based proposals
    assert unmarked >= 10


def test_a_pruned_trial_is_fitted_with_its_value_plus_the_gain_complete_trials_made_after_it():
    """A validation at step 1 is not a final value: the model gets it moved by the median gain
    complete trials made from step 1 to their end (here +0.6 and +0.8: +0.7)."""
    space = {"x": FloatDistribution(0.0, 1.0)}
    study = optuna.create_study(direction="maximize", sampler=BayesSampler(space, seed=0))

    def add(x, curve, state=TrialState.COMPLETE):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": x},
                distributions=space,
                value=curve[-1] if curve else None,
                intermediate_values=dict(enumerate(curve, start=1)),
                state=state,
            )
        )

    add(0.2, [0.2, 0.5, 0.8])
    add(0.4, [0.1, 0.6, 0.9])
    add(0.7, [0.05], TrialState.PRUNED)
    probe = study.ask()
    history = study.sampler._history(study, study.get_trials()[-1], space)
    assert sorted((p["x"], v[0]) for p, v in history.done) == [
        (0.2, 0.8),
        (0.4, 0.9),
        (0.7, pytest.approx(0.05 + 0.7)),
    ]
    study.tell(probe, 0.0)
