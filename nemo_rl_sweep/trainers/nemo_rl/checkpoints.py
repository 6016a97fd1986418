"""Disk: which finished trials keep their NeMo RL checkpoints (``trainer.checkpoints``).

An LLM checkpoint is tens of GB and NeMo RL keeps several per run, so a sweep of dozens of trials
fills a disk. ``keep`` leaves everything; ``best`` deletes the checkpoints of every finished trial
that is not the best so far once a completed trial exists (the best trials keep theirs, the
others are never resumed: a trial's folder is its own forever); ``none`` deletes every finished
trial's checkpoints. Only the ``step_N`` folders inside a trial's own ``checkpoints`` folder are
deleted, and only in a folder whose owner marker names that trial: logs, TensorBoard events,
configs and the ledger stay.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.trainers.nemo_rl.folder import TrialIdentity, owner_of

__all__ = ["MODES", "checkpoint_mode", "release"]

MODES = ("keep", "best", "none")
_STEP_DIR = re.compile(r"step_\d+")


def checkpoint_mode(value: Any) -> str:
    """``trainer.checkpoints`` checked; null means keep."""
    mode = "keep" if value is None else str(value)
    if mode not in MODES:
        raise SweepConfigError(
            "trainer.checkpoints", f"unknown mode {mode!r}", "use keep, best or none"
        )
    return mode


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def release(trials: Iterable[tuple[str, TrialIdentity]]) -> int:
    """Delete the checkpoints of each ``(job folder, trial)`` whose folder that trial owns;
    the bytes freed."""
    freed = 0
    for job_dir, identity in trials:
        folder = Path(job_dir)
        try:
            owner = owner_of(folder)
        except RuntimeError:
            continue  # an unreadable marker: not provably this trial's folder
        if owner != identity:
            continue  # not provably this trial's folder: leave it
        checkpoints = folder / "checkpoints"
        if not checkpoints.is_dir():
            continue
        for step in checkpoints.iterdir():
            if step.is_dir() and not step.is_symlink() and _STEP_DIR.fullmatch(step.name):
                freed += _size(step)
                shutil.rmtree(step)
    return freed
