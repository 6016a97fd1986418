"""Trial faults (issue 15): a trial killed by a signal, a worker process that dies, a trial that hangs.

Real runs of the toy app: its jobs kill themselves with the signal the kernel's OOM killer sends
(SIGKILL) or with SIGSEGV, in the joblib launcher's worker processes; a trial that sleeps past
``hydra.sweeper.trial_timeout_s`` is stopped.
"""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.objectives import FailureKind, signal_reason
from nemo_rl_sweep.settings import SweepSettings, check_settings
from nemo_rl_sweep.space import parse_params
from tests.helpers import TOY_APP, error_lines, load_study, run_app, sweep_dirs


def test_a_worker_killed_by_a_signal_fails_only_its_own_trial(tmp_path):
    proc = run_app(
        TOY_APP,
        [
            "--multirun",
            "hydra/launcher=joblib",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.max_failure_rate=1.0",
            "hydra.sweeper.strategy=grid",
            # in grid order each dying trial (x=0.5) starts beside a healthy one, which runs 2 s
            "die_signal=choice(SIGKILL,SIGSEGV)",
            "x=choice(-0.5,0.5)",
            "mode=die_if_big",
            "fail_above=0.3",
            "sleep=2",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = sweep_dirs(tmp_path)
    trials = load_study(sweep_dir).get_trials()
    assert len(trials) == 4
    causes = {"SIGKILL": "out-of-memory killer", "SIGSEGV": "segmentation fault"}
    for trial in trials:
        if trial.params["x"] > 0.3:  # its own job killed itself
            assert trial.state == TrialState.FAIL
            assert trial.user_attrs["fail_kind"] == FailureKind.KILLED.value
            reason = trial.user_attrs["fail_reason"]
            signal = trial.params["die_signal"]
            assert f"killed by {signal}" in reason and causes[signal] in reason, reason
        else:  # its neighbour, running at the same time in another worker, is untouched
            assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_trial_past_its_timeout_is_stopped_and_failed(tmp_path, launcher):
    proc = run_app(
        TOY_APP,
        [
            "--multirun",
            f"hydra/launcher={launcher}",
            "hydra.sweeper.n_trials=1",
            "hydra.sweeper.trial_timeout_s=1.5",
            "hydra.sweeper.max_failure_rate=1.0",
            "sleep=600",  # hangs: only the timeout ends it
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load_study(sweep_dirs(tmp_path)[0]).get_trials()
    (trial,) = trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_kind"] == FailureKind.TIMEOUT.value
    assert trial.user_attrs["fail_reason"] == (
        "the trial ran past hydra.sweeper.trial_timeout_s=1.5 s and was stopped"
    )


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "soon", True])
def test_a_bad_trial_timeout_is_refused(value):
    with pytest.raises(SweepConfigError, match="^hydra.sweeper.trial_timeout_s: must be a "):
        check_settings(SweepSettings(trial_timeout_s=value), parse_params({"x": "choice(1, 2)"}))


def test_a_bad_trial_timeout_is_one_error_line(tmp_path):
    proc = run_app(TOY_APP, ["--multirun", "hydra.sweeper.trial_timeout_s=-1"], tmp_path)
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert line.startswith("Error: hydra.sweeper.trial_timeout_s: must be a positive number")


def test_signal_reasons_name_the_signal_and_its_likely_cause():
    loky = (
        "A worker process managed by the executor was unexpectedly terminated. This could be "
        "caused by a segmentation fault while calling the function or by an excessive memory "
        "usage causing the Operating System to kill the worker.\n\nThe exit codes of the workers "
        "are {SIGKILL(-9)}"
    )
    assert signal_reason(loky) == (
        "the trial's process was killed by SIGKILL (signal 9): likely the kernel's out-of-memory "
        "killer (check `dmesg` and the job's memory use), or someone ran kill -9"
    )
    assert signal_reason("exit codes {SIGSEGV(-11)}").startswith(
        "the trial's process was killed by SIGSEGV (signal 11): a segmentation fault"
    )
    assert signal_reason("RuntimeError: boom at x=1") is None
