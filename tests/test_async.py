"""Asynchronous sweeps with local processes (the joblib launcher): a slot that frees starts a trial.

The Slurm form of the long-and-short test is in tests/test_slurm_sweep.py.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from tests.helpers import REPO, load_study, run_app, sweep_dirs
from tests.test_resume import ctrl_c_then_resume

LONG_SHORT_APP = REPO / "tests" / "apps" / "long_short.py"


def check_short_trials_ran_beside_the_long_one(trials: list[optuna.trial.FrozenTrial]) -> None:
    """Trial 0 ended only after four short trials ended, each started while trial 0 ran.

    The fourth short trial and trial 0 may end together (and be recorded in number order), so the
    ledger shows at least three short trials recorded before trial 0 and four started during it.
    """
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    long = trials[0]
    assert long.user_attrs["metrics"]["shorts_seen"] >= 4  # it did not give up waiting
    during = [
        t for t in trials[1:] if long.datetime_start <= t.datetime_start <= long.datetime_complete
    ]
    assert len(during) >= 4
    assert sum(t.datetime_complete <= long.datetime_complete for t in during) >= 3


def test_joblib_short_trials_keep_starting_while_a_long_one_runs(tmp_path: Path):
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = run_app(
        LONG_SHORT_APP,
        ["--multirun", "hydra/launcher=joblib", f"marks={marks}", "hydra.sweeper.seed=3"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "n_jobs=2: asynchronous" in proc.stdout.splitlines()[1]
    check_short_trials_ran_beside_the_long_one(load_study(sweep_dirs(tmp_path)[0]).get_trials())


def test_basic_launcher_says_it_keeps_batches(tmp_path: Path):
    proc = run_app(
        LONG_SHORT_APP,
        ["--multirun", "wait_for=0", "hydra.sweeper.n_trials=2", f"marks={tmp_path}"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[1].startswith(
        "[sweep] n_jobs=2: batches of 2, each waits for its slowest trial (the basic launcher "
        "runs jobs one after another in this process"
    )


def test_joblib_ctrl_c_stops_the_running_trials_and_resumes(tmp_path: Path):
    ctrl_c_then_resume(
        [
            "hydra.sweeper.seed=1",
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.n_jobs=2",
            "hydra/launcher=joblib",
            "sleep=1.0",
        ],
        tmp_path,
    )
