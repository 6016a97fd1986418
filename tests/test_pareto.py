"""Pareto strategy: fronts, exact hypervolume, log-EHVI, the sampler on real Optuna studies."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.gp.acquisition import LogEHVI, merged_boxes
from nemo_rl_sweep.pareto import (
    default_reference_point,
    dominates,
    hypervolume,
    hypervolume_improvement,
    non_dominated_boxes,
    non_dominated_sort,
    pareto_front,
    pareto_front_mask,
)
from nemo_rl_sweep.samplers.pareto import (
    ParetoSampler,
    validate_pareto_options,
    validate_reference_point,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from functions import ZDT1_MAX_HV, zdt1  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


# -- fronts ------------------------------------------------------------------------------------
def test_front_and_sorting_with_mixed_directions():
    # objective 0 maximised (accuracy), objective 1 minimised (step time)
    pts = np.array(
        [
            [0.9, 5.0],  # 0: front (best accuracy)
            [0.5, 1.0],  # 1: front (fastest)
            [0.7, 2.0],  # 2: front
            [0.6, 3.0],  # 3: dominated by 2 -> rank 1
            [0.5, 4.0],  # 4: dominated by 2, 3 -> rank 2
            [0.7, 2.0],  # 5: duplicate of 2 -> also on the front
            [0.4, 6.0],  # 6: dominated by everything above -> rank 3
        ]
    )
    dirs = ["maximize", "minimize"]
    assert pareto_front(pts, dirs).tolist() == [0, 1, 2, 5]
    ranks = [sorted(r.tolist()) for r in non_dominated_sort(pts, dirs)]
    assert ranks == [[0, 1, 2, 5], [3], [4], [6]]
    assert dominates([0.7, 2.0], [0.6, 3.0], dirs)
    assert not dominates([0.7, 2.0], [0.7, 2.0], dirs)
    assert not dominates([0.9, 5.0], [0.5, 1.0], dirs)
    # all minimised: a different front from the same numbers
    assert pareto_front(pts).tolist() == [1, 6]
    # StudyDirection values are accepted as directions
    sd = [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert pareto_front_mask(pts, sd).tolist() == pareto_front_mask(pts, dirs).tolist()


def test_bad_directions_are_refused():
    # the math refuses bad input as a ValueError; the config error is raised by the settings check
    with pytest.raises(ValueError, match="direction"):
        pareto_front(np.zeros((2, 2)), ["minimize"])
    with pytest.raises(ValueError, match="unknown direction"):
        pareto_front(np.zeros((2, 2)), ["minimize", "upward"])


# -- hypervolume -------------------------------------------------------------------------------
def test_hypervolume_2d_by_hand():
    pts = [[1, 3], [2, 2], [3, 1]]
    # staircase under (4, 4): columns of widths 1, 1, 1 and heights 1, 2, 3
    assert hypervolume(pts, [4, 4]) == pytest.approx(6.0)
    # a dominated point and a point beyond the reference change nothing
    assert hypervolume(pts + [[3, 3], [5, 0]], [4, 4]) == pytest.approx(6.0)
    # maximised first objective: mirror x -> -x, reference mirrored too
    assert hypervolume([[-1, 3], [-2, 2], [-3, 1]], [-4, 4], ["maximize", "minimize"]) == (
        pytest.approx(6.0)
    )
    assert hypervolume(np.empty((0, 2)), [1, 1]) == 0.0


def test_hypervolume_3d_by_hand():
    assert hypervolume([[0, 0, 0]], [1, 2, 3]) == pytest.approx(6.0)
    # two boxes 2*2*1 and 1*1*2 that overlap in [1,2]^3 (volume 1)
    assert hypervolume([[0, 0, 1], [1, 1, 0]], [2, 2, 2]) == pytest.approx(5.0)
    # three boxes of volume 2 in [0,2]^3; each pair and all three share [1,2]^3 (volume 1)
    pts = [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    assert hypervolume(pts, [2, 2, 2]) == pytest.approx(3 * 2 - 3 * 1 + 1)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_matches_monte_carlo(m):
    rng = np.random.default_rng(m)
    pts = rng.random((12, m))
    ref = np.full(m, 1.2)
    samples = rng.random((200_000, m)) * 1.2
    dominated = np.zeros(len(samples), dtype=bool)
    for p in pts:
        dominated |= np.all(samples >= p, axis=1)
    mc = dominated.mean() * 1.2**m
    assert hypervolume(pts, ref) == pytest.approx(mc, abs=4 * 1.2**m / math.sqrt(len(samples)))


def test_box_decomposition_and_improvement_are_exact():
    rng = np.random.default_rng(0)
    for m in (2, 3):
        pts = rng.random((15, m))
        front = pts[pareto_front_mask(pts)]
        ref = np.full(m, 1.1)
        for lower, upper in (non_dominated_boxes(front, ref), merged_boxes(front, ref)):
            # boxes clipped to [0, ref] fill exactly the part of the cube the front leaves free
            vol = np.prod(upper - np.maximum(lower, 0.0), axis=1).sum()
            assert vol == pytest.approx(1.1**m - hypervolume(front, ref))
        new = rng.random((6, m))
        hvi = hypervolume_improvement(new, pts, ref)
        base = hypervolume(pts, ref)
        expected = [hypervolume(np.vstack([pts, y]), ref) - base for y in new]
        np.testing.assert_allclose(hvi, expected, atol=1e-12)


def test_reference_point_validation_and_default():
    with pytest.raises(SweepConfigError, match="reference_point: reference point has 3 values"):
        validate_reference_point([1, 2, 3], 2)
    with pytest.raises(SweepConfigError, match="NaN"):
        validate_reference_point([1, float("nan")], 2)
    with pytest.raises(ValueError, match="reference point"):
        hypervolume([[0, 0]], [1, 1, 1])
    vals = [[0.2, 10.0], [0.8, 30.0]]
    # accuracy maximised: below the worst (0.2) by 10% of its range; time above the worst
    ref = default_reference_point(vals, ["maximize", "minimize"])
    np.testing.assert_allclose(ref, [0.2 - 0.06, 30.0 + 2.0])
    assert hypervolume(vals, ref, ["maximize", "minimize"]) > 0


def test_log_ehvi_matches_monte_carlo_and_has_gradients_in_the_tail():
    rng = np.random.default_rng(1)
    for m in (2, 3):
        pts = rng.random((25, m))
        front = pts[pareto_front_mask(pts)]
        ref = np.full(m, 1.1)
        acq = LogEHVI(front, ref)
        mu = rng.random((3, m)) * 0.8
        var = np.full((3, m), 0.02)
        got = np.exp(acq(torch.tensor(mu), torch.tensor(var)).numpy())
        for i in range(3):
            y = mu[i] + np.sqrt(var[i]) * rng.standard_normal((20_000, m))
            mc = hypervolume_improvement(y, front, ref)
            assert got[i] == pytest.approx(mc.mean(), abs=4 * mc.std() / math.sqrt(len(y)) + 1e-9)
        # far outside the reference box, EHVI underflows but its log still points back in
        x = torch.full((1, m), 3.0, dtype=torch.float64, requires_grad=True)
        out = acq(x, torch.full((1, m), 1e-4, dtype=torch.float64))
        out.sum().backward()
        assert torch.isfinite(out).all() and (x.grad < 0).all()


# -- the sampler --------------------------------------------------------------------------------
def _zdt1_study(sampler, n_trials, directions=("minimize", "minimize")):
    study = optuna.create_study(directions=list(directions), sampler=sampler)

    def objective(trial):
        f1, f2 = zdt1([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(6)])
        return (-f1 if directions[0] == "maximize" else f1), f2

    study.optimize(objective, n_trials=n_trials)
    return study


def _hv(study, directions=("minimize", "minimize")):
    vals = np.array([t.values for t in study.trials if t.values is not None])
    if directions[0] == "maximize":
        vals[:, 0] = -vals[:, 0]
    return hypervolume(vals, [1.1, 1.1])


def test_sampler_finds_a_good_zdt1_front_fast():
    sampler = ParetoSampler(seed=0, n_startup_trials=8, n_candidates=512, n_restarts=4)
    study = _zdt1_study(sampler, 30, directions=("maximize", "minimize"))
    hv = _hv(study, ("maximize", "minimize"))
    random_hv = _hv(_zdt1_study(optuna.samplers.RandomSampler(seed=0), 30))
    # random search finds nothing inside the reference box in 30 trials; ours most of the front
    assert hv > 0.7 * ZDT1_MAX_HV
    assert hv > random_hv + 0.3


def test_sampler_is_deterministic_with_a_seed():
    def params(seed):
        sampler = ParetoSampler(seed=seed, n_startup_trials=5, n_candidates=256, n_restarts=2)
        return [t.params for t in _zdt1_study(sampler, 8).trials]

    runs = [params(3), params(3)]
    assert runs[0] == runs[1]
    other = params(4)
    assert other != runs[0]


def test_sampler_conditions_on_running_trials():
    sampler = ParetoSampler(seed=1, n_startup_trials=6, n_candidates=512, n_restarts=4)
    study = _zdt1_study(sampler, 10)
    batch = []
    for _ in range(4):  # a batch of 4: asked together, none told yet
        trial = study.ask()
        batch.append([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(6)])
    assert [t.state for t in study.trials[-4:]] == [optuna.trial.TrialState.RUNNING] * 4
    X = np.array(batch)
    gaps = [np.abs(X[i] - X[j]).max() for i in range(4) for j in range(i + 1, 4)]
    assert min(gaps) > 0.01  # the batch spreads out instead of repeating one point


def test_sampler_ignores_failed_trials_and_never_repeats_them():
    space = {f"x{i}": optuna.distributions.FloatDistribution(0.0, 1.0) for i in range(6)}
    sampler = ParetoSampler(space, seed=2, n_startup_trials=4, n_candidates=256, n_restarts=2)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    failed = []
    for k in range(12):
        trial = study.ask(space)
        x = [trial.params[f"x{i}"] for i in range(6)]
        if k % 3 == 0:  # every third job crashes
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            failed.append(x)
        else:
            study.tell(trial, zdt1(x))
    for _ in range(4):
        trial = study.ask(space)
        x = np.array([trial.params[f"x{i}"] for i in range(6)])
        assert min(np.abs(np.array(failed) - x).max(axis=1)) > 1e-3
        study.tell(trial, zdt1(x))
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 4
    assert states.count(optuna.trial.TrialState.COMPLETE) == 12


def test_sampler_on_a_mixed_space_with_mixed_directions():
    # the shape of a NeMo RL sweep: log-scale lr, an int, a categorical; accuracy up, cost down
    space = {
        "policy.optimizer.kwargs.lr": optuna.distributions.FloatDistribution(1e-6, 1e-3, log=True),
        "grpo.num_generations_per_prompt": optuna.distributions.IntDistribution(2, 16),
        "policy.optimizer.name": optuna.distributions.CategoricalDistribution(["adam", "sgd"]),
    }
    sampler = ParetoSampler(space, seed=0, n_startup_trials=5, n_candidates=256, n_restarts=2)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial):
        lr = trial.suggest_float("policy.optimizer.kwargs.lr", 1e-6, 1e-3, log=True)
        g = trial.suggest_int("grpo.num_generations_per_prompt", 2, 16)
        opt = trial.suggest_categorical("policy.optimizer.name", ["adam", "sgd"])
        accuracy = 1 - (math.log10(lr) + 4.5) ** 2 / 10 - 0.02 * (opt == "sgd") - 1 / g
        return accuracy, float(g)

    study.optimize(objective, n_trials=14)
    seen = {tuple(t.params.values()) for t in study.trials}
    assert len(seen) == 14  # no point proposed twice
    front = study.best_trials
    # the model phase found good learning rates (the accuracy peak is at 10^-4.5)
    assert min(abs(math.log10(t.params["policy.optimizer.kwargs.lr"]) + 4.5) for t in front) < 0.5
    for t in study.trials:  # every value is a valid value of its distribution
        assert all(space[k]._contains(space[k].to_internal_repr(v)) for k, v in t.params.items())
        assert isinstance(t.params["grpo.num_generations_per_prompt"], int)


def test_parego_and_nsga2_methods_run():
    for method in ("parego", "nsga2"):
        study = _zdt1_study(ParetoSampler(seed=0, method=method, n_startup_trials=5), 8)
        assert len([t for t in study.trials if t.values is not None]) == 8


def test_bad_input_is_refused_before_any_trial():
    with pytest.raises(SweepConfigError, match="method: unknown method 'smsemoa'"):
        ParetoSampler(method="smsemoa")
    with pytest.raises(SweepConfigError, match="n_startup_trials"):
        ParetoSampler(n_startup_trials=0)
    with pytest.raises(SweepConfigError, match="reference_point: reference point .* not a list"):
        ParetoSampler(reference_point=["low", "high"])
    with pytest.raises(SweepConfigError, match="reference_point: .*NaN"):
        ParetoSampler(reference_point=[1.0, float("nan")])
    single = optuna.create_study(direction="minimize", sampler=ParetoSampler(seed=0))
    with pytest.raises(SweepConfigError, match="needs 2 or more objectives"):
        single.ask().suggest_float("x", 0.0, 1.0)
    wrong_ref = optuna.create_study(
        directions=["minimize", "minimize"], sampler=ParetoSampler(reference_point=[1, 2, 3])
    )
    with pytest.raises(SweepConfigError, match="reference_point: reference point has 3 values"):
        wrong_ref.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    with pytest.raises(SweepConfigError, match="metric"):
        validate_pareto_options(1)
    np.testing.assert_allclose(validate_pareto_options(2, reference_point=[0, 5]), [0, 5])
