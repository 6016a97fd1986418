"""NeMo RL integration: load NeMo RL recipes, run its scripts per trial, read their numbers.

Kept free of heavy imports so ``nemo_rl_sweep.trainers.nemo_rl.config`` can be imported on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nemo_rl_sweep.trainers import FinishedTrial, OnValidation, Trainer

__all__ = ["TRAINER", "NeMoRLTrainer"]


class NeMoRLTrainer(Trainer):
    """Launches one NeMo RL training script per trial (``runner.py``)."""

    name = "nemo_rl"
    has_rules = True

    def run(self, cfg: Any, on_validation: OnValidation | None = None) -> dict[str, float]:
        from nemo_rl_sweep.trainers.nemo_rl.runner import run_nemo_rl_trial

        return run_nemo_rl_trial(cfg, on_validation=on_validation)

    def check(
        self, trial_cfg: Any, metric: Any, direction: Any, trials_at_once: int | None = None
    ) -> None:
        """A missing checkout or script, a bad objective, an unresolvable interpolation or more
        GPUs than the node has would fail every trial, so they are refused before the first
        launch."""
        from nemo_rl_sweep.trainers.nemo_rl.runner import check_nemo_rl_trial

        check_nemo_rl_trial(trial_cfg, None, metric, direction, trials_at_once=trials_at_once)

    def free_disk(self, cfg: Any, finished: Sequence[FinishedTrial]) -> int:
        """``trainer.checkpoints``: keep, best (only the best trials keep checkpoints, once a
        trial completed) or none."""
        from nemo_rl_sweep.trainers.nemo_rl.checkpoints import checkpoint_mode, release
        from nemo_rl_sweep.trainers.nemo_rl.folder import TrialIdentity

        section = cfg.get("trainer") or {}
        mode = checkpoint_mode(section.get("checkpoints"))
        if mode == "keep" or (mode == "best" and not any(t.best for t in finished)):
            return 0
        return release(
            (t.job_dir, TrialIdentity(t.study, t.number, t.storage))
            for t in finished
            if mode == "none" or not t.best
        )

    def check_keys(self, cfg: Any, swept: Sequence[str]) -> None:
        """A key only the recipe's inactive backend reads would make every trial the same run."""
        from nemo_rl_sweep.trainers.nemo_rl.recipe import check_backend_keys

        check_backend_keys(cfg, swept)

    def metrics(self, cfg: Any) -> list[str] | None:
        """``trainer.metrics`` when listed, else the tags the recipe's algorithm writes."""
        from nemo_rl_sweep.trainers.nemo_rl.recipe import written_metrics

        listed = super().metrics(cfg)
        return listed if listed is not None else written_metrics(cfg)

    def default_objective(self, cfg: Any) -> tuple[str, str]:
        """GRPO: validation/accuracy max; SFT: validation/val_loss min; DPO: the first validation
        set's loss, min."""
        from nemo_rl_sweep.trainers.nemo_rl.recipe import default_objective

        return default_objective(cfg)

    def default_search_space(self, cfg: Any, strategy: str) -> str:
        """The LLM space of the recipe's algorithm, at its active backend's keys."""
        from nemo_rl_sweep.trainers.nemo_rl.recipe import default_search_space

        return default_search_space(cfg, strategy)

    def infeasible(self, trial_cfg: Any) -> str | None:
        from nemo_rl_sweep.trainers.nemo_rl.invariants import broken_rule

        return broken_rule(trial_cfg)


TRAINER = NeMoRLTrainer()
