"""The ray.sub trial mode on the real one-node Slurm test cluster (issue 13).

The sweeper runs here (the "login node"); each trial is one ``sbatch`` of a bare-metal stand-in for
NeMo RL's ray.sub (tests/apps/raysub_standin/ray.sub: the same variables, header style, log layout
and exit codes, COMMAND run without containers) whose COMMAND runs the stand-in NeMo RL script
(tests/apps/nemo_rl_standin: resumes from its checkpoint folder, writes TensorBoard scalars) on
the real grpo_math_1B recipe. ``STANDIN_STEP_S`` makes its steps slow enough to be watched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from nemo_rl_sweep import ledger
from tests.helpers import NEMO_RL_CONFIGS, TRAIN_APP, error_lines
from tests.slurm_cluster import SlurmCluster
from tests.test_slurm_sweep import _finish as finish
from tests.test_slurm_sweep import _run
from tests.test_slurm_sweep import _wait_for as wait_for

REPO = Path(__file__).resolve().parents[1]
STANDIN = REPO / "tests" / "apps" / "nemo_rl_standin"
RAY_SUB = REPO / "tests" / "apps" / "raysub_standin" / "ray.sub"
LR = "policy.optimizer.kwargs.lr=choice(1e-5)"

sys.path.insert(0, str(STANDIN))
from standin import value  # noqa: E402


def study_of(tmp_path: Path) -> str:
    """A study name of the test's own: its trials' job names (``<study>-trial<N>``) are unique in
    the session, as ray.sub's ``--dependency=singleton`` would queue same-named jobs in turn."""
    return "rs-" + "".join(c for c in tmp_path.name if c.isalnum())[-24:]


def sweep_args(tmp_path: Path, *extra: str, n_trials: int = 1, n_jobs: int = 1) -> list[str]:
    """A sweep of the stand-in through the stand-in ray.sub; ``extra`` wins over the defaults."""
    base = [
        "--multirun",
        "hpo=random",
        "trainer=nemo_rl",
        f"hydra.searchpath=[nemorl://{NEMO_RL_CONFIGS}]",
        "recipe=grpo_math_1B",
        f"trainer.checkout={STANDIN}",
        f"trainer.command=[{sys.executable}]",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'ledger.db'}",
        f"hydra.sweeper.study_name={study_of(tmp_path)}",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.n_jobs={n_jobs}",
        "hydra.sweeper.seed=0",
        "search_space@hydra.sweeper.params=none",
        "grpo.val_period=2",
        "checkpointing.save_period=2",
        "hydra/launcher=slurm_raysub",
        f"hydra.launcher.ray_sub={RAY_SUB}",
        "hydra.launcher.container=none",
        "hydra.launcher.poll_s=0.5",
    ]
    keys = {e.split("=", 1)[0].lstrip("+") for e in extra}
    return [a for a in base if a.split("=", 1)[0] not in keys] + list(extra)


def start(cluster: SlurmCluster, tmp_path: Path, args: list[str]) -> subprocess.Popen:
    return _run(cluster, TRAIN_APP, args, tmp_path)


def sweep(cluster: SlurmCluster, tmp_path: Path, args: list[str]) -> str:
    code, out, err = finish(start(cluster, tmp_path, args))
    assert code == 0, out[-3000:] + err[-3000:]
    return out


def running_past_step_4(
    cluster: SlurmCluster, tmp_path: Path, *extra: str
) -> tuple[subprocess.Popen, str, Path]:
    """One 16-step trial started; returns once its checkpoint of step 4 exists."""
    args = sweep_args(
        tmp_path, LR, "grpo.max_num_steps=16", "+trainer.env.STANDIN_STEP_S=0.5", *extra
    )
    proc = start(cluster, tmp_path, args)
    wait_for("a job", lambda: bool(job_ids(tmp_path)))
    job_dir = Path(trials(tmp_path)[0].user_attrs["job_dir"])
    info = job_dir / "checkpoints" / "step_4" / "training_info.json"  # written last
    wait_for("checkpoint step 4", info.is_file)
    return proc, job_ids(tmp_path)[0], job_dir


def trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    if not (tmp_path / "ledger.db").exists():
        return []
    # through the ledger module, as a second sweeper would: it takes turns with the sweeper that
    # may be creating the tables right now, where a bare load_study could race it
    storage = ledger.open_storage(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        return optuna.load_study(study_name=study_of(tmp_path), storage=storage).trials
    except (KeyError, sqlalchemy.exc.OperationalError):  # the sweeper has not created it yet
        return []


def job_ids(tmp_path: Path) -> dict[int, str]:
    return {
        t.number: t.user_attrs["slurm_job_id"]
        for t in trials(tmp_path)
        if "slurm_job_id" in t.user_attrs
    }


def acct(cluster: SlurmCluster, job_id: str) -> str:
    """The job's state in Slurm's accounting (``CANCELLED by 0``, ``COMPLETED``...)."""
    out = cluster.run("sacct", "-n", "-X", "-P", "-o", "JobIDRaw,State", "-j", job_id).stdout
    states = [line.split("|")[1] for line in out.splitlines() if line.startswith(f"{job_id}|")]
    return states[-1] if states else ""


def squeue_state(cluster: SlurmCluster, job_id: str) -> str:
    return cluster.run("squeue", "-h", "-j", job_id, "-o", "%T", check=False).stdout.strip()


def jobs_named(cluster: SlurmCluster, name: str, under: Path) -> list[str]:
    """The Slurm jobs of that name submitted from a folder under ``under`` (this test's)."""
    out = cluster.run("sacct", "-n", "-X", "-P", "-o", "JobIDRaw,WorkDir", f"--name={name}").stdout
    rows = [line.split("|", 1) for line in out.splitlines() if "|" in line]
    return [job for job, folder in rows if folder.startswith(str(under))]


def lr_of(trial: optuna.trial.FrozenTrial) -> float:
    return float(trial.params["policy.optimizer.kwargs.lr"])


# ------------------------------------------------------------------------------------------------


def test_several_trials_land_in_the_ledger_with_their_slurm_jobs(slurm_cluster, tmp_path):
    args = sweep_args(
        tmp_path,
        "policy.optimizer.kwargs.lr=tag(log, interval(1e-6, 1e-5))",
        "grpo.max_num_steps=4",
        "+trainer.env.STANDIN_STEP_S=0.2",
        n_trials=3,
        n_jobs=2,
    )
    out = sweep(slurm_cluster, tmp_path, args)
    assert "asynchronous" in out
    done = trials(tmp_path)
    assert [t.state for t in done] == [TrialState.COMPLETE] * 3
    ids = job_ids(tmp_path)
    assert len(set(ids.values())) == 3
    for t in done:
        job_dir = Path(t.user_attrs["job_dir"])
        assert t.user_attrs["slurm_job_name"] == f"{study_of(tmp_path)}-trial{t.number}"
        assert t.user_attrs["slurm_state"] == "COMPLETED"
        assert t.user_attrs["slurm_nodes"] == slurm_cluster.node
        assert acct(slurm_cluster, ids[t.number]) == "COMPLETED"
        assert t.user_attrs["slurm_log"] == str(job_dir / f"slurm-{ids[t.number]}.out")
        driver = Path(t.user_attrs["slurm_driver_log"])
        assert driver == job_dir / f"{ids[t.number]}-logs" / "ray-driver.log"
        assert "standin: resumed_from_step=0" in driver.read_text()
        assert "ray.sub exiting (exit_code=0)" in Path(t.user_attrs["slurm_log"]).read_text()
        assert t.value == pytest.approx(value("grpo", lr_of(t), 4))
        assert t.intermediate_values == pytest.approx(
            {2: value("grpo", lr_of(t), 2), 4: value("grpo", lr_of(t), 4)}
        )


def test_a_pruned_trials_job_is_cancelled(slurm_cluster, tmp_path):
    """ThresholdPruner: 1e-6 x 1e4 x step 2 = 0.02 < 0.05, so the first validation prunes it."""
    args = sweep_args(
        tmp_path,
        "policy.optimizer.kwargs.lr=choice(1e-6)",
        "grpo.max_num_steps=40",
        "+trainer.env.STANDIN_STEP_S=0.5",
        "hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 0.05}",
    )
    sweep(slurm_cluster, tmp_path, args)
    (trial,) = trials(tmp_path)
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["slurm_state"] == "CANCELLED (pruned)"
    assert 2 in trial.intermediate_values and 40 not in trial.intermediate_values
    job = trial.user_attrs["slurm_job_id"]
    wait_for(
        "the pruned job's accounting", lambda: acct(slurm_cluster, job).startswith("CANCELLED")
    )
    checkpoints = Path(trial.user_attrs["job_dir"]) / "checkpoints"
    assert not (checkpoints / "step_40").exists()


def test_scancel_and_the_time_limit_fail_their_trials_with_the_slurm_state(slurm_cluster, tmp_path):
    args = sweep_args(
        tmp_path,
        "policy.optimizer.kwargs.lr=choice(1e-5)",
        "grpo.max_num_steps=1000",
        "+trainer.env.STANDIN_STEP_S=1",
        "hydra.launcher.time=1",  # one minute
        "hydra.sweeper.max_failure_rate=1.0",
        n_trials=2,
        n_jobs=2,
    )
    proc = start(slurm_cluster, tmp_path, args)
    wait_for(
        "both jobs running",
        lambda: (
            len(job_ids(tmp_path)) == 2
            and all(squeue_state(slurm_cluster, j) == "RUNNING" for j in job_ids(tmp_path).values())
        ),
    )
    cancelled = job_ids(tmp_path)[0]
    slurm_cluster.run("scancel", cancelled)
    code, out, err = finish(proc)
    assert code == 0, out[-3000:] + err[-3000:]
    first, second = trials(tmp_path)
    assert first.state == second.state == TrialState.FAIL
    assert first.user_attrs["slurm_state"].startswith("CANCELLED")
    assert f"Slurm job {cancelled} was cancelled (CANCELLED" in first.user_attrs["fail_reason"]
    timed_out = second.user_attrs["slurm_job_id"]
    assert second.user_attrs["slurm_state"] == "TIMEOUT"
    assert acct(slurm_cluster, timed_out) == "TIMEOUT"
    assert (
        f"Slurm job {timed_out} reached its Slurm time limit (hydra.launcher.time) (TIMEOUT)"
        in second.user_attrs["fail_reason"]
    )
    # the last lines of the trial's driver log (ray.sub's <jobid>-logs/ray-driver.log)
    assert "ray-driver.log ---\n" in second.user_attrs["fail_reason"]
    assert "standin: resumed_from_step=0" in second.user_attrs["fail_reason"]


def test_a_requeued_trial_continues_from_its_checkpoint(slurm_cluster, tmp_path):
    proc, job, job_dir = running_past_step_4(slurm_cluster, tmp_path)
    slurm_cluster.run("scontrol", "requeue", job)
    # Slurm holds a requeued batch job until a begin time ~2 minutes on; release it now
    wait_for("the job back in the queue", lambda: squeue_state(slurm_cluster, job) == "PENDING")
    # not in the same second as the first run's end: slurmd revokes the job's credential at that
    # end, to the second, and kills a start whose credential is not newer ("Job credential
    # revoked", FAILED 1:0); Slurm's own requeue delay is there to avoid exactly that
    time.sleep(2.0)
    slurm_cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")
    code, out, err = finish(proc)
    assert code == 0, out[-3000:] + err[-3000:]
    (trial,) = trials(tmp_path)
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["slurm_job_id"] == job  # the same job, requeued in place
    second = job_dir / f"{job}-1-logs" / "ray-driver.log"
    assert trial.user_attrs["slurm_driver_log"] == str(second)
    resumed = int(second.read_text().split("standin: resumed_from_step=")[1].split()[0])
    assert resumed >= 4
    assert trial.value == pytest.approx(value("grpo", 1e-5, 16))


def test_a_trial_that_lost_its_node_runs_again_from_its_checkpoint(slurm_cluster, tmp_path):
    """NODE_FAIL (the node set DOWN while the job runs; --no-requeue so Slurm does not requeue
    it itself): a new job for the same trial resumes from the trial's checkpoints (retries: 1)."""
    proc, first, job_dir = running_past_step_4(
        slurm_cluster, tmp_path, "hydra.launcher.sbatch_args=['--no-requeue']"
    )
    node = slurm_cluster.node
    try:
        slurm_cluster.run("scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=test")
        wait_for("NODE_FAIL", lambda: acct(slurm_cluster, first) == "NODE_FAIL")
    finally:
        slurm_cluster.run("scontrol", "update", f"NodeName={node}", "State=RESUME", check=False)
    code, out, err = finish(proc)
    assert code == 0, out[-3000:] + err[-3000:]
    (trial,) = trials(tmp_path)
    assert trial.state == TrialState.COMPLETE
    second = trial.user_attrs["slurm_job_id"]
    assert second != first and trial.user_attrs["slurm_earlier_jobs"] == [f"{first} NODE_FAIL"]
    resumed = (job_dir / f"{second}-logs" / "ray-driver.log").read_text()
    assert int(resumed.split("standin: resumed_from_step=")[1].split()[0]) >= 4
    assert trial.value == pytest.approx(value("grpo", 1e-5, 16))


def test_kill_9_of_the_sweeper_then_the_same_command_re_attaches(slurm_cluster, tmp_path):
    """Two trials on Slurm; the sweeper is killed; the short trial's job ends unwatched, the long
    one still runs. The same command again: both recorded with their real results, nothing
    submitted twice, n_trials exact."""
    args = sweep_args(
        tmp_path,
        "policy.optimizer.kwargs.lr=choice(1e-5)",
        "grpo.max_num_steps=choice(4, 24)",
        "+trainer.env.STANDIN_STEP_S=0.5",
        n_trials=2,
        n_jobs=2,
    )
    args[args.index("hpo=random")] = "hpo=grid"
    proc = start(slurm_cluster, tmp_path, args)
    wait_for("two jobs", lambda: len(job_ids(tmp_path)) == 2)
    before = job_ids(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    steps = {t.number: int(t.params["grpo.max_num_steps"]) for t in trials(tmp_path)}
    short = min(steps, key=steps.get)
    long = max(steps, key=steps.get)
    wait_for("the short job to end", lambda: acct(slurm_cluster, before[short]) == "COMPLETED")
    assert squeue_state(slurm_cluster, before[long]) in ("RUNNING", "PENDING")
    assert {t.state for t in trials(tmp_path)} == {TrialState.RUNNING}

    out = sweep(slurm_cluster, tmp_path, args)
    assert "2 trial(s) of a sweeper that stopped still have their Slurm job" in out
    done = trials(tmp_path)
    assert len(done) == 2 and [t.state for t in done] == [TrialState.COMPLETE] * 2
    assert job_ids(tmp_path) == before
    for t in done:
        assert jobs_named(slurm_cluster, f"{study_of(tmp_path)}-trial{t.number}", tmp_path) == [
            before[t.number]
        ]
        assert t.value == pytest.approx(value("grpo", 1e-5, steps[t.number]))
        assert "stale" not in t.user_attrs


def test_what_only_slurm_knows_is_refused_before_any_job(slurm_cluster, tmp_path):
    cases = [
        (
            [
                "recipe=recipes/llm/grpo-llama3.1-8b-instruct-2n8g-megatron-fp8-e2e",
                "policy.megatron_cfg.optimizer.lr=choice(1e-6)",
            ],
            "Error: cluster.num_nodes: the recipe needs 2 nodes but partition debug has 1. Fix: "
            "pick a partition with enough nodes (hydra.launcher.partition) or a smaller recipe",
        ),
        (
            [LR, "hydra.launcher.partition=nosuch"],
            "Error: hydra.launcher.partition: sinfo knows no partition 'nosuch' (no message). "
            "Fix: name one that `sinfo -s` lists",
        ),
        (
            [LR, "hydra.launcher.time=notatime"],
            "Error: hydra.launcher: Slurm refuses the trial's submission (sbatch: error: Invalid "
            "--time specification). Fix: check hydra.launcher.account, partition, qos, time and "
            "sbatch_args",
        ),
    ]
    for extra, line in cases:
        proc = start(slurm_cluster, tmp_path, sweep_args(tmp_path, *extra))
        code, out, err = finish(proc)
        assert code == 2, err[-2000:]
        assert error_lines(subprocess.CompletedProcess([], code, out, err)) == [line]
        assert not (tmp_path / "ledger.db").exists()
    submitted = slurm_cluster.run(
        "sacct", "-n", "-X", "-P", "-o", "JobIDRaw,WorkDir", "-S", "now-1hours"
    ).stdout
    assert [row for row in submitted.splitlines() if str(tmp_path) in row] == []


def test_wall_time_cancels_a_trial_and_sigterm_of_the_sweeper_cancels_its_jobs(
    slurm_cluster, tmp_path
):
    """``wall_time_min`` (3 s here) cancels a trial running longer; SIGTERM of the sweeper (as
    Ctrl-C) cancels the running job and leaves the trial stale, to run again on resume."""
    wall, term = tmp_path / "wall", tmp_path / "term"
    wall.mkdir(), term.mkdir()
    slow = [LR, "grpo.max_num_steps=1000", "+trainer.env.STANDIN_STEP_S=1"]
    extra = ["hydra.launcher.wall_time_min=0.05", "hydra.sweeper.max_failure_rate=1.0"]
    sweep(slurm_cluster, wall, sweep_args(wall, *slow, *extra))
    (first,) = trials(wall)
    assert first.state == TrialState.FAIL
    job = first.user_attrs["slurm_job_id"]
    assert (
        f"Slurm job {job} cancelled by the sweeper: running longer than 0.05 min (wall_time_min)"
        in first.user_attrs["fail_reason"]
    )
    wait_for("the first job cancelled", lambda: acct(slurm_cluster, job).startswith("CANCELLED"))

    proc = start(slurm_cluster, term, sweep_args(term, *slow))
    wait_for("a job", lambda: bool(job_ids(term)))
    running = job_ids(term)[0]
    wait_for("the job running", lambda: squeue_state(slurm_cluster, running) == "RUNNING")
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 3, err[-2000:]
    assert "interrupted: finished trials are in the ledger" in err
    wait_for("the job cancelled", lambda: acct(slurm_cluster, running).startswith("CANCELLED"))
    (second,) = trials(term)
    assert second.state == TrialState.FAIL and second.user_attrs["stale"] is True


def test_a_job_pending_too_long_is_cancelled_with_slurms_reason(slurm_cluster, tmp_path):
    args = sweep_args(
        tmp_path,
        LR,
        "grpo.max_num_steps=4",
        "hydra.launcher.sbatch_args=['--begin=now+1hour']",
        "hydra.launcher.pending_timeout_min=0.05",
        "hydra.sweeper.max_failure_rate=1.0",
    )
    sweep(slurm_cluster, tmp_path, args)
    (trial,) = trials(tmp_path)
    job = trial.user_attrs["slurm_job_id"]
    assert trial.state == TrialState.FAIL
    assert (
        f"Slurm job {job} cancelled by the sweeper: pending longer than 0.05 min "
        "(pending_timeout_min; Slurm: BeginTime)" in trial.user_attrs["fail_reason"]
    )
    wait_for("the job cancelled", lambda: acct(slurm_cluster, job).startswith("CANCELLED"))


def test_a_failing_driver_is_a_failed_trial_with_its_exit_code_and_log(slurm_cluster, tmp_path):
    """The NeMo RL script exits non-zero (here: a key its recipe lacks, in trainer.extra_args);
    ray.sub passes the exit code on, and the reason carries its ray-driver.log's last lines."""
    args = sweep_args(
        tmp_path,
        LR,
        "grpo.max_num_steps=4",
        "trainer.extra_args=['grpo.no_such_key=1']",
        "hydra.sweeper.max_failure_rate=1.0",
    )
    sweep(slurm_cluster, tmp_path, args)
    (trial,) = trials(tmp_path)
    job = trial.user_attrs["slurm_job_id"]
    assert trial.state == TrialState.FAIL and trial.user_attrs["slurm_state"] == "FAILED"
    reason = trial.user_attrs["fail_reason"]
    assert f"Slurm job {job} ended FAILED with exit code 1:0" in reason
    assert f"{job}-logs/ray-driver.log ---" in reason and "no_such_key" in reason


def test_short_trials_keep_starting_while_a_long_one_runs(slurm_cluster, tmp_path):
    """Two slots: trial 0 runs 120 steps; the four short ones follow each other in the other slot
    (issue 14 with the ray.sub trial mode), so at least three start and end while it runs."""
    args = sweep_args(
        tmp_path,
        LR,
        "grpo.max_num_steps=choice(120, 2, 3, 4, 5)",
        "+trainer.env.STANDIN_STEP_S=0.5",
        "hydra.sweeper.enqueue=[{grpo.max_num_steps: 120}]",
        n_trials=5,
        n_jobs=2,
    )
    args[args.index("hpo=random")] = "hpo=grid"
    assert "n_jobs=2: asynchronous" in sweep(slurm_cluster, tmp_path, args)
    # the enqueued point is also a grid point: the grid records the second ask of it as stale
    long, *short = [t for t in trials(tmp_path) if not t.user_attrs.get("stale")]
    assert long.params["grpo.max_num_steps"] == 120
    assert [t.state for t in (long, *short)] == [TrialState.COMPLETE] * 5
    during = [
        t
        for t in short
        if long.datetime_start <= t.datetime_start and t.datetime_complete <= long.datetime_complete
    ]
    assert len(during) >= 3
