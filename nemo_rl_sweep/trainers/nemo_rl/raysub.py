"""One trial = one ``sbatch`` of NeMo RL's ``ray.sub``: the submission, the checks before it, and
what Slurm's answers mean.

NeMo RL runs every multi-node recipe through ``ray.sub``: ``COMMAND=... CONTAINER=... MOUNTS=...
sbatch --nodes=N ... ray.sub``. It starts a Ray cluster over the job's nodes (in pyxis containers),
runs ``COMMAND`` on the head node with its output in ``$BASE_LOG_DIR/<jobid>-logs/ray-driver.log``
(``<jobid>-<restart>-logs`` after a requeue; ``BASE_LOG_DIR`` defaults to the submit folder) and
exits with the driver's exit code. Its header sets ``--dependency=singleton``: jobs sharing a name
run one after another, so every trial gets a name of its own, ``<study>-trial<N>``.

The trial's folder is the submit folder: ``slurm-<jobid>.out``, the ``<jobid>-logs`` folders, the
trial's ``config.yaml`` and its NeMo RL ``logs``/``checkpoints`` all live there, so a requeued or
retried job resumes from the trial's own checkpoints. This module holds no process and no thread:
``hydra_plugins/nemo_rl_sweeper/raysub_jobs.py`` submits and watches.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_rl_sweep.errors import SweepConfigError

__all__ = [
    "ALIVE_STATES",
    "BARE_METAL",
    "Ending",
    "RaySubSettings",
    "check_capacity",
    "check_with_slurm",
    "driver_command",
    "ending",
    "job_name",
    "log_files",
    "partition_offer",
    "run_slurm",
    "sbatch_argv",
    "submit_env",
]

BARE_METAL = "none"  # hydra.launcher.container=none: the user's ray.sub runs without containers
# squeue states of a job that is still Slurm's (it may run, or run again after a requeue)
ALIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SUSPENDED",
        "STOPPED",
        "SIGNALING",
        "STAGE_OUT",
        "RESV_DEL_HOLD",
        "SPECIAL_EXIT",
    }
)
# final states after which a new job for the same trial may continue it from its checkpoints
RETRY_STATES = frozenset({"NODE_FAIL", "PREEMPTED", "BOOT_FAIL"})
_WHY = {
    "TIMEOUT": "reached its Slurm time limit (hydra.launcher.time)",
    "OUT_OF_MEMORY": "was killed for running out of memory",
    "NODE_FAIL": "lost a node (NODE_FAIL)",
    "PREEMPTED": "was preempted",
    "BOOT_FAIL": "could not boot its nodes (BOOT_FAIL)",
    "CANCELLED": "was cancelled",
    "DEADLINE": "passed its deadline",
    "REVOKED": "was revoked",
}


@dataclass(frozen=True)
class RaySubSettings:
    """``hydra.launcher`` of the ``slurm_raysub`` preset, checked."""

    ray_sub: Path
    container: str | None
    mounts: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    time: str | None = None
    sbatch_args: tuple[str, ...] = ()
    gres: str = "auto"
    retries: int = 1
    poll_s: float = 30.0
    pending_timeout_min: float | None = None
    wall_time_min: float | None = None

    @classmethod
    def from_cfg(cls, node: Mapping[str, Any], checkout: Path | None) -> RaySubSettings:
        """From the launcher's keys; ``ray_sub: null`` is the one in the NeMo RL checkout."""
        raw = node.get("ray_sub")
        if raw in (None, ""):
            if checkout is None:
                raise SweepConfigError(
                    "hydra.launcher.ray_sub",
                    "not set and there is no trainer.checkout to find ray.sub in",
                    "set hydra.launcher.ray_sub=/path/to/RL/ray.sub",
                )
            raw = str(Path(checkout) / "ray.sub")
        gres = str(node.get("gres") or "auto")
        if gres not in ("auto", "always", "never"):
            raise SweepConfigError(
                "hydra.launcher.gres", f"unknown value {gres!r}", "use auto, always or never"
            )
        retries = int(node.get("retries") or 0)
        if retries < 0:
            raise SweepConfigError("hydra.launcher.retries", "is negative", "use 0 or more")
        container = node.get("container")
        return cls(
            ray_sub=Path(str(raw)).expanduser().resolve(),
            container=str(container) if container not in (None, "") else None,
            mounts=str(node["mounts"]) if node.get("mounts") not in (None, "") else None,
            env={str(k): str(v) for k, v in (node.get("env") or {}).items()},
            account=_text(node.get("account")),
            partition=_text(node.get("partition")),
            qos=_text(node.get("qos")),
            time=_text(node.get("time")),
            sbatch_args=tuple(str(a) for a in (node.get("sbatch_args") or ())),
            gres=gres,
            retries=retries,
            poll_s=float(node.get("poll_s") or 30.0),
            pending_timeout_min=_number(node.get("pending_timeout_min")),
            wall_time_min=_number(node.get("wall_time_min")),
        )

    def check_files(self) -> None:
        """What is wrong on this machine whatever Slurm says: no ray.sub, no container."""
        if not self.ray_sub.is_file():
            raise SweepConfigError(
                "hydra.launcher.ray_sub",
                f"{self.ray_sub} does not exist",
                "point it at NeMo RL's ray.sub (null: <trainer.checkout>/ray.sub)",
            )
        if self.container is None:
            raise SweepConfigError(
                "hydra.launcher.container",
                "no container image for ray.sub's CONTAINER",
                "set hydra.launcher.container=/path/to/nemo_rl.sqsh (or export CONTAINER), or "
                f"container={BARE_METAL} for a ray.sub that runs without pyxis",
            )
        if shutil.which("sbatch") is None:
            raise SweepConfigError(
                "hydra/launcher",
                "slurm_raysub needs Slurm's sbatch, which is not on PATH here",
                "run the sweep on a Slurm login node",
            )


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _number(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


def job_name(study: str, trial: int) -> str:
    """Unique per trial, so ray.sub's ``--dependency=singleton`` never queues two trials in turn."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study).strip("._") or "study"
    return f"{safe}-trial{int(trial)}"


def driver_command(
    checkout: Path, command: Sequence[str], script: str, config: Path, extra: Sequence[str]
) -> str:
    """ray.sub's ``COMMAND``: the trial's NeMo RL script on its own ``config.yaml``."""
    argv = [*command, script, "--config", str(config), *extra]
    return f"cd {shlex.quote(str(checkout))} && " + " ".join(shlex.quote(a) for a in argv)


def sbatch_argv(
    settings: RaySubSettings, name: str, nodes: int, gpus_per_node: int, gres: bool
) -> list[str]:
    """The ``sbatch`` command line of one trial; command-line options win over ray.sub's header."""
    argv = ["sbatch", "--parsable", f"--job-name={name}", f"--nodes={int(nodes)}", "--requeue"]
    if gres:
        argv.append(f"--gres=gpu:{int(gpus_per_node)}")
    for option, value in (
        ("account", settings.account),
        ("partition", settings.partition),
        ("qos", settings.qos),
        ("time", settings.time),
    ):
        if value is not None:
            argv.append(f"--{option}={value}")
    return [*argv, *settings.sbatch_args, str(settings.ray_sub)]


def submit_env(
    settings: RaySubSettings, command: str, gpus_per_node: int, base: Mapping[str, str]
) -> dict[str, str]:
    """The environment ``sbatch`` hands ray.sub (it exports the submitting environment)."""
    env = {**base, **settings.env, "COMMAND": command, "GPUS_PER_NODE": str(int(gpus_per_node))}
    env["CONTAINER"] = "" if settings.container in (None, BARE_METAL) else str(settings.container)
    env["MOUNTS"] = settings.mounts or ""
    return env


@dataclass(frozen=True)
class PartitionOffer:
    """What a partition offers: its node count and the GPUs per node its GRES lists (0: none)."""

    nodes: int
    gpus_per_node: int


def partition_offer(sinfo_out: str) -> PartitionOffer:
    """From ``sinfo -h -p P -o "%D|%G"`` lines (``4|gpu:8``, ``2|gpu:a100:8(S:0-1)``, ``1|(null)``)."""
    nodes, gpus = 0, 0
    for line in sinfo_out.strip().splitlines():
        count, _, gres = line.partition("|")
        if count.strip().isdigit():
            nodes += int(count)
        for item in gres.split(","):
            item = item.split("(", 1)[0]
            if item.startswith("gpu:") and item.rsplit(":", 1)[-1].isdigit():
                gpus = max(gpus, int(item.rsplit(":", 1)[-1]))
    return PartitionOffer(nodes, gpus)


def check_capacity(
    offer: PartitionOffer, partition: str, nodes: int, gpus_per_node: int, gres: str
) -> bool:
    """Refuse a trial the partition can never run; True when ``--gres=gpu:N`` is to be asked."""
    if offer.nodes < nodes:
        raise SweepConfigError(
            "cluster.num_nodes",
            f"the recipe needs {nodes} nodes but partition {partition} has {offer.nodes}",
            "pick a partition with enough nodes (hydra.launcher.partition) or a smaller recipe",
        )
    if offer.gpus_per_node and offer.gpus_per_node < gpus_per_node:
        raise SweepConfigError(
            "cluster.gpus_per_node",
            f"the recipe needs {gpus_per_node} GPUs per node but partition {partition} offers "
            f"gpu:{offer.gpus_per_node}",
            f"set cluster.gpus_per_node={offer.gpus_per_node} or pick another partition",
        )
    if gres == "always" and not offer.gpus_per_node:
        raise SweepConfigError(
            "hydra.launcher.gres",
            f"is always but partition {partition} lists no gpu GRES",
            "use gres=auto (asks --gres only where the partition has GPUs as GRES)",
        )
    return gres == "always" or (gres == "auto" and offer.gpus_per_node > 0)


def run_slurm(
    argv: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """A Slurm command's answer; one that cannot start or hangs is a failed answer, not a raise."""
    try:
        return subprocess.run(
            list(argv),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(argv), 1, "", f"{argv[0]}: {exc}")


def check_with_slurm(
    settings: RaySubSettings, nodes: int, gpus_per_node: int, env: Mapping[str, str]
) -> bool:
    """Ask Slurm, before any job: does the partition offer the nodes and GPUs, and would it take
    the submission (``sbatch --test-only``)? True when ``--gres=gpu:N`` is to be asked."""
    partition = settings.partition
    if partition is None:
        listed = run_slurm(["sinfo", "-h", "-o", "%P"])
        if listed.returncode != 0:
            raise SweepConfigError(
                "hydra/launcher",
                f"Slurm does not answer sinfo ({_first_line(listed.stderr)})",
                "run the sweep on a login node of the cluster (SLURM_CONF set)",
            )
        default = listed.stdout.split()
        partition = next((p.rstrip("*") for p in default if p.endswith("*")), None)
    if partition is None:
        raise SweepConfigError(
            "hydra.launcher.partition",
            "not set and the cluster has no default partition",
            "set hydra.launcher.partition=<your GPU partition>",
        )
    info = run_slurm(["sinfo", "-h", "-p", partition, "-o", "%D|%G"])
    if info.returncode != 0 or not info.stdout.strip():
        raise SweepConfigError(
            "hydra.launcher.partition",
            f"sinfo knows no partition {partition!r} ({_first_line(info.stderr)})",
            "name one that `sinfo -s` lists",
        )
    gres = check_capacity(
        partition_offer(info.stdout), partition, nodes, gpus_per_node, gres=settings.gres
    )
    argv = sbatch_argv(settings, "nemo_rl_sweep-check", nodes, gpus_per_node, gres)
    test = run_slurm([argv[0], "--test-only", *argv[2:]], env=env)
    if test.returncode != 0:
        raise SweepConfigError(
            "hydra.launcher",
            f"Slurm refuses the trial's submission ({_first_line(test.stderr)})",
            "check hydra.launcher.account, partition, qos, time and sbatch_args",
        )
    return gres


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no message"


@dataclass(frozen=True)
class Ending:
    """How a job ended, for the trial: success, a reason, and whether a new job may continue it."""

    ok: bool
    reason: str = ""
    retry: bool = False


def ending(job_id: str, state: str, exit_code: str, log: Path | None, tail: str) -> Ending:
    """Slurm's final state (``sacct``'s ``State`` and ``ExitCode``) as a trial outcome."""
    base = state.split()[0] if state else "UNKNOWN"
    if base == "COMPLETED":
        return Ending(True)
    where = f"; log {log}" if log is not None else ""
    if base in _WHY:
        text = f"Slurm job {job_id} {_WHY[base]} ({state}){where}"
    else:
        text = f"Slurm job {job_id} ended {state} with exit code {exit_code}{where}"
    if tail:
        text += f"\n--- last lines of {log} ---\n{tail}"
    return Ending(False, text, base in RETRY_STATES)


def log_files(job_dir: Path, job_id: str) -> tuple[Path, Path | None]:
    """Slurm's output file and the driver log of the job's latest start (a requeue makes
    ``<jobid>-<restart>-logs``); the driver log is None until ray.sub made its folder."""
    out = job_dir / f"slurm-{job_id}.out"
    folders = [p for p in job_dir.glob(f"{job_id}-*logs") if p.is_dir()]

    def restart(p: Path) -> int:
        middle = p.name[len(job_id) + 1 : -len("logs")].rstrip("-")
        return int(middle) if middle.isdigit() else -1

    if not folders:
        return out, None
    return out, max(folders, key=restart) / "ray-driver.log"
