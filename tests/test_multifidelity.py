"""strategy: multifidelity: the curve model's data, the stop rule, the sampler, its option checks, and
a real Hydra sweep on the embedded GRPO trainer (basic launcher and two asynchronous joblib slots)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from nemo_rl_sweep import ledger
from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.gp import DEFAULT_PRIORS
from nemo_rl_sweep.gp.search_space import SpaceEncoding
from nemo_rl_sweep.pruning import STUDY_ATTR_PRUNER, stored_pruner
from nemo_rl_sweep.samplers import strategy_rules
from nemo_rl_sweep.samplers.curves import CurveModel, collect, fidelity
from nemo_rl_sweep.samplers.multifidelity import PRUNER_TARGET, CurvePruner, MultiFidelitySampler
from nemo_rl_sweep.settings import SweepSettings, check_settings
from nemo_rl_sweep.space import parse_params
from tests.helpers import TRAIN_APP, error_lines, run_app

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {"x": FloatDistribution(0.0, 1.0)}
STEPS = list(range(10, 101, 10))


def curve(x: float) -> list[float]:
    """Crossing curves: small x starts slow and ends best (final 1 - x / 2)."""
    rate = 0.03 + 0.3 * x
    return [(1.0 - x / 2) * (1.0 - math.exp(-rate * s)) for s in STEPS]


def real_study(tmp_path: Path, sampler=None, pruner=None) -> optuna.Study:
    return optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'ledger.db'}",
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
    )


def add(study: optuna.Study, x: float, state: TrialState, last: int = 100) -> None:
    values = dict(zip(STEPS, curve(x), strict=True))
    inter = {s: v for s, v in values.items() if s <= last}
    study.add_trial(
        create_trial(
            state=state,
            params={"x": x},
            distributions=SPACE,
            value=values[100] if state == TrialState.COMPLETE else None,
            intermediate_values=inter,
        )
    )


# ------------------------------------------------------------------------------ the model's data


def test_stopped_trials_are_partial_curves_and_only_complete_ones_are_final(tmp_path):
    study = real_study(tmp_path)
    add(study, 0.1, TrialState.COMPLETE)
    add(study, 0.9, TrialState.PRUNED, last=30)
    add(study, 0.5, TrialState.FAIL, last=20)
    trial = study.ask({"x": SPACE["x"]})
    trial.report(0.05, 10)  # a running trial's validations are data too
    trials = study.get_trials(deepcopy=False)
    curves = collect(
        trials, SPACE, SpaceEncoding(SPACE), sign=1.0, max_step=None, points_per_trial=20
    )
    assert curves is not None and curves.max_step == 100
    assert curves.final_y.tolist() == [curve(0.1)[-1]]
    fid = curves.X[:, -1]
    # 9 validations before the end + 1 final of the complete trial, 3 of the pruned, 1 running
    assert len(curves.y) == 14
    pruned = np.isclose(curves.X[:, 0], 0.9)
    assert pruned.sum() == 3 and fid[pruned].max() == pytest.approx(fidelity(30, 100))
    assert fidelity(30, 100) < 1
    assert not np.isclose(curves.X[:, 0], 0.5).any()  # a failed trial is no evidence
    assert (fid == 1.0).sum() == 1
    # minimising: the model sees -value
    neg = collect(
        trials, SPACE, SpaceEncoding(SPACE), sign=-1.0, max_step=None, points_per_trial=20
    )
    assert np.allclose(neg.y, -curves.y)


def test_many_validations_are_thinned_to_the_last_and_an_even_spread(tmp_path):
    study = real_study(tmp_path)
    add(study, 0.2, TrialState.COMPLETE)
    curves = collect(
        study.get_trials(), SPACE, SpaceEncoding(SPACE), sign=1.0, max_step=None, points_per_trial=4
    )
    steps = sorted(round(math.expm1(f * math.log1p(100))) for f in curves.X[:, -1])
    assert steps == [10, 40, 60, 90, 100]  # 4 validations before the end, then the final value


def fitted_model(study: optuna.Study) -> CurveModel:
    curves = collect(
        study.get_trials(), SPACE, SpaceEncoding(SPACE), sign=1.0, max_step=None, points_per_trial=8
    )
    return CurveModel(curves, SpaceEncoding(SPACE), priors=DEFAULT_PRIORS)


def test_a_final_value_pins_the_model_and_a_partial_curve_moves_it(tmp_path):
    study = real_study(tmp_path)
    for x in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        add(study, x, TrialState.COMPLETE)
    model = fitted_model(study)
    xs = np.array([[0.0], [0.6]])
    mean, var = model.final(xs)
    finals = [curve(0.0)[-1], curve(0.6)[-1]]
    # a COMPLETE trial's final value is observed as such, whatever its early values were
    assert np.allclose(mean, finals, atol=0.02) and np.all(np.sqrt(var) < 0.05)
    assert (
        model.gp.posterior(np.array([[0.0, 1.0]]))[0][0]
        > model.gp.posterior(np.array([[0.0, fidelity(20, 100)]]))[0][0]
    )  # the slow starter ends far above where it was at step 20

    # two running trials at the same new configuration: the one whose curve runs higher is
    # expected to end higher, by the model's own judgement of what early values say
    def expected_final(scale: float, tmp: Path) -> float:
        s2 = real_study(tmp)
        for x in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
            add(s2, x, TrialState.COMPLETE)
        s2.enqueue_trial({"x": 0.3})
        t = s2.ask(SPACE)
        for step, v in zip(STEPS[:5], curve(0.3)[:5], strict=True):
            t.report(scale * v, step)
        return float(fitted_model(s2).final(np.array([[0.3]]))[0][0])

    (tmp_path / "lo").mkdir()
    (tmp_path / "hi").mkdir()
    assert expected_final(1.3, tmp_path / "hi") > expected_final(0.7, tmp_path / "lo") + 0.05


def add_whole_run(study: optuna.Study, x: float, values: list[float]) -> None:
    study.add_trial(
        create_trial(
            params={"x": x},
            distributions=SPACE,
            value=values[-1],
            intermediate_values=dict(zip(STEPS, values, strict=True)),
        )
    )


def study_of(fn, xs: list[float]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")  # in memory: the model is all it feeds
    for x in xs:
        add_whole_run(study, x, fn(x))
    return study


XS = [i / 15 for i in range(16)]


def honest(x: float) -> list[float]:
    """One curve shape scaled to the final value: every validation tells the final value."""
    final = 0.5 + 0.3 * math.sin(3 * x)
    return [final * (1 - math.exp(-0.05 * s)) / (1 - math.exp(-5)) for s in STEPS]


SURPRISES = np.random.RandomState(0).uniform(0.2, 0.9, size=len(XS))


def surprise(x: float) -> list[float]:
    """Every curve the same until the end, then a final value unrelated to the configuration."""
    return [0.1 + 0.3 * s / 100 for s in STEPS[:-1]] + [float(SURPRISES[round(x * 15)])]


def test_a_held_out_prediction_is_the_model_refitted_without_those_rows():
    model = fitted_model(study_of(curve, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]))
    c = model.curves
    target = len(c.y) - len(c.final_owner) + 2  # the third COMPLETE trial's final row
    rows = (c.owner == c.final_owner[2]) & (c.X[:, -1] > fidelity(40, 100))
    # its validations after step 40 (60 to 90: 50 was thinned away) and its final value
    assert rows.sum() == 5
    mean, var = model.gp.held_out(rows, target)
    without = model.gp.subset(~rows)
    ref_mean, ref_var = without.posterior_standard(torch.as_tensor(c.X[target : target + 1]))
    assert mean == pytest.approx(float(ref_mean[0]), abs=1e-8)
    assert var == pytest.approx(float(ref_var[0]) + model.gp.noise_var, rel=1e-2)


def test_the_model_widens_its_predictions_by_how_far_they_missed_on_complete_trials():
    calibrated = fitted_model(study_of(honest, XS))
    missed = fitted_model(study_of(surprise, XS))
    for step in (10, 50, 90):
        assert calibrated.miscalibration(step) == pytest.approx(1.0, abs=0.05)
        # early values said nothing of the final ones: predicted finals were far off
        assert missed.miscalibration(step) > 3.0


# ---------------------------------------------------------------------------------- the stop rule


def test_the_pruner_stops_a_hopeless_curve_and_keeps_a_promising_one(tmp_path):
    pruner = CurvePruner(min_complete=3)
    study = real_study(tmp_path, pruner=pruner)
    for x in (0.0, 0.05, 0.3, 0.6, 0.9, 1.0):
        add(study, x, TrialState.COMPLETE)
    study.enqueue_trial({"x": 0.45})  # between tried points: a fixed x, not the sampler's draw
    hopeless = study.ask({"x": SPACE["x"]})
    for step in (10, 20, 30):
        hopeless.report(0.01 * step / 10, step)  # far below every curve seen
    assert hopeless.should_prune()
    assert pruner.last_log_ratio < 0
    assert pruner.last_widening is not None and pruner.last_widening >= 1.0


def test_the_pruner_keeps_a_slow_starter_where_the_model_expects_the_best_final_values(tmp_path):
    pruner = CurvePruner(min_complete=3)
    study = real_study(tmp_path, pruner=pruner)
    for x in (0.3, 0.6, 0.9, 1.0):  # the finals rise as x falls; nothing below 0.3 was tried
        add(study, x, TrialState.COMPLETE)
    study.enqueue_trial({"x": 0.02})
    slow = study.ask({"x": SPACE["x"]})
    assert slow.params["x"] == 0.02
    slow_curve = curve(0.02)
    assert slow_curve[0] < curve(0.3)[0]  # it starts below every finished run
    for step, value in zip(STEPS[:3], slow_curve[:3], strict=True):
        slow.report(value, step)
    assert not slow.should_prune()
    assert pruner.last_log_ratio > 0


def test_the_pruner_waits_for_min_complete_whole_runs(tmp_path):
    pruner = CurvePruner(min_complete=3)
    study = real_study(tmp_path, pruner=pruner)
    for x in (0.0, 0.5):
        add(study, x, TrialState.COMPLETE)
    trial = study.ask({"x": SPACE["x"]})
    trial.report(0.0, 10)
    assert not trial.should_prune()
    assert pruner.last_log_ratio is None and pruner.last_widening is None  # no model was fitted


def test_minimisation_stops_the_curve_that_stays_high(tmp_path):
    pruner = CurvePruner(min_complete=3)
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'ledger.db'}", direction="minimize", pruner=pruner
    )
    for x in (0.0, 0.3, 0.6, 1.0):
        add_whole_run(study, x, [1.0 - v for v in curve(x)])
    bad = study.ask({"x": SPACE["x"]})
    for step in (10, 20, 30):
        bad.report(1.5, step)
    assert bad.should_prune()


# ------------------------------------------------------------------------------------ the sampler


def test_the_sampler_proposes_from_curves_and_never_repeats(tmp_path):
    sampler = MultiFidelitySampler(SPACE, seed=0, n_startup_trials=3)
    study = real_study(tmp_path, sampler=sampler)
    for x in (0.1, 0.5, 0.9):
        add(study, x, TrialState.COMPLETE)
    for x in (0.7, 0.8, 0.95):
        add(study, x, TrialState.PRUNED, last=20)
    seen = {t.params["x"] for t in study.trials}
    xs = []
    for _ in range(3):
        trial = study.ask(SPACE)
        x = trial.params["x"]
        assert x not in seen
        seen.add(x)
        xs.append(x)
        values = curve(x)
        for step, value in zip(STEPS, values, strict=True):
            trial.report(value, step)
        study.tell(trial, values[-1])
    # the best final values are at small x (slow starters): the model goes there, not where the
    # early values are high
    assert min(xs) < 0.3


def test_the_sampler_conditions_on_running_trials(tmp_path):
    sampler = MultiFidelitySampler(SPACE, seed=1, n_startup_trials=3)
    study = real_study(tmp_path, sampler=sampler)
    for x in (0.1, 0.5, 0.9):
        add(study, x, TrialState.COMPLETE)
    first = study.ask(SPACE)
    second = study.ask(SPACE)  # the first is RUNNING with no value: not asked for again
    assert abs(first.params["x"] - second.params["x"]) > 1e-3


# ------------------------------------------------------------------------------- options, settings


def plan(**kwargs):
    space = parse_params({"x": "interval(0, 1)"})
    return check_settings(SweepSettings(strategy="multifidelity", **kwargs), space)


def test_the_strategy_records_its_own_pruner():
    p = plan(strategy_options={"stop_ratio": 2.0, "min_complete": 2})
    assert isinstance(p.sampler, MultiFidelitySampler)
    assert isinstance(p.pruner, CurvePruner) and p.pruner.stop_ratio == 2.0
    assert p.pruner_node == {"_target_": PRUNER_TARGET, "stop_ratio": 2.0, "min_complete": 2}
    assert strategy_rules("bayes").pruner_node({}) is None


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"stop_ratio": 0}, "strategy_options.stop_ratio"),
        ({"stop_ratio": "low"}, "strategy_options.stop_ratio"),
        ({"tolerance": -0.1}, "strategy_options.tolerance"),
        ({"min_complete": 0}, "strategy_options.min_complete"),
        ({"max_step": 2.5}, "strategy_options.max_step"),
        ({"n_startup_trials": 0}, "strategy_options.n_startup_trials"),
        ({"patience": 3}, "strategy_options"),
    ],
)
def test_bad_options_are_one_clear_error(options, key):
    with pytest.raises(SweepConfigError) as err:
        plan(strategy_options=options)
    line = str(err.value)
    assert line.startswith(f"hydra.sweeper.{key}") and "Fix:" in line
    assert "\n" not in line


def test_a_second_pruner_and_several_objectives_are_refused():
    median = {"_target_": "optuna.pruners.MedianPruner"}
    with pytest.raises(SweepConfigError, match=r"hydra\.sweeper\.pruner: strategy multifidelity"):
        plan(pruner=median)
    with pytest.raises(SweepConfigError, match="one objective"):
        plan(metric=["a", "b"], direction=["maximize", "minimize"])


# ------------------------------------------------------------------------- real Hydra sweeps


def run_train(cwd: Path, *args: str):
    return run_app(
        TRAIN_APP,
        [
            "--multirun",
            "hpo=multifidelity",
            "grpo.max_num_steps=30",
            "hydra.sweeper.seed=0",
            "hydra.sweeper.strategy_options.n_startup_trials=3",
            "hydra.sweeper.strategy_options.min_complete=2",
            *args,
        ],
        cwd,
    )


def ledger_study(cwd: Path) -> optuna.Study:
    storage = "sqlite:///" + str(cwd / "multirun" / ledger.DEFAULT_LEDGER_FILE)
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


@pytest.mark.parametrize(
    "launcher", [[], ["hydra/launcher=joblib", "hydra.sweeper.n_jobs=2"]], ids=["basic", "joblib"]
)
def test_train_py_runs_the_strategy_on_the_embedded_trainer(tmp_path, launcher):
    proc = run_train(
        tmp_path,
        "hydra.sweeper.n_trials=7",
        # two learning rates that learn, then ones far too small to learn anything in 30 steps
        "hydra.sweeper.enqueue=[{policy.optimizer.kwargs.lr: 0.01}, "
        "{policy.optimizer.kwargs.lr: 0.03}, {policy.optimizer.kwargs.lr: 0.0001}, "
        "{policy.optimizer.kwargs.lr: 0.00011}]",
        *launcher,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = ledger_study(tmp_path)
    assert study.user_attrs[STUDY_ATTR_PRUNER]["_target_"] == PRUNER_TARGET
    assert isinstance(stored_pruner(study), CurvePruner)
    trials = study.trials
    assert len(trials) == 7
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    for t in trials:
        assert set(t.intermediate_values) <= {10, 20, 30} and t.intermediate_values
        if t.state == TrialState.PRUNED:
            assert t.last_step < 30
    assert trials[0].state == trials[1].state == TrialState.COMPLETE  # min_complete whole runs
    # the learning rates that cannot learn are stopped by the model, not trained to the end
    assert TrialState.PRUNED in {trials[2].state, trials[3].state}


def test_bad_option_stops_train_py_before_any_job(tmp_path):
    proc = run_train(tmp_path, "hydra.sweeper.strategy_options.stop_ratio=-1")
    assert proc.returncode != 0
    (line,) = error_lines(proc)
    assert line.startswith("Error: hydra.sweeper.strategy_options.stop_ratio:")
    assert not (tmp_path / "multirun" / ledger.DEFAULT_LEDGER_FILE).exists()
