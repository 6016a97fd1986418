"""Sweeps whose trials are Slurm jobs (hydra-submitit-launcher) on the one-node test cluster.

Issue 6 items 1 and 3: results land in the ledger as with the local launcher; a trial whose job runs
past its time limit, or is cancelled, is a failed trial with the reason and the sweep goes on.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.helpers import TRAIN_APP, load_study, results, sweep_dirs
from tests.slurm_cluster import SlurmCluster
from tests.test_async import LONG_SHORT_APP, check_short_trials_ran_beside_the_long_one

WAIT_S = 300.0  # bound on polling loops and subprocesses, so a broken cluster cannot hang CI


def launcher_overrides(cluster: SlurmCluster) -> list[str]:
    """The hydra-submitit-launcher settings that run trials on the test cluster."""
    return [
        "hydra/launcher=submitit_slurm",
        f"hydra.launcher.partition={cluster.partition}",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
    ]


def _run(cluster: SlurmCluster, app: Path, args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(app), *args],
        cwd=cwd,
        # a task Slurm forgot (cancelled while pending) is failed after 10 s here, not 60 s
        env={**cluster.env(), "NEMO_RL_SWEEP_SLURM_VANISHED_AFTER_S": "10"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(  # noqa: B904
            f"sweep still running after {WAIT_S:.0f}s\n{out[-2000:]}\n{err[-3000:]}"
        )
    return proc.returncode, out, err


def _wait_for(what: str, cond) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"not seen within {WAIT_S:.0f}s: {what}"
        time.sleep(0.25)


def _acct(cluster: SlurmCluster, job_id: str) -> list[str]:
    out = cluster.run("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job_id).stdout
    return out.strip().splitlines()


def test_slurm_sweep_of_train_py_lands_in_the_ledger(slurm_cluster: SlurmCluster, tmp_path: Path):
    """`python train.py --multirun hpo=random hydra/launcher=submitit_slurm hydra.sweeper.n_jobs=2`:
    four trials, run as Slurm job arrays of two, all in the ledger and the sweep folder."""
    storage = f"sqlite:///{tmp_path / 'ledger.db'}"
    args = [
        "--multirun",
        "hpo=random",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.seed=5",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=slurm_random",
        *launcher_overrides(slurm_cluster),
    ]
    code, out, err = _finish(_run(slurm_cluster, TRAIN_APP, args, tmp_path))
    assert code == 0, out[-3000:] + err[-3000:]
    study = optuna.load_study(study_name="slurm_random", storage=storage)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    (sweep_dir,) = sweep_dirs(tmp_path)
    assert load_study(sweep_dir).study_name == "slurm_random"
    assert results(sweep_dir)["best_value"] == pytest.approx(max(t.value for t in trials))
    slurm_ids = []
    for t in trials:
        job_dir = Path(t.user_attrs["job_dir"])
        assert job_dir == sweep_dir / "slurm_random" / f"trial_{t.number}"
        assert (job_dir / "metrics.json").is_file()
        assert t.user_attrs["metrics"]["validation/accuracy"] == pytest.approx(t.value)
        # Hydra's job id is the Slurm job (or array task) the trial ran as (submitit sets it)
        hydra_cfg = yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text())
        slurm_ids.append(str(hydra_cfg["hydra"]["job"]["id"]))
    # the first two trials start together, one job array of two tasks; the later ones start as
    # slots free (alone, or together when both freed in one poll), never in the first array
    first_array = slurm_ids[0].partition("_")[0]
    assert slurm_ids[:2] == [f"{first_array}_0", f"{first_array}_1"]
    assert all(not sid.startswith(first_array + "_") for sid in slurm_ids[2:])
    for sid in slurm_ids:
        assert _acct(slurm_cluster, sid) == [f"{sid}|COMPLETED"]


SLOW_APP = '''\
"""A trial that records its Slurm job id, then hangs when x is in hang_for."""
import os
import time
from pathlib import Path

import hydra


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    # the array task's own id (SLURM_JOB_ID may name the whole array to scancel/scontrol)
    job = os.environ["SLURM_JOB_ID"]  # a batch of one is a plain job, not an array
    if "SLURM_ARRAY_JOB_ID" in os.environ:
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    Path(cfg.marks, f"x{cfg.x}.jobid").write_text(job)
    if cfg.x in cfg.hang_for:
        time.sleep(900)
    return {"score": float(cfg.x)}


if __name__ == "__main__":
    main()
'''

SLOW_CONFIG = """\
defaults:
  - override hydra/sweeper: nemo_rl
  - _self_
x: 0
marks: .
hang_for: []
hydra:
  sweeper:
    metric: score
    direction: maximize
"""


def _slow_sweep(
    cluster: SlurmCluster,
    tmp_path: Path,
    n_jobs: int = 2,
    hang_for: str = "[2]",
    max_failure_rate: float = 0.9,
):
    """A grid sweep x=1..4, ``n_jobs`` at a time, whose trials ``hang_for`` hang; (proc, marks)."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "slow_app.py").write_text(SLOW_APP)
    (app_dir / "config.yaml").write_text(SLOW_CONFIG)
    app = app_dir / "slow_app.py"
    marks = tmp_path / "marks"
    marks.mkdir()
    args = [
        "--multirun",
        "hydra.sweeper.strategy=grid",
        "hydra.sweeper.n_trials=null",
        "x=choice(1,2,3,4)",
        f"hydra.sweeper.n_jobs={n_jobs}",
        f"hydra.sweeper.max_failure_rate={max_failure_rate}",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'ledger.db'}",
        "hydra.sweeper.study_name=slow",
        f"marks={marks}",
        f"hang_for={hang_for}",
        *launcher_overrides(cluster),
    ]
    return _run(cluster, app, args, tmp_path), marks


def _hung_job(cluster: SlurmCluster, marks: Path, x: int = 2) -> str:
    mark = marks / f"x{x}.jobid"
    _wait_for(f"trial x={x} running", lambda: mark.exists() and mark.read_text().strip() != "")
    job = mark.read_text().strip()
    _wait_for(
        f"job {job} RUNNING",
        lambda: (
            cluster.run("squeue", "-h", "-j", job, "-o", "%T", check=False).stdout.strip()
            == "RUNNING"
        ),
    )
    return job


def _check_one_failed_and_sweep_went_on(tmp_path: Path, proc, reason_part: str) -> str:
    code, out, err = _finish(proc)
    assert code == 0, out[-3000:] + err[-3000:]
    study = optuna.load_study(study_name="slow", storage=f"sqlite:///{tmp_path / 'ledger.db'}")
    by_x = {t.params["x"]: t for t in study.get_trials()}
    assert sorted(by_x) == [1, 2, 3, 4]
    assert {x: t.state for x, t in by_x.items()} == {
        1: TrialState.COMPLETE,
        2: TrialState.FAIL,
        3: TrialState.COMPLETE,
        4: TrialState.COMPLETE,
    }
    reason = by_x[2].user_attrs["fail_reason"]
    assert reason_part in reason
    assert [by_x[x].value for x in (1, 3, 4)] == [1.0, 3.0, 4.0]
    return reason


def test_trial_past_its_time_limit_is_a_failed_trial_and_the_sweep_goes_on(
    slurm_cluster: SlurmCluster, tmp_path: Path
):
    """The hung trial's end time is moved to now (Slurm's smallest --time is a minute); Slurm's
    warning signal reaches submitit in the job, which ends the trial with a "timed-out" error, and
    Slurm records TIMEOUT; the sweeper records the trial as failed at the time limit."""
    proc, marks = _slow_sweep(slurm_cluster, tmp_path)
    job = _hung_job(slurm_cluster, marks)
    soon = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 2))
    slurm_cluster.run("scontrol", "update", f"JobId={job}", f"EndTime={soon}")
    reason = _check_one_failed_and_sweep_went_on(tmp_path, proc, "")
    # submitit's handler in the job usually sees Slurm's warning first; else Slurm's end state shows
    assert reason.startswith("SlurmJobEnded: ") and (
        "Slurm time limit reached (hydra.launcher.timeout_min)" in reason
        or "ended TIMEOUT" in reason
    ), reason
    _wait_for(
        f"job {job} TIMEOUT in accounting",
        lambda: (
            "TIMEOUT"
            in slurm_cluster.run("sacct", "-n", "-X", "-P", "-o", "State", "-j", job).stdout
        ),
    )


def test_cancelled_trial_is_a_failed_trial_and_the_sweep_goes_on(
    slurm_cluster: SlurmCluster, tmp_path: Path
):
    proc, marks = _slow_sweep(slurm_cluster, tmp_path)
    job = _hung_job(slurm_cluster, marks)
    slurm_cluster.run("scancel", job)
    reason = _check_one_failed_and_sweep_went_on(tmp_path, proc, "ended CANCELLED")
    assert reason.startswith(f"SlurmJobEnded: Slurm job {job} ") and "log " in reason


def test_trial_cancelled_while_pending_is_a_failed_trial(
    slurm_cluster: SlurmCluster, tmp_path: Path
):
    """A job holding every CPU keeps the sweep's array of three PENDING; its third task (x=3) is
    cancelled before the array ever started, which leaves no trace in squeue or sacct, so submitit
    alone would wait forever. The sweeper gives up on it after ``vanished_after_s``; x=1, x=2 and
    the next batch's x=4 complete."""
    blocker_script = tmp_path / "blocker.sh"
    blocker_script.write_text("#!/bin/sh\nexec sleep 600\n")
    blocker = slurm_cluster.run(
        "sbatch",
        "--parsable",
        "-c",
        str(slurm_cluster.cpus),
        "-o",
        "/dev/null",
        str(blocker_script),
    ).stdout.strip()
    try:
        _wait_for(
            "the blocker running",
            lambda: (
                slurm_cluster.run("squeue", "-h", "-j", blocker, "-o", "%T").stdout.strip()
                == "RUNNING"
            ),
        )
        proc, _ = _slow_sweep(
            slurm_cluster, tmp_path, n_jobs=3, hang_for="[]", max_failure_rate=1.0
        )

        def array_id() -> str:
            out = slurm_cluster.run("squeue", "-h", "-t", "PD", "-o", "%F").stdout.split()
            return out[0] if out else ""

        _wait_for("the sweep's job array queued", lambda: array_id() != "")
        pending = f"{array_id()}_2"  # x=3, the third task of the batch's array
        slurm_cluster.run("scancel", pending)
        _wait_for(
            f"{pending} gone from squeue",
            lambda: (
                slurm_cluster.run("squeue", "-h", "-j", pending, check=False).stdout.strip() == ""
            ),
        )
    finally:
        slurm_cluster.run("scancel", blocker)
    code, out, err = _finish(proc)
    assert code == 0, out[-3000:] + err[-3000:]
    study = optuna.load_study(study_name="slow", storage=f"sqlite:///{tmp_path / 'ledger.db'}")
    by_x = {t.params["x"]: t for t in study.get_trials()}
    reasons = {x: t.user_attrs.get("fail_reason") for x, t in by_x.items()}
    assert {x: t.state for x, t in by_x.items()} == {
        1: TrialState.COMPLETE,
        2: TrialState.COMPLETE,
        3: TrialState.FAIL,
        4: TrialState.COMPLETE,
    }, reasons
    assert f"Slurm job {pending} left the queue" in reasons[3]
    assert "cancelled while pending" in reasons[3]


def test_slurm_short_trials_keep_starting_while_a_long_one_runs(
    slurm_cluster: SlurmCluster, tmp_path: Path
):
    """Two slots: trial 0 runs until four short trials ended, each its own Slurm job started as a
    slot freed (issue 14); in batches it would wait for them in vain."""
    marks = tmp_path / "marks"
    marks.mkdir()
    args = [
        "--multirun",
        f"marks={marks}",
        "hydra.sweeper.seed=3",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'ledger.db'}",
        "hydra.sweeper.study_name=long_short",
        *launcher_overrides(slurm_cluster),
    ]
    code, out, err = _finish(_run(slurm_cluster, LONG_SHORT_APP, args, tmp_path))
    assert code == 0, out[-3000:] + err[-3000:]
    assert "n_jobs=2: asynchronous" in out
    study = optuna.load_study(
        study_name="long_short", storage=f"sqlite:///{tmp_path / 'ledger.db'}"
    )
    check_short_trials_ran_beside_the_long_one(study.get_trials())
