"""Run jobs through hydra-submitit-launcher, collecting each Slurm job on its own.

The launcher's own ``launch`` gathers results with ``[j.results()[0] for j in jobs]``: one job that
Slurm ended early (scancel, time limit, node failure, OOM kill) raises ``UncompletedJobError`` out of
``launch`` and the whole batch is lost, finished trials included. Here the batch is submitted the same
way (one job array, from the launcher's own parameters) but every job is collected separately, and a
dead job comes back as a FAILED ``JobReturn`` whose value names the job, its Slurm state and its log:
a failed trial, never a failed sweep. A task cancelled while still PENDING vanishes from both squeue
and sacct, and submitit would wait for it forever; one that squeue has not listed for
``vanished_after_s`` (default 60 s, or ``NEMO_RL_SWEEP_SLURM_VANISHED_AFTER_S``) is failed too.

``SubmititJobs`` submits jobs as the sweep's slots free (several at once as one job array, one alone
as a plain job) and sets a future per job when it ends, so the loop starts the next trial at once.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
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


class _Watch:
    """One submitted job: its ``JobReturn`` once it ended, a dead job as a FAILED one."""

    def __init__(
        self,
        job: Any,
        overrides: list[str],
        num: int,
        sweep_dir: Path,
        vanished_after_s: float | None,
    ) -> None:
        self.job = job
        self.overrides = overrides
        self.num = num
        self.sweep_dir = sweep_dir
        self.vanished_after_s = vanished_after_s
        self.missing_since: float | None = None

    def result(self) -> JobReturn | None:
        """``job.results()[0]`` once the job is done, else None; a job Slurm forgot is failed."""
        from submitit.core.utils import UncompletedJobError

        try:
            if not self.job.done():
                self._check_queued()
                return None
            return self.job.results()[0]
        except UncompletedJobError as exc:
            return JobReturn(
                overrides=self.overrides,
                working_dir=str(self.sweep_dir / str(self.num)),
                status=JobStatus.FAILED,
                _return_value=SlurmJobEnded(_reason(self.job, exc)),
            )

    def _check_queued(self) -> None:
        from submitit.core.utils import UncompletedJobError

        if self.vanished_after_s is None:  # not a Slurm job: submitit's local jobs cannot vanish
            return
        if _in_queue(self.job.job_id) is not False:
            self.missing_since = None
            return
        self.missing_since = self.missing_since or time.monotonic()
        if time.monotonic() - self.missing_since > self.vanished_after_s:
            raise UncompletedJobError(
                f"Job {self.job.job_id} is neither queued nor finished for "
                f"{self.vanished_after_s:.0f}s (cancelled while pending?)"
            )


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


def _vanished_after_s() -> float:
    return float(os.environ.get("NEMO_RL_SWEEP_SLURM_VANISHED_AFTER_S", "60"))


def _submit(
    launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int, vanished: float
) -> list[_Watch]:
    slurm = launcher._EXECUTOR == "slurm"
    """Submit the jobs as the launcher would (one job array for several); a watch per job."""
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
    return [
        _Watch(job, overrides, num, sweep_dir, vanished if slurm else None)
        for job, (overrides, _, num, _, _) in zip(jobs, args, strict=True)
    ]


class SubmititJobs:
    """Jobs submitted at once and watched by one background thread, each future set as its job ends.

    One thread polls every job in turn (submitit's Slurm watcher is shared by all jobs and not meant
    for concurrent callers); submitting and polling take turns through one lock.
    """

    def __init__(
        self, launcher: Any, poll_s: float = 5.0, vanished_after_s: float | None = None
    ) -> None:
        self.launcher = launcher
        self.poll_s = poll_s
        self.vanished_after_s = (
            _vanished_after_s() if vanished_after_s is None else vanished_after_s
        )
        self._lock = threading.Lock()
        self._watched: list[tuple[_Watch, Future[JobReturn]]] = []
        self._thread: threading.Thread | None = None

    def submit(
        self, job_overrides: Sequence[Sequence[str]], first_idx: int
    ) -> list[Future[JobReturn]]:
        with self._lock:
            watches = _submit(self.launcher, job_overrides, first_idx, self.vanished_after_s)
            futures: list[Future[JobReturn]] = [Future() for _ in watches]
            self._watched.extend(zip(watches, futures, strict=True))
            if self._thread is None:  # the watcher ends when it has nothing left to watch
                self._thread = threading.Thread(
                    target=self._watch, name="submitit-jobs", daemon=True
                )
                self._thread.start()
        return futures

    def stop(self) -> None:
        with self._lock:
            watched, self._watched = self._watched, []
        for watch, _ in watched:
            watch.job.cancel(check=False)

    def _watch(self) -> None:
        while True:
            with self._lock:
                if not self._watched:
                    self._thread = None
                    return
                still = []
                for watch, future in self._watched:
                    try:
                        ret = watch.result()
                    except Exception as exc:  # the loop records it as the trial's failure
                        future.set_exception(exc)
                        continue
                    if ret is None:
                        still.append((watch, future))
                    else:
                        future.set_result(ret)
                self._watched = still
            time.sleep(self.poll_s)
