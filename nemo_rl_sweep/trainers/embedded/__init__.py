"""The embedded GRPO trainer: a small, real GRPO in torch that runs on a CPU in seconds.

It reads the same key paths as NeMo RL's GRPO (see ``conf/recipe/grpo_tiny.yaml``) and reports
NeMo RL's metric tags. ``train`` is imported lazily so that importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any

from nemo_rl_sweep.trainers import OnValidation, Trainer

__all__ = ["TRAINER", "EmbeddedTrainer", "train"]


class EmbeddedTrainer(Trainer):
    """Trains in the job's own process.

    Its check accepts every trial config: a bad value fails its own trial with the key named (see
    ``settings.py``), and a search space may reach such values for some trials only.
    """

    name = "embedded"

    def run(self, cfg: Any, on_validation: OnValidation | None = None) -> dict[str, float]:
        from nemo_rl_sweep.trainers.embedded.grpo import train

        return train(cfg, on_validation=on_validation)


TRAINER = EmbeddedTrainer()


def __getattr__(name: str) -> Any:
    if name == "train":
        from nemo_rl_sweep.trainers.embedded.grpo import train

        return train
    raise AttributeError(name)
