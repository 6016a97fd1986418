"""Start one trial at a time through the Hydra launchers that allow it, so sweeps run asynchronously.

The loop (``nemo_rl_sweep.loop``) keeps ``n_jobs`` trials running when it is given ``JobSlots``: a
way to start jobs now and learn their outcome later. Which Hydra launcher can do that:

- hydra-submitit-launcher (Slurm or local): jobs are submitted through submitit as the launcher
  would, and watched one by one (``submitit_jobs.SubmititJobs``).
- the joblib launcher: each job is the joblib launcher's own ``execute_job`` in a loky worker
  process, one single-worker executor per slot (``JoblibProcesses``); ``submit`` returns loky's
  future at once, where ``Parallel`` would block until the whole batch is back, and a worker that
  dies takes only its own job with it.
- ``hydra/launcher=slurm_raysub`` (NeMo RL's ray.sub, one Slurm job per trial): its own runner,
  ``raysub_jobs.RaySubJobs``, which also takes over the jobs of a sweeper that died (``adopt``).
- the basic launcher runs jobs inside this process, one after another (changing the working folder,
  logging and Hydra's job config as it goes), so it cannot run two at once: it keeps batches, and the
  sweep's first lines say so. Any other launcher keeps batches too.

Hydra's global state (logging set-up, the ``Singleton`` state handed to jobs, the job index) is only
touched on the loop's thread, in ``start``; the background parts only wait for jobs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from nemo_rl_sweep.job import JobOutcome, TrialJob

log = logging.getLogger(__name__)

# the thread-count variables joblib's loky backend caps in its workers, so n trials share the cores
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class JobRunner(Protocol):
    """Starts Hydra jobs without waiting: one ``Future[JobReturn]`` per job."""

    def submit(self, job_overrides: Sequence[Sequence[str]], first_idx: int) -> list[Future[Any]]:
        """Start the jobs, numbered ``first_idx``, ``first_idx + 1``, ... (Hydra's job index)."""

    def stop(self) -> None:
        """End every job still running."""


class HydraSlots:
    """The loop's ``JobSlots`` on a ``JobRunner``: trial jobs in, ``JobOutcome`` futures out."""

    def __init__(
        self,
        runner: JobRunner,
        overrides_of: Callable[[Sequence[TrialJob]], list[list[str]]],
        outcome_of: Callable[[Any], JobOutcome],
        take_job_idx: Callable[[int], int],
    ) -> None:
        self.runner = runner
        self.overrides_of = overrides_of
        self.outcome_of = outcome_of
        self.take_job_idx = take_job_idx

    def start(self, jobs: Sequence[TrialJob]) -> list[Future[JobOutcome]]:
        batch = self.overrides_of(jobs)
        returns = self.runner.submit(batch, self.take_job_idx(len(batch)))
        return [_mapped(ret, self.outcome_of) for ret in returns]

    def stop(self) -> None:
        self.runner.stop()

    def adopt(self, jobs: Sequence[TrialJob]) -> list[Future[JobOutcome]] | None:
        """Watch again the running jobs of trials a dead sweeper started, where the runner can
        (the ray.sub trial mode: its jobs live on in Slurm); None where it cannot."""
        adopt = getattr(self.runner, "adopt", None)
        if adopt is None:
            return None
        return [_mapped(ret, self.outcome_of) for ret in adopt(self.overrides_of(jobs))]


def _mapped(source: Future[Any], fn: Callable[[Any], JobOutcome]) -> Future[JobOutcome]:
    """A future of ``fn(result)``; an error of ``source`` (or of ``fn``) becomes its error."""
    out: Future[JobOutcome] = Future()

    def done(f: Future[Any]) -> None:
        try:
            out.set_result(fn(f.result()))
        except BaseException as exc:  # the loop reads it as the trial's failure
            out.set_exception(exc)

    source.add_done_callback(done)
    return out


class JoblibProcesses:
    """Each job in a worker process of its own single-worker loky executor, started at once.

    One executor per slot, not one pool of ``n_workers``: when a worker dies (the kernel's OOM
    killer, a segfault in native code), loky breaks its whole executor and fails every job in it;
    here that is the one job of the dead worker, recorded as killed by its signal, and the slot
    gets a new executor for its next job. A healthy executor keeps its worker for the next job.
    """

    def __init__(self, launcher: Any, n_workers: int) -> None:
        self.launcher = launcher
        self.n_workers = n_workers
        self.slots: list[_Worker] = []
        self._logging_ready = False

    def submit(self, job_overrides: Sequence[Sequence[str]], first_idx: int) -> list[Future[Any]]:
        from hydra.core.singleton import Singleton
        from hydra.core.utils import configure_log, filter_overrides, setup_globals
        from hydra_plugins.hydra_joblib_launcher._core import execute_job

        launcher = self.launcher
        setup_globals()
        if not self._logging_ready:  # as the launcher does before each batch; once is enough here
            configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
            self._logging_ready = True
        threads = str(max((os.cpu_count() or 1) // self.n_workers, 1))
        env = {var: threads for var in _THREAD_VARS if var not in os.environ}
        state = Singleton.get_state()
        futures = []
        for offset, overrides in enumerate(job_overrides):
            idx = first_idx + offset
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            worker = self._free_worker(env)
            args = (idx, list(overrides), launcher.hydra_context, launcher.config)
            futures.append(worker.submit(execute_job, *args, launcher.task_function, state))
        return futures

    def _free_worker(self, env: dict[str, str]) -> _Worker:
        """The slot with the fewest jobs in hand (a capped ``hydra.launcher.n_jobs`` queues);
        a slot whose worker died gets a new executor."""
        if len(self.slots) < self.n_workers:
            self.slots.append(_Worker(env))
            return self.slots[-1]
        worker = min(self.slots, key=lambda w: w.pending())
        if worker.broken():
            worker.renew(env)
        return worker

    def stop(self) -> None:
        for worker in self.slots:
            worker.shutdown()


class _Worker:
    """One slot: a single-worker loky executor and the futures it holds."""

    def __init__(self, env: dict[str, str]) -> None:
        self.executor: Any = None
        self.futures: list[Future[Any]] = []
        self.renew(env)

    def renew(self, env: dict[str, str]) -> None:
        from joblib.externals.loky import ProcessPoolExecutor

        if self.executor is not None:
            self.executor.shutdown(wait=False, kill_workers=True)
        self.executor = ProcessPoolExecutor(max_workers=1, env=env)
        self.futures = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self.executor.submit(fn, *args)
        self.futures.append(future)
        return future

    def pending(self) -> int:
        self.futures = [f for f in self.futures if not f.done() or _died(f)]
        return sum(not f.done() for f in self.futures)

    def broken(self) -> bool:
        return any(f.done() and _died(f) for f in self.futures)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, kill_workers=True)


def _died(future: Future[Any]) -> bool:
    """The job's worker process died (loky's executor is broken from then on)."""
    from concurrent.futures.process import BrokenProcessPool

    return not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)


def runner_for(launcher: Any, n_jobs: int) -> tuple[JobRunner | None, str]:
    """A runner that starts one job at a time on ``launcher``, or None and why it keeps batches."""
    from hydra_plugins.nemo_rl_sweeper.raysub_launcher import RaySubLauncher
    from hydra_plugins.nemo_rl_sweeper.submitit_jobs import SubmititJobs, is_submitit

    if isinstance(launcher, RaySubLauncher):
        return launcher.jobs(), ""
    if is_submitit(launcher):
        return SubmititJobs(launcher), ""
    name = type(launcher).__name__
    if name == "JoblibLauncher":
        return JoblibProcesses(launcher, _joblib_workers(launcher, n_jobs)), ""
    if name == "BasicLauncher":
        return None, (
            "the basic launcher runs jobs one after another in this process; for trials side by "
            "side on this machine use hydra/launcher=joblib"
        )
    return None, f"{type(launcher).__module__}.{name} can only run batches"


def _joblib_workers(launcher: Any, n_jobs: int) -> int:
    """One process per slot; a positive ``hydra.launcher.n_jobs`` caps them as it caps a batch."""
    cap = launcher.joblib.get("n_jobs", -1)
    if isinstance(cap, int) and cap > 0 and cap < n_jobs:
        log.warning(
            f"hydra.launcher.n_jobs={cap} < hydra.sweeper.n_jobs={n_jobs}: "
            f"{n_jobs - cap} trial(s) at a time wait for a free joblib process"
        )
        return cap
    return n_jobs
