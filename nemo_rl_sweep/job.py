"""The sweeper-to-job contract, read by both sides: what a job gets and what it gives back.

The sweeper hands each job its trial's overrides plus ``job_overrides`` (storage URL, study name,
trial number), so the job talks to its ledger trial itself and pruning works the same under the
basic, joblib and Slurm launchers: the sweeper never has to reach into a running job. The job's
return value comes back through the launcher wrapped with its duration (``wrap_return``), and the
sweeper reads both (``unwrap_return``). This module stays light: jobs import it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Reporter = Callable[[int, Mapping[str, float]], None]

# the hydra.sweeper keys a job reads to reach its ledger trial (set for each job, not by users)
KEY_TRIAL_NUMBER = "trial_number"
KEY_STORAGE = "storage"
KEY_STUDY_NAME = "study_name"
_VALUE = "__nemo_rl_sweep_value__"
_DURATION = "duration_s"


@dataclass
class TrialJob:
    """One trial handed to the launcher: its ledger number and its Hydra overrides."""

    number: int
    overrides: list[str]


@dataclass
class JobOutcome:
    """What came back from one job: a return value, or the error (or its text) that ended it."""

    value: Any = None
    failure: BaseException | str | None = None
    job_dir: str | None = None
    duration_s: float | None = None


def job_overrides(trial_number: int, storage_url: str, study_name: str) -> list[str]:
    """The ``hydra.sweeper.*`` overrides that let a job find its ledger trial, and the job's
    folder name (``hydra.sweep.subdir``, see :func:`trial_subdir`)."""
    from nemo_rl_sweep.space import format_value

    return [
        f"hydra.sweeper.{KEY_TRIAL_NUMBER}={int(trial_number)}",
        f"hydra.sweeper.{KEY_STORAGE}={format_value(storage_url)}",
        f"hydra.sweeper.{KEY_STUDY_NAME}={format_value(study_name)}",
        f"hydra.sweep.subdir={format_value(trial_subdir(study_name, trial_number))}",
    ]


def trial_subdir(study_name: str, trial_number: int) -> str:
    """``<study>/trial_<N>``: the trial's folder inside the sweep folder.

    Hydra's default (``hydra.job.num``) restarts at 0 in every sweeper process, so a resumed or a
    second sweeper on the same sweep folder would put a new trial in an old trial's folder, where
    NeMo RL resumes the old trial's checkpoints. The trial number is unique in its study whatever
    process asked for it, and the study name keeps two studies in one sweep folder apart.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(study_name)).strip("._") or "study"
    return f"{safe}/trial_{int(trial_number)}"


def wrap_return(value: Any, duration_s: float) -> dict[str, Any]:
    """A job's return value with its duration, as the launcher carries it back to the sweeper."""
    return {_VALUE: value, _DURATION: duration_s}


def unwrap_return(raw: Any) -> tuple[Any, float | None]:
    """``(value, duration_s)`` of what a job returned; a value not wrapped has no duration."""
    if isinstance(raw, dict) and _VALUE in raw:
        return raw[_VALUE], raw.get(_DURATION)
    return raw, None


@dataclass(frozen=True)
class TrialLink:
    """Where a job's ledger trial is: storage URL, study name, trial number, the metric to report."""

    storage: str
    study_name: str
    trial_number: int
    metric: str

    def reporter(self) -> Reporter:
        """Reports ``metric`` at each validation and raises ``optuna.TrialPruned`` when told to stop."""
        from nemo_rl_sweep.ledger import open_trial

        return trial_reporter(
            open_trial(self.storage, self.study_name, self.trial_number), self.metric
        )


def trial_reporter(trial: Any, metric: str) -> Reporter:
    """``report(step, metrics)`` for a live ledger trial: ``metric`` becomes an intermediate value,
    and ``optuna.TrialPruned`` is raised when the sweep's pruner says stop. A job uses it through
    ``TrialLink``; the ray.sub trial mode, which watches jobs from the sweeper, directly."""
    import math

    import optuna

    from nemo_rl_sweep.ledger import ATTR_CONFIRMATION
    from nemo_rl_sweep.pruning import stored_pruner

    # the sweep's pruner, not the MedianPruner Optuna gives a study loaded without one; none
    # for a confirmation run, whose whole run is what it is there for
    confirming = bool(trial.user_attrs.get(ATTR_CONFIRMATION))
    trial.study.pruner = optuna.pruners.NopPruner() if confirming else stored_pruner(trial.study)

    def report(step: int, metrics: Mapping[str, float]) -> None:
        value = metrics.get(metric)
        if value is None or not math.isfinite(float(value)):
            return
        trial.report(float(value), int(step))
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} with {metric}={value:.6g}")

    return report


def link_from_hydra() -> TrialLink | None:
    """The ledger trial of the running Hydra job, or None outside a sweep (or for several objectives)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    sweeper = HydraConfig.get().sweeper
    number = sweeper.get(KEY_TRIAL_NUMBER)
    if number is None or not sweeper.get(KEY_STORAGE) or not sweeper.get(KEY_STUDY_NAME):
        return None
    metric = sweeper.get("metric")
    if not isinstance(metric, str):
        metric = list(metric)
        if len(metric) != 1:
            return None  # pruning is single-objective in Optuna
        metric = metric[0]
    return TrialLink(
        str(sweeper[KEY_STORAGE]), str(sweeper[KEY_STUDY_NAME]), int(number), str(metric)
    )


def run_training(cfg: Any, link: TrialLink | None = None) -> dict[str, float]:
    """Train once with ``cfg`` (the recipe plus a ``trainer`` section) and return its metrics."""
    from nemo_rl_sweep.trainers import get_trainer

    on_validation = link.reporter() if link is not None else None
    name = cfg.trainer.name if "trainer" in cfg else "embedded"
    return get_trainer(name).run(cfg, on_validation=on_validation)


@contextlib.contextmanager
def trial_deadline(seconds: float | None) -> Iterator[None]:
    """Stop the job's task after ``seconds`` (``hydra.sweeper.trial_timeout_s``) by raising
    ``TrialTimeout`` in it, which fails the trial with kind ``timeout``: a hung trial frees its
    slot instead of holding the sweep. A timer signal (SIGALRM) interrupts Python code and
    sleeps; a trainer's child processes are ended by the trainer on the way out. Only on the main
    thread of the job's process (where every launcher runs the task); elsewhere it does nothing."""
    import signal
    import threading

    from nemo_rl_sweep.objectives import TrialTimeout

    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise TrialTimeout(
            f"the trial ran past hydra.sweeper.trial_timeout_s={seconds:g} s and was stopped"
        )

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
