"""Run a batch through hydra-submitit-launcher, collecting each Slurm job on its own.

The launcher's own ``launch`` gathers results with ``[j.results()[0] for j in jobs]``: one job that
Slurm ended early (scancel, time limit, node failure, OOM kill) raises ``UncompletedJobError`` out of
``launch`` and the whole batch is lost, finished trials included. Here the batch is submitted the same
way (one job array, from the launcher's own parameters) but every job is collected separately, and a
dead job comes back as a FAILED ``JobReturn`` whose value names the job, its Slurm state and its log:
a failed trial, never a failed sweep. A task cancelled while still PENDING vanishes from both squeue
and sacct, and submitit would wait for it forever; one that squeue has not listed for
``vanished_after_s`` (default 60 s, or ``NEMO_RL_SWEEP_SLURM_VANISHED_AFTER_S``) is failed too.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class SlurmJobEnded(RuntimeError):
    """A trial's Slurm job ended without a result: cancelled, past its time limit, node lost."""


def explain(error: Any) -> Any:
    """submitit's handler inside a job raises on Slurm's time-limit warning; name the limit instead."""
    if type(error).__name__ == "UncompletedJobError" and "timed-out" in str(error):
        last = str(error).strip().splitlines()[-1].strip()
        return SlurmJobEnded(
            f"Slurm time limit reached (hydra.launcher.timeout_min); submitit: {last}"
        )
    return error


def is_submitit(launcher: Any) -> bool:
    """True for hydra-submitit-launcher's Slurm and local launchers (when it is installed)."""
    try:
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
    except ImportError:
        return False
    return isinstance(launcher, BaseSubmititLauncher)


def _executor(launcher: Any) -> Any:
    """The submitit executor for the launcher's params, named the way the launcher names them."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    kind = launcher._EXECUTOR
    params = dict(launcher.params)
    folder = params.pop("submitit_folder")
    init = {}
    if "max_num_timeout" in params:
        init[f"{kind}_max_num_timeout"] = params.pop("max_num_timeout")
    executor = submitit.AutoExecutor(folder=folder, cluster=kind, **init)
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{k if k in shared else f"{kind}_{k}": v for k, v in params.items()}
    )
    return executor


def _in_queue(job_id: str) -> bool | None:
    """Whether squeue lists the job (pending, running, completing...); None when it cannot tell."""
    try:
        proc = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.stdout.strip():
        return True
    if proc.returncode == 0 or "Invalid job id" in proc.stderr:
        return False
    return None  # slurmctld not reachable: no conclusion


def _wait(job: Any, poll_s: float, vanished_after_s: float) -> Any:
    """``job.results()[0]``, but a job Slurm has forgotten raises instead of waiting forever."""
    from submitit.core.utils import UncompletedJobError

    missing_since = None
    while not job.done():
        if _in_queue(job.job_id) is False:
            missing_since = missing_since or time.monotonic()
            if time.monotonic() - missing_since > vanished_after_s:
                raise UncompletedJobError(
                    f"Job {job.job_id} is neither queued nor finished for "
                    f"{vanished_after_s:.0f}s (cancelled while pending?)"
                )
        else:
            missing_since = None
        time.sleep(poll_s)
    return job.results()[0]


def _reason(job: Any, exc: BaseException) -> str:
    """One line for the ledger: which job, how Slurm ended it, where its log is."""
    text = str(exc)
    if "neither queued nor finished" in text:
        how = "left the queue without a result or an accounting record (cancelled while pending?)"
    else:
        how = f"ended {job.watcher.get_state(job.job_id, mode='force')} without a result"
        if "not requeued because" in text:  # submitit's own time-limit handler in the job
            how += " (" + text.strip().splitlines()[-1].strip() + ")"
    return f"Slurm job {job.job_id} {how}; log {job.paths.stderr}"


def launch_each(
    launcher: Any,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    poll_s: float = 5.0,
    vanished_after_s: float | None = None,
) -> list[JobReturn]:
    """Run a batch through a submitit launcher; one ``JobReturn`` per job, dead jobs as FAILED."""
    from submitit.core.utils import UncompletedJobError

    if vanished_after_s is None:
        vanished_after_s = float(os.environ.get("NEMO_RL_SWEEP_SLURM_VANISHED_AFTER_S", "60"))

    config = launcher.config
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in config.hydra.sweep:
        os.chmod(sweep_dir, int(str(config.hydra.sweep.mode), 8))
    args = []
    for offset, overrides in enumerate(job_overrides):
        num = initial_job_idx + offset
        log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
        args.append(
            (list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}", Singleton.get_state())
        )
    jobs = _executor(launcher).map_array(launcher, *zip(*args, strict=True))
    returns = []
    for job, (overrides, _, num, _, _) in zip(jobs, args, strict=True):
        try:
            returns.append(
                _wait(job, poll_s, vanished_after_s)
                if launcher._EXECUTOR == "slurm"
                else job.results()[0]
            )
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM on the sweeper: leave no orphan jobs behind
            for other in jobs:
                other.cancel(check=False)
            raise
        except UncompletedJobError as exc:
            returns.append(
                JobReturn(
                    overrides=overrides,
                    working_dir=str(sweep_dir / str(num)),
                    status=JobStatus.FAILED,
                    _return_value=SlurmJobEnded(_reason(job, exc)),
                )
            )
    return returns
