"""``hydra/launcher=slurm_raysub``: each trial is one ``sbatch`` of NeMo RL's ``ray.sub``.

The sweeper and this launcher stay on the login node; a trial's training runs in its own Slurm
job over ``cluster.num_nodes`` nodes (``ray.sub`` starts Ray there and runs the NeMo RL script on
the trial's ``config.yaml``). All trials are watched by one thread of this process
(``raysub_jobs.RaySubJobs``), so 32 trials on Slurm cost one process here. The sweeper uses the
jobs one at a time (``slots.runner_for``); ``launch`` (a whole batch, waited for) exists for
Hydra's contract. The module Hydra scans at start-up imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class RaySubLauncher(Launcher):
    """Its parameters are the keys of ``conf/hydra/launcher/slurm_raysub.yaml``."""

    def __init__(self, **params: Any) -> None:
        self.params = {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
            for k, v in params.items()
        }
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self._jobs: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context

    def jobs(self) -> Any:
        """The runner that submits and watches this sweep's ray.sub jobs (one per launcher)."""
        if self._jobs is None:
            from hydra_plugins.nemo_rl_sweeper.raysub_jobs import RaySubJobs

            self._jobs = RaySubJobs(self)
        return self._jobs

    def check_trial(self, trial_cfg: DictConfig, *, ask_slurm: bool) -> None:
        """Refuse, before any job: no ray.sub, no container, nodes or GPUs no partition offers,
        a submission Slurm rejects (``ask_slurm``: not in a dry run, which leaves Slurm alone)."""
        self.jobs().check(trial_cfg, ask_slurm=ask_slurm)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        jobs = self.jobs()
        futures = jobs.submit(job_overrides, initial_job_idx)
        try:
            return [f.result() for f in futures]
        except KeyboardInterrupt:
            jobs.stop()
            raise
