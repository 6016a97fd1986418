"""Heartbeats across hosts: a sweeper that dies on one login node is seen from another.

Two hosts' identities on one machine: each "other host" sweeper runs in its own UTS namespace
(``unshare --uts``, as root) under its own hostname, so the same-host pid check cannot see it; only
its heartbeat in the ledger tells whether it lives.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nemo_rl_sweep import ledger
from tests.conftest import _in_ci
from tests.helpers import TOY_APP, run_app

TIMING = ledger.HeartbeatTiming(interval_s=1, grace_s=3)
GRID = [
    "hydra.sweeper.strategy=grid",
    "hydra.sweeper.n_trials=null",
    "x=choice(0.1,0.2,0.3)",
    "y=range(0,2)",
    "hydra.sweeper.study_name=hb",
    "hydra.sweeper.n_jobs=2",
    f"hydra.sweeper.heartbeat_interval={TIMING.interval_s}",
    f"hydra.sweeper.grace_period={TIMING.grace_s}",
]
WAIT_S = 300  # bound on each wait below, so a broken sweep fails instead of hanging


def _can_fake_a_host() -> str | None:
    if os.geteuid() != 0:
        return "a second UTS namespace (unshare --uts) needs root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    return None


@pytest.fixture
def other_host():
    reason = _can_fake_a_host()
    if reason:
        if _in_ci():
            pytest.fail(reason + " (CI is set: the cross-host test must run)", pytrace=False)
        pytest.skip(reason)

    def start(hostname: str, args: list[str], cwd: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [
                "unshare",
                "--uts",
                "sh",
                "-c",
                'hostname "$0" && exec "$@"',
                hostname,
                sys.executable,
                str(TOY_APP),
                "--multirun",
                *args,
            ],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    return start


def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name="hb", storage=ledger.open_storage(url, TIMING))


def _wait(what: str, cond, procs) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        for p in procs:
            assert p.poll() is None, f"a sweeper ended early: {p.communicate()}"
        assert time.monotonic() < deadline, f"not seen within {WAIT_S}s: {what}"
        time.sleep(0.2)


def _running_of(url: str, host: str) -> list[optuna.trial.FrozenTrial]:
    try:
        trials = _study(url).get_trials(states=(TrialState.RUNNING,))
    except KeyError:  # the study is not created yet
        return []
    return [t for t in trials if t.user_attrs.get("sweeper", "").startswith(host + ":")]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_dead_hosts_trials_are_rerun_and_a_live_hosts_are_left_alone(tmp_path, other_host, kind):
    url = (
        f"sqlite:///{tmp_path / 'ledger.db'}"
        if kind == "sqlite"
        else f"journal:{tmp_path / 'ledger.log'}"
    )
    args = [*GRID, f"hydra.sweeper.storage={url}"]
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()

    # host A takes two grid points and dies with them RUNNING (kill -9: no goodbye)
    dead = other_host("host-a", [*args, "sleep=600"], tmp_path / "a")
    _wait("host A's two running trials", lambda: len(_running_of(url, "host-a")) == 2, [dead])
    # host C, alive, takes two more points and keeps running them while B starts
    live = other_host("host-c", [*args, "sleep=20"], tmp_path / "c")
    _wait("host C's two running trials", lambda: len(_running_of(url, "host-c")) == 2, [live])
    dead_ids = {t._trial_id for t in _running_of(url, "host-a")}
    dead.send_signal(signal.SIGKILL)
    dead.communicate()

    # from this host, A's trials go silent once the grace period has passed; C's stay fresh
    watcher = ledger.Heartbeat(_study(url), TIMING)
    _wait("host A's silence", lambda: dead_ids <= watcher.silent_trial_ids(), [live])
    assert not {t._trial_id for t in _running_of(url, "host-c")} & watcher.silent_trial_ids()

    # host B (this host) resumes: A's points are failed as stale and run again, C's are left alone
    here = run_app(TOY_APP, ["--multirun", *args, "sleep=0"], tmp_path / "b")
    assert here.returncode == 0, here.stderr
    assert "2 trial(s) of a sweeper that stopped were marked failed" in here.stdout
    out, err = live.communicate(timeout=WAIT_S)
    assert live.returncode == 0, err

    trials = _study(url).get_trials()
    stale_a = [t for t in trials if t._trial_id in dead_ids]
    assert all(t.state == TrialState.FAIL and t.user_attrs.get("stale") for t in stale_a)
    assert all("sent no heartbeat for over 3 s" in t.user_attrs["fail_reason"] for t in stale_a)
    of_c = [t for t in trials if t.user_attrs.get("sweeper", "").startswith("host-c:")]
    assert len(of_c) == 2 and all(t.state == TrialState.COMPLETE for t in of_c)
    ran = Counter((t.params["x"], t.params["y"]) for t in trials if t.state == TrialState.COMPLETE)
    assert sorted(ran) == [(x, y) for x in (0.1, 0.2, 0.3) for y in (0, 1)]
    assert set(ran.values()) == {1}
    assert {(t.params["x"], t.params["y"]) for t in stale_a} <= set(ran)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
