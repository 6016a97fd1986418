"""Run a batch through hydra-submitit-launcher, collecting each Slurm job on its own.

The launcher's own ``launch`` gathers results with ``[j.results()[0] for j in jobs]``: one job that
Slurm ended early (scancel, time limit, node failure, OOM kill) raises ``UncompletedJobError`` out of
``launch`` and the whole batch is lost, finished trials included. Here the batch is submitted the same
way (one job array, from the launcher's own parameters) but every job is collected separately, and a
dead job comes back as a FAILED ``JobReturn`` whose value names the job, its Slurm state and its log:
a failed trial, never a failed sweep.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class SlurmJobEnded(RuntimeError):
    """A trial's Slurm job ended without a result: cancelled, past its time limit, node lost."""


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


def launch_each(
    launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[JobReturn]:
    """Run a batch through a submitit launcher; one ``JobReturn`` per job, dead jobs as FAILED."""
    from submitit.core.utils import UncompletedJobError

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
            returns.append(job.results()[0])
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM on the sweeper: leave no orphan jobs behind
            for other in jobs:
                other.cancel(check=False)
            raise
        except UncompletedJobError as exc:
            state = job.watcher.get_state(job.job_id, mode="force")
            detail = str(exc).strip().splitlines()
            cause = next((line for line in detail if "not requeued because" in line), "")
            returns.append(
                JobReturn(
                    overrides=overrides,
                    working_dir=str(sweep_dir / str(num)),
                    status=JobStatus.FAILED,
                    _return_value=SlurmJobEnded(
                        f"Slurm job {job.job_id} ended {state} without a result"
                        + (f" ({cause.strip()})" if cause else "")
                        + f"; log {job.paths.stderr}"
                    ),
                )
            )
    return returns
