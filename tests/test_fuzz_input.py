"""Generated sweep input (issue 15): every input is refused cleanly or runs within its space.

The strategies and the property live in ``tests/fuzz_inputs.py``; ``benchmarks/fuzz_input.py`` runs
the same property on many more inputs. Cases the generator found are kept below as plain tests.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz_inputs import (
    ECHO_APP,
    check_in_process,
    check_real_run,
    settings_overrides,
    simple_spaces,
    spaces,
)
from tests.helpers import error_lines, run_app

_counter = itertools.count()
FAST = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REAL = settings(
    max_examples=2,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # shrinking re-runs Hydra many times: report as found
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FAST
@given(command_line=spaces, group=spaces)
def test_generated_sweeps_are_refused_or_stay_in_their_space(tmp_path, command_line, group):
    check_in_process(command_line, group, {}, tmp_path)


@FAST
@given(space=simple_spaces, overrides=settings_overrides)
def test_generated_settings_are_refused_or_run(tmp_path, space, overrides):
    check_in_process(space, {}, overrides, tmp_path)


@REAL
@given(command_line=spaces, overrides=settings_overrides)
def test_real_runs_with_generated_command_lines(tmp_path, command_line, overrides):
    cwd = tmp_path / f"run{next(_counter)}"
    cwd.mkdir()
    check_real_run(cwd, command_line, {}, overrides, settings_in_group=False)


@REAL
@given(group=spaces, overrides=settings_overrides, command_line=st.just({}))
def test_real_runs_with_generated_config_groups(tmp_path, group, overrides, command_line):
    cwd = tmp_path / f"run{next(_counter)}"
    cwd.mkdir()
    check_real_run(cwd, command_line, group, overrides, settings_in_group=True)


# ------------------------------------------------------------------ cases the generator found
# Each broke the property before issue 15 (a traceback, a crash after the first trial, a value
# outside the space, or the machine's memory); the fix is named beside it.


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # a trial could not be given the value: ValueError after the first ask, trial left RUNNING
        ("choice(nan,1)", "choice value nan is not a finite number"),
        ("choice(inf,1)", "choice value inf is not a finite number"),
        ("choice(1e400)", "choice value inf is not a finite number"),
        # high - low overflowed: the sampler drew inf
        ("interval(-1e308,1e308)", "is wider than the largest float"),
        # listed 1e300 values: MemoryError
        ("range(1,2,1e-300)", "has more than 2**53 values"),
        ("range(1,2,1e-15)", "the step is too small for floats to tell values apart"),
        ("range(1e+28)", "has more than 2**53 values"),
        # the ledger keeps integers as floats: 2**53 + 1 came back as 2**53, outside the range
        ("range(9007199254740993,9007199254740995)", "integer beyond ±2**53"),
        ("tag(int, interval(0, 18446744073709551616))", "integer beyond ±2**53"),
        # Optuna moved the high end down to a multiple of the step: the last value never ran
        ("range(44.0,130,3.0007781983212762)", "is not a whole number of steps"),
    ],
)
def test_found_sweeps_are_refused_with_one_line(tmp_path, text, words):
    verdict = check_in_process({"x": text}, {}, {}, tmp_path)
    assert verdict.refused is not None and words in verdict.refused


@pytest.mark.parametrize(
    ("text", "values"),
    [
        # listed 10**11 values to build its distribution: the process was killed for memory
        ("range(0,100000000000)", None),
        # 0.1 + 2 * 0.1 is 0.3 in the grid, not 0.30000000000000004
        ("range(0.1,0.35,0.1)", [0.1, 0.2, 0.3]),
    ],
)
def test_found_ranges_run_within_their_values(tmp_path, text, values):
    grid = check_in_process({"x": text}, {}, {"strategy": "grid", "n_trials": 3}, tmp_path)
    assert len(grid.trials) == 3
    if values is not None:
        assert [t[0] for t in grid.trials] == [f"x={v!r}" for v in values]
    assert len(check_in_process({"x": text}, {}, {}, tmp_path).trials) == 3


@pytest.mark.parametrize(
    ("settings_", "words"),
    [
        ({"seed": 2**40}, "hydra.sweeper.seed: must be in [0, 4294967295]"),  # numpy ValueError
        ({"seed": -1}, "hydra.sweeper.seed: must be in [0, 4294967295]"),
        ({"metric": 5}, "hydra.sweeper.metric: must be a metric name"),  # TypeError
        ({"dry_run": "yes"}, "hydra.sweeper.dry_run: must be true or false"),  # ran for real
        ({"study_name": " "}, "hydra.sweeper.study_name: must be a study name"),
        ({"strategy": "grid", "n_trials": None}, None),
    ],
)
def test_found_settings_are_refused_with_one_line(tmp_path, settings_, words):
    space = {"x": "range(0,100000000000)"} if words is None else {"x": "interval(0.0, 1.0)"}
    verdict = check_in_process(space, {}, settings_, tmp_path)
    words = words or "the grid has 100000000000 points, more than 100000 can run"
    assert verdict.refused is not None and words in verdict.refused


def test_a_wrong_type_is_one_error_line_on_the_command_line_and_in_a_config_group(tmp_path):
    """Hydra's typed schema refused these itself: several lines, exit code 1."""
    for n, where in enumerate(("command line", "config group")):
        cwd = tmp_path / str(n)
        cwd.mkdir()
        proc = check_real_run(
            cwd,
            {"x": "interval(0.0, 1.0)"},
            {},
            {"n_trials": "many", "max_failure_rate": float("nan")},
            settings_in_group=where == "config group",
        )
        assert proc.returncode == 2, where
        assert "hydra.sweeper.n_trials: must be a positive integer or null" in proc.stderr


def test_a_nan_choice_is_refused_before_any_job_with_the_ledger_untouched(tmp_path):
    """It crashed the sweep after its first trial, leaving the trial RUNNING (issue 15)."""
    proc = check_real_run(tmp_path, {"x": "choice(nan,1)"}, {}, {}, settings_in_group=False)
    assert proc.returncode == 2 and "choice value nan is not a finite number" in proc.stderr


def test_params_that_are_not_a_mapping_are_one_error_line(tmp_path):
    conf = tmp_path / "conf" / "hpo"
    conf.mkdir(parents=True)
    (conf / "bad.yaml").write_text("# @package _global_\nhydra:\n  sweeper:\n    params: [1, 2]\n")
    proc = run_app(
        ECHO_APP, ["--multirun", "--config-dir", str(tmp_path / "conf"), "+hpo=bad"], tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert error_lines(proc) == [
        "Error: hydra.sweeper.params: must be a mapping of config key to sweep, got [1, 2]. "
        "Fix: e.g. params: {x: 'interval(0, 1)'}"
    ]
