"""Nothing a user spent is lost: kill -9 and resume, Ctrl-C, and two sweepers sharing one study."""

import signal
import subprocess
import sys
import time
from collections import Counter

import optuna
from optuna.trial import TrialState

from nemo_rl_sweep.ledger import open_storage
from tests.helpers import TOY_APP, load_study, run_app, sweep_dirs


def _start(args, cwd):
    return subprocess.Popen(
        [sys.executable, str(TOY_APP), "--multirun", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _ledger(cwd):
    return "sqlite:///" + str(cwd / "multirun" / "nemo_rl_sweep.db")


def _wait_for_complete(cwd, n, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        studies = []
        if (cwd / "multirun" / "nemo_rl_sweep.db").exists():
            studies = optuna.get_all_study_summaries(open_storage(_ledger(cwd)))
        if studies:
            study = optuna.load_study(
                study_name=studies[0].study_name, storage=open_storage(_ledger(cwd))
            )
            trials = study.get_trials(deepcopy=False)
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            if len(done) >= n and any(t.state == TrialState.RUNNING for t in trials):
                return study
        time.sleep(0.2)
    raise AssertionError("the sweep did not reach the wanted state in time")


def _real(trials):
    """Trials that really ran (not closed as stale or surplus)."""
    return [t for t in trials if not t.user_attrs.get("stale")]


def _two_sweepers(args, cwd, study_name):
    """The same command started twice at once; the trials of their shared study that really ran."""
    first, second = _start(args, cwd), _start(args, cwd)
    for proc in (first, second):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    return _real(optuna.load_study(study_name=study_name, storage=_ledger(cwd)).get_trials())


def test_kill_9_then_same_command_resumes_to_n_trials(tmp_path):
    args = ["hydra.sweeper.seed=0", "hydra.sweeper.n_trials=5", "sleep=0.7"]
    proc = _start(args, tmp_path)
    study = _wait_for_complete(tmp_path, 2, proc)
    before = {t.number: t.params for t in study.get_trials() if t.state == TrialState.COMPLETE}
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = run_app(TOY_APP, ["--multirun", *args], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "marked failed" in again.stdout and "resuming study" in again.stdout
    trials = load_study(sweep_dirs(tmp_path)[-1]).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    stale = [t for t in trials if t.user_attrs.get("stale")]
    assert len(complete) == 5
    assert stale and all(t.state == TrialState.FAIL for t in stale)
    assert "its sweeper stopped" in stale[0].user_attrs["fail_reason"]
    # finished trials were kept as they were, not run again
    assert {n: p for n, p in before.items()} == {
        t.number: t.params for t in complete if t.number in before
    }
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_grid_resumes_with_the_points_not_yet_done(tmp_path):
    args = [
        "hydra.sweeper.strategy=grid",
        "hydra.sweeper.n_trials=null",
        "sleep=0.7",
        "x=choice(0.1,0.2,0.3)",
        "y=range(0,2)",
    ]
    proc = _start(args, tmp_path)
    _wait_for_complete(tmp_path, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = run_app(TOY_APP, ["--multirun", *args], tmp_path)
    assert again.returncode == 0, again.stderr
    trials = load_study(sweep_dirs(tmp_path)[-1]).get_trials()
    points = Counter(
        (t.params["x"], t.params["y"]) for t in trials if t.state == TrialState.COMPLETE
    )
    assert sorted(points) == [(x, y) for x in (0.1, 0.2, 0.3) for y in (0, 1)]
    assert set(points.values()) == {1}


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    # six trials of 2 s: the Ctrl-C lands while trials remain even on a loaded machine
    ctrl_c_then_resume(["hydra.sweeper.seed=1", "hydra.sweeper.n_trials=6", "sleep=2.0"], tmp_path)


def ctrl_c_then_resume(args, tmp_path):
    """Ctrl-C after the first trial: the running trials are stale; the same command ends the sweep."""
    proc = _start(args, tmp_path)
    _wait_for_complete(tmp_path, 1, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "interrupted" in err and "run the same command to resume" in err
    study = load_study(sweep_dirs(tmp_path)[-1])
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert interrupted and all(t.user_attrs.get("stale") for t in interrupted)
    again = run_app(TOY_APP, ["--multirun", *args], tmp_path)
    assert again.returncode == 0, again.stderr
    trials = load_study(sweep_dirs(tmp_path)[-1]).get_trials()
    n_trials = int(next(a for a in args if a.startswith("hydra.sweeper.n_trials=")).split("=")[1])
    assert sum(t.state == TrialState.COMPLETE for t in trials) == n_trials


def test_two_sweepers_share_one_study(tmp_path):
    args = [
        "hydra.sweeper.seed=2",
        "hydra.sweeper.n_trials=8",
        "sleep=1.0",  # 8 s of trials: the later of the two starts in time even on a loaded machine
        "hydra.sweeper.study_name=shared",
    ]
    real = _two_sweepers(args, tmp_path, "shared")
    assert len(real) == 8 and all(t.state == TrialState.COMPLETE for t in real)
    owners = {t.user_attrs["sweeper"] for t in real}
    assert len(owners) == 2, owners


def test_two_sweepers_never_run_a_grid_point_twice(tmp_path):
    args = [
        "hydra.sweeper.strategy=grid",
        "hydra.sweeper.n_trials=null",
        "sleep=0.3",
        "hydra.sweeper.study_name=shared-grid",
        "x=choice(0.1,0.2,0.3)",
        "y=range(0,3)",
    ]
    real = _two_sweepers(args, tmp_path, "shared-grid")
    points = Counter((t.params["x"], t.params["y"]) for t in real)
    assert len(points) == 9 and set(points.values()) == {1}
    assert all(t.state == TrialState.COMPLETE for t in real)
    assert len({t.user_attrs["sweeper"] for t in real}) == 2
