"""Submit each trial as one ``sbatch`` of ray.sub and watch all of them from one thread.

A trial's config is composed here as Hydra would for a job (``load_sweep_config``), its recipe
written to ``<trial folder>/config.yaml`` with its own logs and checkpoints (``runner.prepare_recipe``,
the folder claimed for the trial), and ``sbatch`` runs in the trial folder, which is ray.sub's
submit folder (``raysub.py``). One background thread then polls, every ``poll_s``: ``squeue`` once
for all jobs, ``sacct`` for a job that left the queue, and each running trial's TensorBoard files,
whose new validations go to the trial in the ledger (the pruner may answer ``stop``: the job is
cancelled and the trial pruned). A job that ended comes back as a Hydra ``JobReturn``: the run's
metrics, or a failure naming the Slurm state, the job and its log's last lines. ``NODE_FAIL``,
``PREEMPTED`` and ``BOOT_FAIL`` submit a new job for the same trial (``retries``), which resumes
from the trial's checkpoints; Slurm itself requeues a job in place (``--requeue``), which ray.sub
logs to ``<jobid>-<restart>-logs``.

The ledger keeps the trial's Slurm job id, node list, state and log paths, so a new sweeper on the
same study takes over the trials of one that died (``adopt``): a job still queued or running is
watched again, one that ended is read back from its files; nothing is submitted twice.

Unlike the other launchers' jobs, which write their intermediate values from their own process,
here the watcher thread writes them (and the ``slurm_*`` attributes), through its own storage
handle; the loop's thread still asks and tells every trial.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.nemo_rl_sweeper.submitit_jobs import SlurmJobEnded
from nemo_rl_sweep.trainers.nemo_rl import raysub

if TYPE_CHECKING:  # Hydra scans this module at start-up: optuna and the runner load when used
    from nemo_rl_sweep.trainers.nemo_rl.runner import Objective, ValidationProgress

log = logging.getLogger(__name__)

ATTR_NAME = "slurm_job_name"
ATTR_STATE = "slurm_state"
ATTR_NODES = "slurm_nodes"
ATTR_LOG = "slurm_log"
ATTR_DRIVER_LOG = "slurm_driver_log"
ATTR_EARLIER = "slurm_earlier_jobs"  # jobs of the trial before a retry, and how they ended
_VANISHED_S = 60.0  # a job neither in squeue nor in sacct this long is lost
_GONE_S = 5.0  # a job out of squeue this long (and one poll) has ended, not been requeued


class _Trial:
    """One trial on Slurm: how to (re)submit it, where its files are, its ledger handle."""

    def __init__(
        self,
        overrides: list[str],
        number: int,
        job_dir: Path,
        name: str,
        argv: list[str],
        env: dict[str, str],
        objective: Objective,
        tail_lines: int,
        handle: Any,
        progress: ValidationProgress,
        settings: raysub.RaySubSettings,
    ) -> None:
        from nemo_rl_sweep.job import trial_reporter

        self.overrides, self.number, self.job_dir, self.name = overrides, number, job_dir, name
        self.argv, self.env, self.objective, self.tail_lines = argv, env, objective, tail_lines
        self.handle = handle  # the trial's live ledger handle
        self.report = trial_reporter(handle, objective.tags[0])  # raises optuna.TrialPruned
        self.progress, self.settings = progress, settings
        self.future: Future[JobReturn] = Future()
        self.job_id, self.state = "", ""
        self.retries_left = settings.retries
        self.submitted = time.monotonic()
        self.started: float | None = None
        self.missing_since: float | None = None
        self.gone_since: float | None = None  # first seen out of squeue
        self.elapsed_s = 0.0


class RaySubJobs:
    """The jobs of one sweep: ``submit`` and ``adopt`` return a future per trial, ``stop`` cancels."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher
        self._lock = threading.Lock()
        self._watched: list[_Trial] = []
        self._thread: threading.Thread | None = None
        self._studies: dict[tuple[str, str], Any] = {}
        self._gres: bool | None = None

    # ------------------------------------------------------------------------------- settings

    def settings(self, trial_cfg: Any) -> raysub.RaySubSettings:
        checkout = OmegaConf.select(trial_cfg, "trainer.checkout", default=None)
        return raysub.RaySubSettings.from_cfg(
            self.launcher.params, Path(str(checkout)) if checkout else None
        )

    def check(self, trial_cfg: DictConfig, *, ask_slurm: bool) -> None:
        """The checks before any job; a dry run (``ask_slurm`` false) shows the submission."""
        from nemo_rl_sweep.trainers.nemo_rl.runner import RunnerSettings

        settings = self.settings(trial_cfg)
        settings.check_files()
        nodes, gpus = _cluster(trial_cfg)
        if ask_slurm:
            self._gres = raysub.check_with_slurm(settings, nodes, gpus, os.environ)
            return
        runner = RunnerSettings.from_cfg(trial_cfg.trainer, check_paths=False)
        config = Path("<trial folder>") / "config.yaml"
        command = raysub.driver_command(
            runner.checkout, runner.command, runner.script, config, runner.extra_args
        )
        argv = raysub.sbatch_argv(
            settings, "<study>-trial<N>", nodes, gpus, settings.gres != "never"
        )
        env = raysub.submit_env(settings, command, gpus, {})
        print(
            "[dry run] each trial is one sbatch of ray.sub, from its trial folder (Slurm not asked):"
        )
        print(
            "  "
            + " ".join(
                f"{k}={shlex.quote(env[k])}"
                for k in ("COMMAND", "CONTAINER", "MOUNTS", "GPUS_PER_NODE")
            )
        )
        print("  " + shlex.join(argv))

    # ------------------------------------------------------------------------------ the jobs

    def submit(
        self, job_overrides: Sequence[Sequence[str]], first_idx: int
    ) -> list[Future[JobReturn]]:
        out = []
        for overrides in job_overrides:
            log.info(f"\t#{first_idx + len(out)} : {' '.join(filter_overrides(overrides))}")
            try:
                trial = self._prepare(list(overrides), adopted=False)
                self._first_submit(trial)
            except Exception as exc:  # this trial fails; the sweep goes on
                out.append(_failed(overrides, None, exc))
                continue
            out.append(self._watch(trial))
        return out

    def adopt(self, job_overrides: Sequence[Sequence[str]]) -> list[Future[JobReturn]]:
        """Watch again the jobs of trials a dead sweeper submitted (ids from the ledger)."""
        out = []
        for overrides in job_overrides:
            try:
                trial = self._prepare(list(overrides), adopted=True)
            except Exception as exc:
                out.append(_failed(overrides, None, exc))
                continue
            out.append(self._watch(trial))
        return out

    def stop(self) -> None:
        """Ctrl-C or SIGTERM of the sweeper: cancel every job it watches."""
        with self._lock:
            watched, self._watched = self._watched, []
        ids = [t.job_id for t in watched if t.job_id]
        if ids:
            raysub.run_slurm(["scancel", *ids])
            print(f"[nemo_rl_sweep] cancelled Slurm job(s) {', '.join(ids)}", flush=True)

    # ------------------------------------------------------------------------------ preparing

    def _prepare(self, overrides: list[str], *, adopted: bool) -> _Trial:
        """Compose the trial's config as Hydra would for its job; its recipe, folder, handle."""
        from nemo_rl_sweep import ledger
        from nemo_rl_sweep.trainers.nemo_rl.envvars import job_environment
        from nemo_rl_sweep.trainers.nemo_rl.folder import TrialIdentity, claim_folder
        from nemo_rl_sweep.trainers.nemo_rl.runner import (
            RunnerSettings,
            ValidationProgress,
            prepare_recipe,
        )

        launcher = self.launcher
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
        sweeper = cfg.hydra.sweeper
        number, storage, study_name = (
            int(sweeper.trial_number),
            str(sweeper.storage),
            str(sweeper.study_name),
        )
        metric, direction = _plain(sweeper.metric), _plain(sweeper.direction)
        handle = self._handle(storage, study_name, number)
        if adopted:
            job_dir = Path(str(handle.user_attrs[ledger.ATTR_JOB_DIR]))
        else:
            sweep_dir = Path(str(launcher.config.hydra.sweep.dir)).absolute()
            job_dir = sweep_dir / str(cfg.hydra.sweep.subdir)
        with open_dict(cfg):
            cfg.pop("hydra", None)
        runner = RunnerSettings.from_cfg(cfg.trainer, metric, direction)
        settings = self.settings(cfg)
        identity = TrialIdentity(study_name, number, storage)
        recipe = prepare_recipe(cfg, job_dir, runner, identity)
        config_path = job_dir / "config.yaml"
        if not adopted:
            claim_folder(job_dir, identity)
            OmegaConf.save(recipe, config_path)
        with job_environment(runner.env):
            nodes, gpus = _cluster(recipe)
        if self._gres is None:  # launch() without the sweeper's check: ask Slurm now
            self._gres = raysub.check_with_slurm(settings, nodes, gpus, os.environ)
        command = raysub.driver_command(
            runner.checkout, runner.command, runner.script, config_path, runner.extra_args
        )
        trial = _Trial(
            overrides=overrides,
            number=number,
            job_dir=job_dir,
            name=raysub.job_name(study_name, number),
            argv=raysub.sbatch_argv(
                settings, raysub.job_name(study_name, number), nodes, gpus, self._gres
            ),
            env=raysub.submit_env(settings, command, gpus, {**os.environ, **(runner.env or {})}),
            objective=runner.objective,
            tail_lines=runner.log_tail_lines,
            handle=handle,
            progress=ValidationProgress(job_dir, runner.objective),
            settings=settings,
        )
        if adopted:
            trial.job_id = str(handle.user_attrs[ledger.ATTR_SLURM_JOB])
            (frozen,) = [t for t in handle.study.get_trials(deepcopy=False) if t.number == number]
            trial.progress.reported.update(frozen.intermediate_values)
            trial.retries_left = max(
                0, settings.retries - len(handle.user_attrs.get(ATTR_EARLIER, []))
            )
        return trial

    def _handle(self, storage: str, study_name: str, number: int) -> Any:
        """The trial's live ledger handle; one storage per ledger, one study object per trial
        (the pruner is set on the study, and a confirmation run has none)."""
        import optuna

        from nemo_rl_sweep import ledger

        key = (storage, study_name)
        if key not in self._studies:
            self._studies[key] = ledger.open_storage(storage)
        study = optuna.load_study(study_name=study_name, storage=self._studies[key])
        return ledger.trial_of(study, number)

    # ------------------------------------------------------------------------------ Slurm

    def _first_submit(self, trial: _Trial) -> None:
        from nemo_rl_sweep import ledger

        self._sbatch(trial)
        out, _ = raysub.log_files(trial.job_dir, trial.job_id)
        trial.handle.set_user_attr(ledger.ATTR_JOB_DIR, str(trial.job_dir))
        trial.handle.set_user_attr(ATTR_NAME, trial.name)
        trial.handle.set_user_attr(ATTR_LOG, str(out))
        trial.handle.set_user_attr(ledger.ATTR_SLURM_JOB, trial.job_id)

    def _sbatch(self, trial: _Trial) -> None:
        proc = raysub.run_slurm(trial.argv, cwd=trial.job_dir, env=trial.env)
        if proc.returncode != 0:
            raise SlurmJobEnded(
                f"sbatch refused the trial's job: {proc.stderr.strip() or proc.stdout.strip()} "
                f"({' '.join(trial.argv)})"
            )
        trial.job_id = proc.stdout.strip().split(";")[0]
        trial.submitted, trial.started, trial.state = time.monotonic(), None, "PENDING"
        print(
            f"[nemo_rl_sweep] trial {trial.number}: Slurm job {trial.job_id} ({trial.name}) "
            f"in {trial.job_dir}",
            flush=True,
        )

    def _watch(self, trial: _Trial) -> Future[JobReturn]:
        with self._lock:
            self._watched.append(trial)
            if self._thread is None:  # one thread for all trials; it ends with nothing to watch
                self._thread = threading.Thread(target=self._loop, name="raysub-jobs", daemon=True)
                self._thread.start()
        return trial.future

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._watched:
                    self._thread = None
                    return
                trials = list(self._watched)
            queue = _squeue([t.job_id for t in trials])
            ended = []
            for trial in trials:
                try:
                    result = self._poll(trial, queue)
                except BaseException as exc:  # the loop records it as the trial's failure
                    result = _failed(trial.overrides, trial.job_dir, exc)
                if result is not None:
                    ended.append((trial, result))
            with self._lock:
                for trial, _ in ended:
                    if trial in self._watched:
                        self._watched.remove(trial)
            for trial, result in ended:
                trial.future.set_result(result)
            if ended:
                continue
            time.sleep(min(t.settings.poll_s for t in trials))

    def _poll(self, trial: _Trial, queue: dict[str, tuple[str, str, str]] | None) -> Any:
        """None while the job lives; its ``JobReturn`` once it ended."""
        import optuna

        try:
            for step, metrics in trial.progress.new_validations():
                trial.report(step, metrics)
        except optuna.TrialPruned as pruned:
            raysub.run_slurm(["scancel", trial.job_id])
            self._note(trial, "CANCELLED (pruned)", None)
            return _failed(trial.overrides, trial.job_dir, pruned)
        if queue is None:
            return None  # Slurm did not answer: no conclusion this round
        if trial.job_id in queue:
            trial.missing_since = trial.gone_since = None
            return self._alive(trial, *queue[trial.job_id])
        now = time.monotonic()
        if trial.gone_since is None or now - trial.gone_since < max(_GONE_S, trial.settings.poll_s):
            # a job leaves squeue for a moment while Slurm requeues it, and sacct then shows
            # how its first run ended: an end counts once the job stayed out of the queue
            trial.gone_since = trial.gone_since or now
            return None
        record = _sacct(trial.job_id)
        if record is None or record[0].split()[0] in raysub.ALIVE_STATES:
            trial.missing_since = trial.missing_since or time.monotonic()
            if time.monotonic() - trial.missing_since < _VANISHED_S:
                return None
            # no accounting (or it lags): ray.sub's own exit marker in the job's output says how
            # it ended; without one the job is lost
            record = record or _from_log(raysub.log_files(trial.job_dir, trial.job_id)[0])
        return self._ended(trial, *record)

    def _alive(self, trial: _Trial, state: str, nodes: str, reason: str) -> Any:
        settings = trial.settings
        now = time.monotonic()
        if state != trial.state:
            if state == "PENDING":  # submitted, or back in the queue after a requeue
                trial.submitted = now
            self._note(trial, state, nodes)
        if state == "RUNNING" and trial.started is None:
            trial.started = now
        if state != "RUNNING":
            trial.started = None if state == "PENDING" else trial.started
        limit = settings.pending_timeout_min
        if state == "PENDING" and limit is not None and now - trial.submitted > 60 * limit:
            return self._cancel(
                trial, f"pending longer than {limit:g} min (pending_timeout_min; Slurm: {reason})"
            )
        limit = settings.wall_time_min
        if trial.started is not None and limit is not None and now - trial.started > 60 * limit:
            return self._cancel(trial, f"running longer than {limit:g} min (wall_time_min)")
        return None

    def _cancel(self, trial: _Trial, why: str) -> JobReturn:
        raysub.run_slurm(["scancel", trial.job_id])
        out, driver = raysub.log_files(trial.job_dir, trial.job_id)
        self._note(trial, "CANCELLED", None)
        return _failed(
            trial.overrides,
            trial.job_dir,
            SlurmJobEnded(f"Slurm job {trial.job_id} cancelled by the sweeper: {why}; log {out}"),
        )

    def _ended(self, trial: _Trial, state: str, exit_code: str, nodes: str, elapsed: str) -> Any:
        import optuna

        from nemo_rl_sweep.job import wrap_return
        from nemo_rl_sweep.trainers.nemo_rl.runner import NeMoRLRunError, read_final_metrics

        self._note(trial, state, nodes)
        trial.elapsed_s += float(elapsed) if elapsed.isdigit() else 0.0
        out, driver = raysub.log_files(trial.job_dir, trial.job_id)
        if driver is not None:
            trial.handle.set_user_attr(ATTR_DRIVER_LOG, str(driver))
        shown = driver if driver is not None and driver.is_file() else out
        try:  # the last validations before the end are intermediate values too
            for step, metrics in trial.progress.new_validations():
                trial.report(step, metrics)
        except optuna.TrialPruned:
            pass
        end = raysub.ending(
            trial.job_id,
            state,
            exit_code,
            shown,
            "" if state.startswith("COMPLETED") else _tail(shown, trial.tail_lines),
        )
        if end.ok:
            try:
                metrics = read_final_metrics(
                    trial.job_dir, trial.objective, shown, trial.tail_lines
                )
            except NeMoRLRunError as exc:
                return _failed(trial.overrides, trial.job_dir, exc)
            numbers = {**metrics, "duration_s": trial.elapsed_s, "slurm_job_id": trial.job_id}
            (trial.job_dir / "metrics.json").write_text(json.dumps(numbers, indent=2))
            return JobReturn(
                overrides=trial.overrides,
                working_dir=str(trial.job_dir),
                status=JobStatus.COMPLETED,
                _return_value=wrap_return(metrics, trial.elapsed_s),
            )
        if end.retry and trial.retries_left > 0:
            earlier = list(trial.handle.user_attrs.get(ATTR_EARLIER, []))
            trial.handle.set_user_attr(ATTR_EARLIER, [*earlier, f"{trial.job_id} {state}"])
            trial.retries_left -= 1
            self._first_submit(trial)
            return None
        return _failed(trial.overrides, trial.job_dir, SlurmJobEnded(end.reason))

    def _note(self, trial: _Trial, state: str, nodes: str | None) -> None:
        """The job's state and nodes in the ledger, as they change."""
        trial.state = state
        try:
            trial.handle.set_user_attr(ATTR_STATE, state)
            if nodes and nodes not in ("(null)", "None assigned"):
                trial.handle.set_user_attr(ATTR_NODES, nodes)
        except Exception as exc:  # a finished trial (told elsewhere) takes no more attributes
            log.debug(f"trial {trial.number}: {exc}")


def _cluster(cfg: Any) -> tuple[int, int]:
    """The recipe's ``cluster.num_nodes`` and ``cluster.gpus_per_node``."""
    nodes = OmegaConf.select(cfg, "cluster.num_nodes", default=1) or 1
    gpus = OmegaConf.select(cfg, "cluster.gpus_per_node", default=8) or 8
    return int(nodes), int(gpus)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _failed(overrides: Sequence[str], job_dir: Path | None, exc: BaseException) -> JobReturn:
    return JobReturn(
        overrides=list(overrides),
        working_dir=str(job_dir) if job_dir is not None else None,
        status=JobStatus.FAILED,
        _return_value=exc,
    )


def _squeue(job_ids: Sequence[str]) -> dict[str, tuple[str, str, str]] | None:
    """State, nodes and reason of the listed jobs still in the queue; None when Slurm did not
    answer."""
    ids = [j for j in job_ids if j]
    if not ids:
        return {}
    proc = raysub.run_slurm(["squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T|%N|%r"])
    if proc.returncode != 0:
        return {} if "Invalid job id" in proc.stderr else None
    out = {}
    for line in proc.stdout.splitlines():
        job, state, nodes, reason = (line.strip().split("|") + ["", "", ""])[:4]
        out[job] = (state, nodes, reason)
    return out


def _sacct(job_id: str) -> tuple[str, str, str, str] | None:
    """(State, ExitCode, NodeList, ElapsedRaw) of the job's latest run, or None."""
    proc = raysub.run_slurm(
        [
            "sacct",
            "-n",
            "-X",
            "-P",
            "-j",
            job_id,
            "-o",
            "JobIDRaw,State,ExitCode,NodeList,ElapsedRaw",
        ]
    )
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5 and parts[0] == job_id:
            return parts[1], parts[2], parts[3], parts[4]
    return None


def _from_log(out: Path) -> tuple[str, str, str, str]:
    """(State, ExitCode, NodeList, ElapsedRaw) from ray.sub's ``ray.sub exiting (exit_code=N)``
    line, for a job that neither squeue nor sacct knows."""
    import re

    try:
        found = re.findall(r"ray\.sub exiting \(exit_code=(\d+)\)", out.read_text(errors="replace"))
    except OSError:
        found = []
    if not found:
        return "LOST (in neither squeue nor sacct, no exit line in its log)", "-", "", "0"
    code = int(found[-1])
    return ("COMPLETED" if code == 0 else "FAILED"), f"{code}:0", "", "0"


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
