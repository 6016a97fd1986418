"""One trial's job: train with the trial's config, reporting each validation to the ledger.

The job talks to the ledger itself (through the storage URL, study name and trial number the sweeper
put into its config), so pruning works the same under the basic, joblib and Slurm launchers: the
sweeper never has to reach into a running job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Reporter = Callable[[int, Mapping[str, float]], None]


@dataclass(frozen=True)
class TrialLink:
    """Where a job's ledger trial is: storage URL, study name, trial number, the metric to report."""

    storage: str
    study_name: str
    trial_number: int
    metric: str

    def reporter(self) -> Reporter:
        """Reports ``metric`` at each validation and raises ``optuna.TrialPruned`` when told to stop."""
        import math

        import optuna

        from nemo_rl_sweep.ledger import open_trial

        trial = open_trial(self.storage, self.study_name, self.trial_number)

        def report(step: int, metrics: Mapping[str, float]) -> None:
            value = metrics.get(self.metric)
            if value is None or not math.isfinite(float(value)):
                return
            trial.report(float(value), int(step))
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} with {self.metric}={value:.6g}")

        return report


def link_from_hydra() -> TrialLink | None:
    """The ledger trial of the running Hydra job, or None outside a sweep (or for several objectives)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    sweeper = HydraConfig.get().sweeper
    number = sweeper.get("trial_number")
    if number is None or not sweeper.get("storage") or not sweeper.get("study_name"):
        return None
    metric = sweeper.get("metric")
    if not isinstance(metric, str):
        metric = list(metric)
        if len(metric) != 1:
            return None  # pruning is single-objective in Optuna
        metric = metric[0]
    return TrialLink(str(sweeper.storage), str(sweeper.study_name), int(number), str(metric))


def run_training(cfg: Any, link: TrialLink | None = None) -> dict[str, float]:
    """Train once with ``cfg`` (the recipe plus a ``trainer`` section) and return its metrics."""
    from nemo_rl_sweep.trainers import get_trainer

    on_validation = link.reporter() if link is not None else None
    name = cfg.trainer.name if "trainer" in cfg else "embedded"
    return get_trainer(name).run(cfg, on_validation=on_validation)
