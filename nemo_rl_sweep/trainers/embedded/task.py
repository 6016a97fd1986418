"""The synthetic task: digit puzzles with a verifiable 0/1 reward.

Why a synthetic task: the embedded trainer must run anywhere in seconds with nothing downloaded, yet
behave like RL on a math dataset: a prompt, a short answer generated token by token, and a reward
that a checker computes (1 if the whole answer is right, else 0, like NeMo RL's math environment).

A prompt is ``prompt_length`` digits in ``[0, vocab_size)``; the answer is ``answer_length`` digits.
The one task kind (``data.task: reverse``): the answer is the prompt read backwards, cut to
``answer_length`` digits. An untrained policy is right with probability ``vocab_size **
-answer_length`` (1/64 with the recipe's 8 digits and 2-digit answers), so early groups hold few
right answers, as on a hard math set, and the learning rate, group size, temperature and KL
penalty decide whether GRPO takes off within the step budget.

Every possible prompt is enumerated once and split, with the data seed, into a held-out validation
set and a training pool, so validation measures generalisation to prompts never trained on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

TASKS = ("reverse",)


@dataclass(frozen=True)
class DigitTask:
    """A digit puzzle family; see the module docstring."""

    kind: str = "reverse"
    vocab_size: int = 8
    prompt_length: int = 4
    answer_length: int = 2

    def __post_init__(self) -> None:
        if self.kind not in TASKS:
            raise ValueError(f"data.task: unknown task {self.kind!r}; use one of {TASKS}")
        if self.vocab_size < 2 or self.prompt_length < 1 or self.answer_length < 1:
            raise ValueError("data: needs vocab_size >= 2, prompt_length >= 1, answer_length >= 1")
        if self.answer_length > self.prompt_length:
            raise ValueError("data.answer_length: must be <= data.prompt_length for task reverse")
        if self.vocab_size**self.prompt_length > 1_000_000:
            raise ValueError(
                "data: vocab_size ** prompt_length must be <= 1e6 (prompts are enumerated)"
            )

    def solve(self, prompts: torch.Tensor) -> torch.Tensor:
        """The correct answers, shape ``(n, answer_length)``, for prompts ``(n, prompt_length)``."""
        return prompts.flip(1)[:, : self.answer_length]

    def reward(self, prompts: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """The verifiable reward: 1.0 where the whole answer is right, else 0.0."""
        return (answers == self.solve(prompts)).all(dim=1).float()

    def all_prompts(self) -> torch.Tensor:
        """Every prompt of the family, in lexicographic order."""
        rows = itertools.product(range(self.vocab_size), repeat=self.prompt_length)
        return torch.tensor(list(rows), dtype=torch.long)

    def split(self, num_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(train_pool, val_set)``: a seeded, disjoint split of all prompts."""
        prompts = self.all_prompts()
        if not 0 < num_val < len(prompts):
            raise ValueError(
                f"grpo.max_val_samples: must be in [1, {len(prompts) - 1}] for this task "
                f"(it has {len(prompts)} prompts), got {num_val}"
            )
        order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed))
        return prompts[order[num_val:]], prompts[order[:num_val]]
