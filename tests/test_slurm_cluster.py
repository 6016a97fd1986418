"""The one-node Slurm test cluster behaves like a real cluster: jobs run, share the node, can be
cancelled and hit their time limit, accounting (sacct) reports it, and hydra-submitit-launcher runs a
Hydra multirun on it. The sweeper's Slurm tests build on these facts."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.slurm_cluster import SlurmCluster, _alive, _cluster_pids, start, stop

# Polling bounds: a broken cluster fails with a message instead of hanging; not a speed check.
WAIT_S = 180.0


def _submit(cluster: SlurmCluster, script: Path, *sbatch_args: str) -> str:
    """sbatch ``script``; arguments after a ``--`` in ``sbatch_args`` go to the script."""
    script.chmod(0o755)
    args = list(sbatch_args)
    script_args = args[args.index("--") + 1 :] if "--" in args else []
    args = args[: args.index("--")] if "--" in args else args
    out = cluster.run("sbatch", "--parsable", *args, str(script), *script_args).stdout
    return out.strip().split(";")[0]


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    return path


def _acct_state(cluster: SlurmCluster, job_id: str) -> str:
    """The job's state in accounting (``COMPLETED``, ``CANCELLED by 0``, ``TIMEOUT``...)."""
    out = cluster.run("sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id, check=False).stdout
    return out.strip().splitlines()[0] if out.strip() else ""


def _wait_for(what: str, cond, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if time.monotonic() > deadline:
            queue = cluster.run("squeue", "-t", "all", check=False).stdout
            raise AssertionError(f"not seen within {WAIT_S:.0f}s: {what}\nsqueue:\n{queue}")
        time.sleep(0.25)


def _wait_state(cluster: SlurmCluster, job_id: str, prefix: str) -> str:
    _wait_for(
        f"job {job_id} {prefix}", lambda: _acct_state(cluster, job_id).startswith(prefix), cluster
    )
    return _acct_state(cluster, job_id)


def _running(cluster: SlurmCluster, job_id: str) -> bool:
    out = cluster.run("squeue", "-h", "-j", job_id, "-o", "%T", check=False).stdout
    return out.strip() == "RUNNING"


def test_batch_job_runs_and_its_output_comes_back(slurm_cluster: SlurmCluster, tmp_path: Path):
    script = _script(
        tmp_path / "hello.sh", 'echo "hello from job $SLURM_JOB_ID on $SLURMD_NODENAME"\n'
    )
    out = tmp_path / "hello.out"
    job = _submit(slurm_cluster, script, "-o", str(out), "-p", slurm_cluster.partition)
    assert _wait_state(slurm_cluster, job, "COMPLETED") == "COMPLETED"
    assert out.read_text().strip() == f"hello from job {job} on {slurm_cluster.node}"


def test_two_one_cpu_jobs_run_at_the_same_time(slurm_cluster: SlurmCluster, tmp_path: Path):
    assert slurm_cluster.cpus >= 2, "the test cluster should offer every CPU of this machine"
    # each job announces itself, then waits (bounded) to see the other one running too
    script = _script(
        tmp_path / "pair.sh",
        """\
        marks=$1; me=$2; other=$3
        touch "$marks/started.$me"
        i=0
        while [ ! -e "$marks/started.$other" ]; do
          i=$((i + 1)); [ $i -gt 1200 ] && { echo alone; exit 3; }; sleep 0.1
        done
        echo together
        """,
    )
    jobs = [
        _submit(
            slurm_cluster,
            script,
            "-c",
            "1",
            "-n",
            "1",
            "-o",
            str(tmp_path / f"pair{me}.out"),
            "--",
            str(tmp_path),
            str(me),
            str(other),
        )
        for me, other in ((0, 1), (1, 0))
    ]
    for job in jobs:
        assert _wait_state(slurm_cluster, job, "COMPLETED") == "COMPLETED"
    assert [(tmp_path / f"pair{i}.out").read_text().strip() for i in (0, 1)] == ["together"] * 2


def test_scancel_kills_a_running_job_and_accounting_says_cancelled(
    slurm_cluster: SlurmCluster, tmp_path: Path
):
    pid_file = tmp_path / "job.pid"
    script = _script(tmp_path / "long.sh", f'echo $$ > "{pid_file}"\nexec sleep 600\n')
    job = _submit(slurm_cluster, script, "-o", str(tmp_path / "long.out"))
    _wait_for(
        "job running with its pid written",
        lambda: pid_file.exists() and pid_file.read_text().strip() != "",
        slurm_cluster,
    )
    pid = int(pid_file.read_text())
    assert _alive(pid)
    slurm_cluster.run("scancel", job)
    assert _wait_state(slurm_cluster, job, "CANCELLED").startswith("CANCELLED")
    _wait_for(f"job process {pid} gone", lambda: not _alive(pid), slurm_cluster)


def test_time_limit_ends_a_job_as_timeout(slurm_cluster: SlurmCluster, tmp_path: Path):
    """Slurm's smallest --time is one minute; the test moves the running job's end time to now
    with ``scontrol update EndTime=`` (what an admin does), and slurmctld's own time-limit check
    ends it: state TIMEOUT, the "DUE TO TIME LIMIT" line in the output. Takes 5-35 s."""
    script = _script(tmp_path / "slow.sh", "exec sleep 600\n")
    out = tmp_path / "slow.out"
    job = _submit(slurm_cluster, script, "--time=1", "-o", str(out))
    _wait_for(f"job {job} running", lambda: _running(slurm_cluster, job), slurm_cluster)
    soon = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 2))
    slurm_cluster.run("scontrol", "update", f"JobId={job}", f"EndTime={soon}")
    assert _wait_state(slurm_cluster, job, "TIMEOUT") == "TIMEOUT"
    assert "DUE TO TIME LIMIT" in out.read_text()


HYDRA_APP = """\
import json
import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg):
    result = {
        "x": cfg.x,
        "square": cfg.x**2,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "node": os.environ.get("SLURMD_NODENAME"),
    }
    Path(HydraConfig.get().runtime.output_dir, "result.json").write_text(json.dumps(result))
    return cfg.x**2


if __name__ == "__main__":
    main()
"""


# The submitit launcher settings that work on the test cluster (reported to the lead).
def submitit_overrides(cluster: SlurmCluster, sweep_dir: Path) -> list[str]:
    return [
        "hydra/launcher=submitit_slurm",
        f"hydra.launcher.partition={cluster.partition}",
        "hydra.launcher.timeout_min=5",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.tasks_per_node=1",
        "hydra.launcher.nodes=1",
        "hydra.launcher.mem_gb=1",
        f"hydra.sweep.dir={sweep_dir}",
    ]


def test_hydra_submitit_multirun_runs_on_the_cluster(slurm_cluster: SlurmCluster, tmp_path: Path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "my_app.py").write_text(HYDRA_APP)
    (app / "config.yaml").write_text("x: 0\n")
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            "my_app.py",
            "--multirun",
            "x=1,2",
            *submitit_overrides(slurm_cluster, sweep),
        ],
        cwd=app,
        env=slurm_cluster.env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads((sweep / str(i) / "result.json").read_text()) for i in (0, 1)]
    assert [(r["x"], r["square"]) for r in results] == [(1, 1), (2, 4)]
    assert all(r["node"] == slurm_cluster.node and r["slurm_job_id"] for r in results)
    # both were tasks of one job array, and both finished COMPLETED in accounting
    array_ids = {r["slurm_array_job_id"] for r in results}
    assert len(array_ids) == 1 and None not in array_ids
    for r in results:
        assert _wait_state(slurm_cluster, r["slurm_job_id"], "COMPLETED") == "COMPLETED"
    # the launcher got each job's return value back through submitit's result file
    returned = {}
    for pkl in (sweep / ".submitit").glob("*/*_result.pkl"):
        outcome, job_returns = pickle.loads(pkl.read_bytes())
        assert outcome == "success"
        returned[job_returns.overrides[0]] = job_returns.return_value
    assert returned == {"x=1": 1, "x=2": 4}


def test_stop_leaves_no_process_behind(slurm_cluster: SlurmCluster, tmp_path: Path):
    """A second cluster beside the session's one (own ports and folder): stop() with a job still
    running ends every daemon, slurmstepd and job process of that cluster, and only those."""
    other = start(tmp_path / "c2", die_with_parent=True)
    try:
        script = _script(tmp_path / "busy.sh", "exec sleep 600\n")
        job = _submit(other, script, "-o", str(tmp_path / "busy.out"))
        _wait_for(f"job {job} running", lambda: _running(other, job), other)
        assert len(_cluster_pids(other.conf)) > len(other.pids)  # daemons + slurmstepd + job
    finally:
        alive = stop(other)
    assert alive == []
    assert [p for p in _cluster_pids(other.conf) if _alive(p)] == []
    assert all(not _alive(pid) for pid in other.pids.values())
    # the session's cluster is untouched
    assert slurm_cluster.run("scontrol", "ping").returncode == 0
