"""The nemo_rl sweeper end to end: real `hydra.main` apps in subprocesses, a real SQLite ledger."""

import csv
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tests.helpers import TOY_APP, error_lines, load_study, results, run_app, sweep_dirs


def test_plugin_is_discovered_by_hydra(tmp_path):
    proc = run_app(TOY_APP, ["--info", "plugins"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "NemoRLSweeper" in proc.stdout


def test_random_sweep_records_every_trial_in_ledger_and_files(tmp_path):
    proc = run_app(
        TOY_APP, ["--multirun", "hydra.sweeper.seed=3", "hydra.sweeper.n_trials=5"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    (sweep_dir,) = sweep_dirs(tmp_path)
    study = load_study(sweep_dir)
    trials = study.get_trials()
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert study.metric_names == ["score"]
    for t in trials:
        assert set(t.params) == {"x", "y"}
        assert -1.0 <= t.params["x"] <= 1.0 and t.params["y"] in (0, 1, 2, 3)
        assert t.user_attrs["overrides"] == [f"x={t.params['x']!r}", f"y={t.params['y']}"]
        assert t.user_attrs["metrics"]["score"] == pytest.approx(t.value)
        assert t.user_attrs["metrics"]["cost"] == pytest.approx(abs(t.params["x"]) + t.params["y"])
        job_dir = sweep_dir / study.study_name / f"trial_{t.number}"  # never Hydra's job counter
        assert t.user_attrs["job_dir"] == str(job_dir)
        assert (job_dir / ".hydra" / "config.yaml").is_file()
        assert json.loads((job_dir / "metrics.json").read_text())["score"] == pytest.approx(t.value)
        expected = -((t.params["x"] - 0.3) ** 2) - (t.params["y"] - 2) ** 2
        assert t.value == pytest.approx(expected)
    res = results(sweep_dir)
    best = max(trials, key=lambda t: t.value)
    assert res["best_value"] == pytest.approx(best.value)
    assert res["best_params"] == best.params
    assert res["best_trial"] == best.number
    assert res["metric"] == "score" and res["direction"] == "maximize"
    rows = list(csv.DictReader((sweep_dir / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3, 4]
    assert all(r["state"] == "COMPLETE" and r["param:x"] and r["metric:cost"] for r in rows)
    assert (sweep_dir / "multirun.yaml").is_file()
    assert f"best trial {best.number}" in proc.stdout.lower()


def test_grid_runs_each_combination_exactly_once(tmp_path):
    proc = run_app(
        TOY_APP,
        [
            "--multirun",
            "hydra.sweeper.strategy=grid",
            "hydra.sweeper.n_trials=null",
            "x=choice(0.1,0.5)",
            "y=range(2,6,2)",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (sweep_dir,) = sweep_dirs(tmp_path)
    trials = load_study(sweep_dir).get_trials()
    assert sorted((t.params["x"], t.params["y"]) for t in trials) == [
        (0.1, 2),
        (0.1, 4),
        (0.5, 2),
        (0.5, 4),
    ]
    assert [(t.params["x"], t.params["y"]) for t in sorted(trials, key=lambda t: t.number)] == [
        (0.1, 2),
        (0.1, 4),
        (0.5, 2),
        (0.5, 4),
    ]


def test_command_line_value_replaces_a_swept_key_of_the_group(tmp_path):
    proc = run_app(TOY_APP, ["--multirun", "x=0.25", "hydra.sweeper.n_trials=3"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (sweep_dir,) = sweep_dirs(tmp_path)
    trials = load_study(sweep_dir).get_trials()
    assert all(set(t.params) == {"y"} for t in trials)
    assert all("x=0.25" in t.user_attrs["overrides"] for t in trials)
    assert all(
        json.loads((Path(t.user_attrs["job_dir"]) / "metrics.json").read_text())["cost"]
        == pytest.approx(0.25 + t.params["y"])
        for t in trials
    )


def test_plus_key_adds_a_key_the_config_lacks(tmp_path):
    proc = run_app(
        TOY_APP, ["--multirun", "+extra=choice(1,2)", "hydra.sweeper.n_trials=2"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    trials = load_study(sweep_dirs(tmp_path)[0]).get_trials()
    assert all(t.params["extra"] in (1, 2) for t in trials)
    assert all(any(o.startswith("+extra=") for o in t.user_attrs["overrides"]) for t in trials)


BAD_INPUTS = [
    # the search space (a config group's value reaches our parser; Hydra parses command-line sweeps)
    (["hydra.sweeper.params.x='choice()'"], "x:"),
    (["x=interval(5, 1)"], "x:"),
    (["x=tag(log, interval(0, 1))"], "x:"),
    (["y=range(0, 4, 0)"], "y:"),
    (["nested.lrr=interval(0.1, 1.0)"], "nested.lrr:"),
    (["hydra.sweeper.strategy=grid"], "x:"),  # the group's x is an interval
    # the sweeper keys
    (["hydra.sweeper.strategy=annealing"], "hydra.sweeper.strategy:"),
    (["+hydra.sweeper.strategy_options.stratify=true"], "hydra.sweeper.strategy_options.stratify:"),
    (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials:"),
    (["hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs:"),
    (["hydra.sweeper.max_failure_rate=1.5"], "hydra.sweeper.max_failure_rate:"),
    (["hydra.sweeper.strategy=pareto"], "hydra.sweeper.metric:"),
    (
        ["hydra.sweeper.strategy=bayes", "+hydra.sweeper.strategy_options.acquisition=pi"],
        "hydra.sweeper.strategy_options.acquisition:",
    ),
    (
        ["hydra.sweeper.strategy=bayes", "+hydra.sweeper.strategy_options.n_startup_trials=0"],
        "hydra.sweeper.strategy_options.n_startup_trials:",
    ),
    (["hydra.sweeper.strategy=bayes", "x=0.5", "y=1"], "hydra.sweeper.params:"),
    (
        [
            "hydra.sweeper.strategy=pareto",
            "hydra.sweeper.metric=[score,cost]",
            "hydra.sweeper.direction=[maximize,minimize]",
            "+hydra.sweeper.strategy_options.reference_point=[1,2,3]",
        ],
        "hydra.sweeper.strategy_options.reference_point:",
    ),
    # the storage URL and the study in it
    (["hydra.sweeper.storage=not-a-url"], "hydra.sweeper.storage:"),
    (["hydra.sweeper.storage=nosuchdb://user@localhost/db"], "hydra.sweeper.storage:"),
    (
        ["hydra.sweeper.study_name=finished", "hydra.sweeper.direction=minimize"],
        "hydra.sweeper.study_name:",
    ),
    # the metric names
    (["hydra.sweeper.metric=[]"], "hydra.sweeper.metric:"),
    (["hydra.sweeper.metric=[score,score]"], "hydra.sweeper.metric:"),
    (["hydra.sweeper.direction=[maximize,minimize]"], "hydra.sweeper.direction:"),
    (["hydra.sweeper.direction=upward"], "hydra.sweeper.direction:"),
    # the launcher
    (["hydra/launcher=submitit_slurm"], "hydra/launcher:"),
]


def _existing_ledger(cwd):
    """A ledger that already holds a user's finished trial, which no bad input may touch."""
    path = cwd / "multirun" / "nemo_rl_sweep.db"
    path.parent.mkdir(parents=True)
    study = optuna.create_study(
        storage=f"sqlite:///{path}", study_name="finished", direction="maximize"
    )
    study.add_trial(
        optuna.trial.create_trial(
            params={"x": 0.1}, distributions={"x": FloatDistribution(-1, 1)}, value=1.0
        )
    )
    return path


@pytest.mark.parametrize("args, key", BAD_INPUTS)
def test_bad_input_refused_before_any_job(tmp_path, args, key):
    ledger_file = _existing_ledger(tmp_path)
    before = hashlib.sha256(ledger_file.read_bytes()).hexdigest()
    env_path = os.path.dirname(sys.executable)  # no Slurm commands on PATH
    proc = run_app(TOY_APP, ["--multirun", *args], tmp_path, env={"PATH": env_path})
    assert proc.returncode != 0
    errors = error_lines(proc)
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"Error: {key}") and "Fix:" in errors[0], errors[0]
    assert "Traceback" not in proc.stderr
    assert hashlib.sha256(ledger_file.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in (tmp_path / "multirun").iterdir()) == ["nemo_rl_sweep.db"]
    assert not list(tmp_path.rglob("metrics.json"))


def test_failed_jobs_are_failed_trials_and_the_sweep_goes_on(tmp_path):
    proc = run_app(
        TOY_APP,
        [
            "--multirun",
            "mode=raise_if_big",
            "fail_above=0.0",
            "hydra.sweeper.seed=0",
            "hydra.sweeper.n_trials=6",
            "hydra.sweeper.max_failure_rate=0.9",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    trials = load_study(sweep_dirs(tmp_path)[0]).get_trials()
    assert len(trials) == 6
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert failed and complete
    assert all(t.params["x"] > 0 for t in failed) and all(t.params["x"] <= 0 for t in complete)
    assert all("RuntimeError: boom at x=" in t.user_attrs["fail_reason"] for t in failed)


def test_nan_result_is_a_failed_trial(tmp_path):
    proc = run_app(
        TOY_APP,
        [
            "--multirun",
            "mode=give_nan",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.max_failure_rate=1.0",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    trials = load_study(sweep_dirs(tmp_path)[0]).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs["fail_reason"] == "metric 'score' is nan" for t in trials)


def test_failure_rate_stops_the_sweep_with_one_sentence(tmp_path):
    proc = run_app(
        TOY_APP,
        [
            "--multirun",
            "mode=raise",
            "hydra.sweeper.n_trials=10",
            "hydra.sweeper.max_failure_rate=0.5",
        ],
        tmp_path,
    )
    assert proc.returncode != 0
    assert "stopped: 1 of 1 trials failed (100%), more than max_failure_rate=0.5" in proc.stderr
    (sweep_dir,) = sweep_dirs(tmp_path)
    trials = load_study(sweep_dir).get_trials()
    assert len(trials) == 1 and trials[0].state == TrialState.FAIL
    assert results(sweep_dir)["trials"] == {"fail": 1}


def test_metric_the_job_never_reports_stops_after_the_first_batch(tmp_path):
    proc = run_app(
        TOY_APP,
        ["--multirun", "hydra.sweeper.metric=accuracy", "hydra.sweeper.max_failure_rate=1.0"],
        tmp_path,
    )
    assert proc.returncode != 0
    assert "no trial reported the objective" in proc.stderr
    assert "'accuracy'" in proc.stderr and "cost, score" in proc.stderr
    assert len(load_study(sweep_dirs(tmp_path)[0]).get_trials()) == 1


def test_bare_float_return_is_the_single_objective(tmp_path):
    proc = run_app(TOY_APP, ["--multirun", "mode=float", "hydra.sweeper.n_trials=2"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    trials = load_study(sweep_dirs(tmp_path)[0]).get_trials()
    assert all(t.state == TrialState.COMPLETE and math.isfinite(t.value) for t in trials)


def test_minimize_two_objectives_with_random(tmp_path):
    proc = run_app(
        TOY_APP,
        [
            "--multirun",
            "hydra.sweeper.metric=[score,cost]",
            "hydra.sweeper.direction=[maximize,minimize]",
            "hydra.sweeper.n_trials=3",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    study = load_study(sweep_dirs(tmp_path)[0])
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert all(len(t.values) == 2 for t in study.get_trials())


def test_dry_run_launches_nothing(tmp_path):
    proc = run_app(
        TOY_APP, ["--multirun", "hydra.sweeper.dry_run=true", "hydra.sweeper.seed=1"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "x: interval(-1.0, 1.0)" in proc.stdout and "y: range(0, 4, 1)" in proc.stdout
    assert proc.stdout.count("  #") == 4
    assert not (tmp_path / "multirun").exists()


def test_same_command_resumes_the_same_study(tmp_path):
    first = run_app(
        TOY_APP, ["--multirun", "hydra.sweeper.seed=5", "hydra.sweeper.n_trials=2"], tmp_path
    )
    assert first.returncode == 0, first.stderr
    again = run_app(
        TOY_APP, ["--multirun", "hydra.sweeper.seed=5", "hydra.sweeper.n_trials=4"], tmp_path
    )
    assert again.returncode == 0, again.stderr
    assert "resuming study" in again.stdout
    study = load_study(sweep_dirs(tmp_path)[-1])
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    done = run_app(
        TOY_APP, ["--multirun", "hydra.sweeper.seed=5", "hydra.sweeper.n_trials=4"], tmp_path
    )
    assert done.returncode == 0
    assert len(load_study(sweep_dirs(tmp_path)[-1]).get_trials()) == 4
