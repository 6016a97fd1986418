"""strategy=optuna: any Optuna sampler by ``_target_``, and hydra-optuna-sweeper files as they are.

The drop-in test keeps a sweep file written for hydra-optuna-sweeper
(``tests/apps/optuna_dropin/hydra_optuna_sweeper_sphere.yaml``), changes only its
``override /hydra/sweeper:`` line to ``nemo_rl`` and runs it as a real Hydra multirun. One meaning
differs on purpose: hydra-optuna-sweeper includes the stop of ``range()``; we exclude it, as Python
and Hydra's basic sweeper do, so ``y: range(-2, 3)`` takes -2..2 here.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.job import JobOutcome
from nemo_rl_sweep.loop import Sweep
from nemo_rl_sweep.samplers import strategy_rules
from nemo_rl_sweep.settings import SweepSettings
from nemo_rl_sweep.space import parse_params
from tests.helpers import run_app

REPO = Path(__file__).resolve().parents[1]
DROPIN = REPO / "tests" / "apps" / "optuna_dropin"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sphere(x: float, y: int, lr: float, opt: str) -> float:
    return x**2 + y**2 + (lr - 0.01) ** 2 + {"a": 0.0, "b": 0.5, "c": 1.0}[opt]


def dropin_config(tmp_path: Path) -> Path:
    """The hydra-optuna-sweeper file with its sweeper override line, and nothing else, changed."""
    original = (DROPIN / "hydra_optuna_sweeper_sphere.yaml").read_text()
    changed = original.replace(
        "override /hydra/sweeper: optuna", "override /hydra/sweeper: nemo_rl"
    )
    diff = [(a, b) for a, b in zip(original.splitlines(), changed.splitlines()) if a != b]
    assert diff == [("  - override /hydra/sweeper: optuna", "  - override /hydra/sweeper: nemo_rl")]
    extra = tmp_path / "extra"
    (extra / "hpo").mkdir(parents=True)
    (extra / "hpo" / "sphere.yaml").write_text(changed)
    return extra


def test_hydra_optuna_sweeper_file_runs_unchanged_but_the_override_line(tmp_path):
    extra = dropin_config(tmp_path)
    proc = run_app(
        DROPIN / "sphere.py", ["--multirun", "--config-dir", str(extra), "+hpo=sphere"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    # the ledger: study_name and direction from the file, storage null -> the default SQLite file
    storage = "sqlite:///" + str(tmp_path / "multirun" / ledger.DEFAULT_LEDGER_FILE)
    study = optuna.load_study(study_name="sphere", storage=storage)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.user_attrs[ledger.STUDY_ATTR_STRATEGY] == "optuna"
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8  # n_trials: 8
    dists = trials[0].distributions
    assert dists["x"] == FloatDistribution(-5.5, 5.5)
    assert dists["y"] == IntDistribution(-2, 2)  # range stop excluded (hydra-optuna-sweeper: -2..3)
    assert dists["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["opt"] == CategoricalDistribution(["a", "b", "c"])
    for t in trials:
        assert t.value == pytest.approx(sphere(**t.params))

    # the sampler node is used with its arguments: Optuna's own TPESampler(seed=123,
    # n_startup_trials=3) on the same space proposes exactly the same 8 points
    replay = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=123, n_startup_trials=3),
    )
    for t in trials:
        ask = replay.ask()
        params = {
            "x": ask.suggest_float("x", -5.5, 5.5),
            "y": ask.suggest_int("y", -2, 2),
            "lr": ask.suggest_float("lr", 1e-4, 1e-1, log=True),
            "opt": ask.suggest_categorical("opt", ["a", "b", "c"]),
        }
        assert params == t.params
        replay.tell(ask, sphere(**params))

    (sweep_dir,) = [p.parent for p in tmp_path.glob("multirun/*/*/optimization_results.yaml")]
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["study_name"] == "sphere"
    assert results["best_params"] == study.best_params
    assert (sweep_dir / "trials.csv").read_text().count("\n") == 9


# ------------------------------------------------------------------------- any Optuna sampler


def toy_sweep(tmp_path: Path, sampler: dict, n_trials: int = 6, **settings) -> optuna.Study:
    def launch(jobs):
        out = []
        for job in jobs:
            p = dict(o.split("=", 1) for o in job.overrides)
            x, y = float(p["x"]), int(p["y"])
            out.append(JobOutcome(value={"score": -((x - 0.3) ** 2) - (y - 2) ** 2}))
        return out

    sweep = Sweep(
        parse_params({"x": "interval(-1.0, 1.0)", "y": "range(0, 4)"}),
        SweepSettings(metric="score", n_trials=n_trials, seed=1, sampler=sampler, **settings),
        launch,
        tmp_path / "sweep",
        task_name="toy",
        ledger_dir=tmp_path,
    )
    return sweep.run().study, sweep.sampler


@pytest.mark.parametrize(
    "sampler",
    [
        {"_target_": "optuna.samplers.TPESampler", "n_startup_trials": 2, "multivariate": True},
        {"_target_": "optuna.samplers.GPSampler", "n_startup_trials": 3},
        {"_target_": "optuna.samplers.CmaEsSampler", "n_startup_trials": 2},
        {"_target_": "optuna.samplers.NSGAIISampler", "population_size": 4},
        {"_target_": "optuna.samplers.QMCSampler", "qmc_type": "halton"},
        {"_target_": "optuna.samplers.RandomSampler"},
    ],
    ids=lambda node: node["_target_"].rsplit(".", 1)[1],
)
def test_any_optuna_sampler_by_target_with_its_arguments(tmp_path, sampler):
    study, built = toy_sweep(tmp_path, sampler)
    assert type(built).__name__ == sampler["_target_"].rsplit(".", 1)[1]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    for t in study.trials:
        assert -1.0 <= t.params["x"] <= 1.0 and t.params["y"] in (0, 1, 2, 3)
    assert study.user_attrs[ledger.STUDY_ATTR_STRATEGY] == "optuna"  # no strategy given: optuna


def make_sampler(strategy: str, space: dict, *, seed: int, optuna_sampler: dict):
    return strategy_rules(strategy).make(
        space,
        seed=seed,
        options={},
        n_objectives=1,
        optuna_sampler=optuna_sampler,
        grid_points=None,
    )


def test_sampler_arguments_reach_the_sampler_and_seed_is_passed_on():
    space = parse_params({"x": "interval(0.0, 1.0)"}).distributions

    tpe = make_sampler(
        "optuna",
        space,
        seed=7,
        optuna_sampler={"_target_": "optuna.samplers.TPESampler", "n_startup_trials": 4},
    )
    assert tpe._n_startup_trials == 4
    own_seed = make_sampler(
        "optuna", space, seed=7, optuna_sampler={"_target_": "optuna.samplers.RandomSampler"}
    )
    again = make_sampler(
        "optuna", space, seed=7, optuna_sampler={"_target_": "optuna.samplers.RandomSampler"}
    )
    assert own_seed._rng.rng.random() == again._rng.rng.random()  # hydra.sweeper.seed reached it


def test_same_seed_same_sweep(tmp_path):
    node = {"_target_": "optuna.samplers.TPESampler", "n_startup_trials": 2}
    first, _ = toy_sweep(tmp_path / "a", node)
    second, _ = toy_sweep(tmp_path / "b", node)
    assert [t.params for t in first.trials] == [t.params for t in second.trials]


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("sampler", "strategy", "key", "words"),
    [
        (
            {"_target_": "optuna.samplers.TPESamplr"},
            None,
            "hydra.sweeper.sampler._target_",
            "cannot import 'optuna.samplers.TPESamplr'",
        ),
        (
            {"_target_": "optuna.pruners.MedianPruner"},
            None,
            "hydra.sweeper.sampler._target_",
            "is not a optuna.samplers",
        ),
        (
            {"_target_": "optuna.samplers.TPESampler", "n_start_trials": 3},
            None,
            "hydra.sweeper.sampler.n_start_trials",
            "is not an argument of optuna.samplers.TPESampler",
        ),
        (
            {"_target_": "optuna.samplers.NSGAIISampler", "population_size": 1},
            None,
            "hydra.sweeper.sampler",
            "refused its arguments",
        ),
        (
            {"_target_": "optuna.samplers.TPESampler"},
            "random",
            "hydra.sweeper.sampler",
            "is used by strategy optuna only",
        ),
    ],
)
def test_bad_samplers_are_refused_before_any_job(tmp_path, sampler, strategy, key, words):
    launched = []
    with pytest.raises(SweepConfigError) as err:
        Sweep(
            parse_params({"x": "interval(0.0, 1.0)"}),
            SweepSettings(metric="score", strategy=strategy, sampler=sampler),
            launched.append,
            tmp_path / "sweep",
            ledger_dir=tmp_path,
        )
    assert err.value.key == key
    assert words in str(err.value)
    assert "\n" not in str(err.value) and "Fix: " in str(err.value)
    assert not launched and not (tmp_path / ledger.DEFAULT_LEDGER_FILE).exists()


def test_bad_sampler_in_a_hydra_file_is_one_line_and_no_job(tmp_path):
    extra = dropin_config(tmp_path)
    proc = run_app(
        DROPIN / "sphere.py",
        [
            "--multirun",
            "--config-dir",
            str(extra),
            "+hpo=sphere",
            "+hydra.sweeper.sampler.n_ei_candidate=24",
        ],
        tmp_path,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1
    assert errors[0].startswith(
        "Error: hydra.sweeper.sampler.n_ei_candidate: is not an argument of "
        "optuna.samplers.TPESampler. Fix: use one of: "
    )
    assert "n_ei_candidates" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("multirun/*/*/0"))


def test_hpo_optuna_preset_composes_with_the_grpo_space_and_pruner_presets(tmp_path):
    proc = run_app(
        REPO / "train.py",
        ["hpo=optuna", "+pruner=median", "hydra.sweeper.dry_run=true", "--cfg", "hydra"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweeper = yaml.safe_load(proc.stdout)["hydra"]["sweeper"]
    assert sweeper["strategy"] == "optuna"
    assert sweeper["sampler"]["_target_"] == "optuna.samplers.TPESampler"
    assert sweeper["pruner"]["_target_"] == "optuna.pruners.MedianPruner"
    # search_space=auto: the sweeper fills the space for the trainer (the toy `grpo` one here)
    assert (
        yaml.safe_load(proc.stdout)["hydra"]["runtime"]["choices"][
            "search_space@hydra.sweeper.params"
        ]
        == "auto"
    )

    dry = run_app(REPO / "train.py", ["hpo=optuna", "hydra.sweeper.dry_run=true"], tmp_path)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "strategy optuna" in dry.stdout
    assert dry.stdout.count("policy.optimizer.kwargs.lr=") == 5  # five previewed trials
