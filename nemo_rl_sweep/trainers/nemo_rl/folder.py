"""One folder, and one set of external names, per trial, forever.

NeMo RL resumes from whatever checkpoint it finds in ``checkpointing.checkpoint_dir`` and appends
to whatever TensorBoard folder is in ``logger.log_dir``, so a trial started in another trial's
folder silently continues that trial and reports its numbers. The first run in a folder leaves a
marker naming its trial (``OWNER_FILE``); a run for another trial is refused there, and so is a
run in a folder holding logs or checkpoints nobody claimed. The same identity names the run in the
experiment trackers a recipe turns on (W&B, MLflow, SwanLab), and picks its own Ray temp folder.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = [
    "OWNER_FILE",
    "FolderTaken",
    "TrialIdentity",
    "claim_folder",
    "current_identity",
    "name_external_runs",
    "owner_of",
    "ray_temp_dir",
]

OWNER_FILE = "nemo_rl_sweep_trial.json"
# the folders of a NeMo RL run that a later run would resume from or append to
_RUN_FOLDERS = ("logs", "checkpoints")


class FolderTaken(RuntimeError):
    """The job folder holds another trial's run; starting here would resume or mix it."""


@dataclass(frozen=True)
class TrialIdentity:
    """Which trial a run is: ledger, study and trial number; all None for a run outside a sweep."""

    study: str | None = None
    trial: int | None = None
    storage: str | None = None

    def describe(self) -> str:
        if self.study is None:
            return "a run outside any sweep"
        return f"study {self.study!r} trial {self.trial} (ledger {self.storage})"

    def run_name(self) -> str | None:
        """The name external trackers show: unique in the study, readable in a list."""
        return None if self.study is None else f"{self.study}-trial{self.trial}"


def current_identity() -> TrialIdentity:
    """The running Hydra job's trial (from the ``hydra.sweeper`` keys ``nemo_rl_sweep.job``
    gives every job), or the identity of a run outside a sweep."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return TrialIdentity()
    sweeper = HydraConfig.get().sweeper
    number, study = sweeper.get("trial_number"), sweeper.get("study_name")
    if number is None or not study:
        return TrialIdentity()
    return TrialIdentity(str(study), int(number), str(sweeper.get("storage") or "") or None)


def owner_of(job_dir: Path) -> TrialIdentity | None:
    """The trial that first ran in ``job_dir``, or None when no run claimed it."""
    marker = Path(job_dir) / OWNER_FILE
    try:
        data = json.loads(marker.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FolderTaken(
            f"{marker} is unreadable ({exc}); remove it only if the folder is yours"
        ) from None
    return TrialIdentity(data.get("study"), data.get("trial"), data.get("storage"))


def claim_folder(job_dir: Path, identity: TrialIdentity) -> None:
    """Make ``job_dir`` this trial's folder, or raise :class:`FolderTaken` saying whose it is.

    The same trial may come back (a requeued job resumes its own checkpoints); any other trial,
    or a folder with logs or checkpoints but no marker, is refused.
    """
    job_dir = Path(job_dir)
    owner = owner_of(job_dir)
    if owner is not None:
        if owner != identity:
            raise FolderTaken(
                f"{job_dir} belongs to {owner.describe()}, not to {identity.describe()}: NeMo RL "
                "would resume that run's checkpoints and report its numbers; give this trial its "
                "own folder (hydra.sweep.dir / hydra.sweep.subdir)"
            )
        return
    used = [name for name in _RUN_FOLDERS if _non_empty(job_dir / name)]
    if used:
        raise FolderTaken(
            f"{job_dir} already holds {' and '.join(used)} of a run that is not "
            f"{identity.describe()}: NeMo RL would resume it; use an empty folder"
        )
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / OWNER_FILE).write_text(json.dumps(asdict(identity), indent=2) + "\n")


def _non_empty(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def name_external_runs(recipe: DictConfig, identity: TrialIdentity) -> None:
    """Give the trial's run its own name in every tracker the recipe turns on, and put all trials
    of a study in one W&B group; trackers that are off are left as they are."""
    name = identity.run_name()
    if name is None:
        return
    if _enabled(recipe, "logger.wandb_enabled"):
        OmegaConf.update(recipe, "logger.wandb.name", name, force_add=True)
        OmegaConf.update(recipe, "logger.wandb.group", identity.study, force_add=True)
    if _enabled(recipe, "logger.mlflow_enabled"):
        OmegaConf.update(recipe, "logger.mlflow.run_name", name, force_add=True)
    if _enabled(recipe, "logger.swanlab_enabled"):
        OmegaConf.update(recipe, "logger.swanlab.name", name, force_add=True)


def _enabled(recipe: DictConfig, key: str) -> bool:
    value: Any = OmegaConf.select(recipe, key, default=False, throw_on_missing=False)
    return value is True or str(value).lower() == "true"


def ray_temp_dir(job_dir: Path) -> Path:
    """A short temp folder of the trial's own (Ray's ``RAY_TMPDIR``).

    NeMo RL's ``init_ray`` first attaches to the cluster it finds through Ray's temp folder, and
    Ray's socket paths must stay under ~107 characters, so the folder is short (in the system temp
    folder) and derived from the job folder: one Ray instance per trial, never another trial's.
    """
    digest = hashlib.sha256(str(Path(job_dir).resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"nrs-ray-{digest}"
