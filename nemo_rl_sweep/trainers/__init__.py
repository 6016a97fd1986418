"""The trainers a trial can run, picked by the key ``trainer.name``.

A trainer runs one trial and returns its metrics, says which metrics it writes, and checks a trial
config before the sweep launches anything. The sweeper and the job only talk to this interface, so
a new trainer is one subpackage here plus its name in ``TRAINER_NAMES``. Each trainer's module is
imported when it is picked, so importing this package loads neither torch nor TensorBoard.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nemo_rl_sweep.errors import SweepConfigError

__all__ = ["TRAINER_NAMES", "FinishedTrial", "OnValidation", "Trainer", "get_trainer"]

TRAINER_NAMES: tuple[str, ...] = ("embedded", "nemo_rl")

OnValidation = Callable[[int, Mapping[str, float]], None]


@dataclass(frozen=True)
class FinishedTrial:
    """A finished trial as the sweeper's ledger knows it, for :meth:`Trainer.free_disk`."""

    job_dir: str
    study: str
    number: int
    storage: str
    best: bool  # among the best trials so far (the Pareto front for several objectives)


class Trainer:
    """What every trainer offers; a subclass sets ``name`` and implements ``run``."""

    name: str = ""
    # whether ``infeasible`` has rules: the sweeper screens each trial's config only then
    has_rules: bool = False

    def run(self, cfg: Any, on_validation: OnValidation | None = None) -> dict[str, float]:
        """Train once with the trial config ``cfg``; ``on_validation(step, metrics)`` may raise
        (``optuna.TrialPruned``) to stop the run, and the exception propagates."""
        raise NotImplementedError

    def metrics(self, cfg: Any) -> list[str] | None:
        """The metric names the trainer writes, as ``trainer.metrics`` lists them; None when the
        config does not list them (then any name is taken on trust)."""
        section = cfg.get("trainer") if isinstance(cfg, Mapping) else None
        listed = section.get("metrics") if isinstance(section, Mapping) else None
        return None if listed is None else [str(name) for name in listed]

    def check(
        self, trial_cfg: Any, metric: Any, direction: Any, trials_at_once: int | None = None
    ) -> None:
        """Refuse, with a :class:`SweepConfigError`, a trial config that could not run, before
        anything is launched. ``metric`` and ``direction`` are the sweep's; ``trials_at_once``
        is how many trials the launcher runs side by side on this node (None: on other nodes)."""

    def free_disk(self, cfg: Any, finished: Sequence[FinishedTrial]) -> int:
        """Delete what finished trials no longer need (as ``cfg`` asks); the bytes freed. The
        sweeper calls it between batches and at the end."""
        return 0

    def check_keys(self, cfg: Any, swept: Sequence[str]) -> None:
        """Refuse a swept key the run would never read (``cfg`` is the sweep's config)."""

    def default_objective(self, cfg: Any) -> tuple[str, str]:
        """The metric and direction a sweep optimises when the user names none."""
        return "validation/accuracy", "maximize"

    def default_search_space(self, cfg: Any, strategy: str) -> str:
        """The ``search_space`` option a preset's ``auto`` stands for with this trainer."""
        return "grpo_grid" if strategy == "grid" else "grpo"

    def infeasible(self, trial_cfg: Any) -> str | None:
        """The rule a trial config breaks, for a trial that would fail before giving a value: it
        is recorded as failed without being launched. None when it may run."""
        return None


def get_trainer(name: Any) -> Trainer:
    """The trainer ``trainer.name`` picks."""
    if name not in TRAINER_NAMES:
        raise SweepConfigError(
            "trainer.name", f"unknown trainer {name!r}", "use one of " + ", ".join(TRAINER_NAMES)
        )
    return importlib.import_module(f"{__name__}.{name}").TRAINER
