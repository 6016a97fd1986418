"""NeMo RL integration: load NeMo RL recipes, run its scripts per trial, read their numbers.

Kept free of heavy imports so ``nemo_rl_sweep.trainers.nemo_rl.config`` can be imported on its own.
"""

from __future__ import annotations

from typing import Any

from nemo_rl_sweep.trainers import OnValidation, Trainer

__all__ = ["TRAINER", "NeMoRLTrainer"]


class NeMoRLTrainer(Trainer):
    """Launches one NeMo RL training script per trial (``runner.py``)."""

    name = "nemo_rl"

    def run(self, cfg: Any, on_validation: OnValidation | None = None) -> dict[str, float]:
        from nemo_rl_sweep.trainers.nemo_rl.runner import run_nemo_rl_trial

        return run_nemo_rl_trial(cfg, on_validation=on_validation)

    def check(self, trial_cfg: Any, metric: Any, direction: Any) -> None:
        """A missing checkout or script, a bad objective or an unresolvable interpolation would
        fail every trial, so they are refused before the first launch."""
        from nemo_rl_sweep.trainers.nemo_rl.runner import check_nemo_rl_trial

        check_nemo_rl_trial(trial_cfg, None, metric, direction)


TRAINER = NeMoRLTrainer()
