"""The embedded GRPO trainer: a small, real GRPO in torch that runs on a CPU in seconds.

It reads the same key paths as NeMo RL's GRPO (see ``conf/recipe/grpo_tiny.yaml``) and reports
NeMo RL's metric tags. ``train`` is imported lazily so that importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from nemo_rl_sweep.trainer.grpo import train

        return train
    raise AttributeError(name)
