"""The policy: a tiny autoregressive network over digit tokens.

Why this shape: GRPO needs per-token log-probabilities of sampled answers under the current, the
old (behaviour) and a frozen reference policy, and answers generated token by token. A small MLP
that sees the one-hot prompt, the one-hot answer prefix and the position gives all of that in a few
microseconds per batch on a CPU, with enough capacity to learn the task and to over-fit or collapse
when the optimiser is pushed too hard.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TinyPolicy(nn.Module):
    """``logits(prompts, answers)`` -> ``(n, answer_length, vocab_size)``, teacher forced.

    Position j sees the prompt and answer tokens ``< j`` only (a causal mask), so the same call
    serves generation (one position at a time) and training (all positions at once).
    """

    def __init__(
        self,
        vocab_size: int,
        prompt_length: int,
        answer_length: int,
        hidden_size: int = 64,
        num_hidden_layers: int = 1,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.prompt_length = prompt_length
        self.answer_length = answer_length
        in_dim = (prompt_length + answer_length) * vocab_size + answer_length
        layers: list[nn.Module] = []
        for _ in range(num_hidden_layers):
            layers += [nn.Linear(in_dim, hidden_size), nn.Tanh()]
            in_dim = hidden_size
        layers.append(nn.Linear(in_dim, vocab_size))
        self.net = nn.Sequential(*layers)
        causal = torch.tril(torch.ones(answer_length, answer_length), diagonal=-1)
        self.register_buffer("causal", causal.repeat_interleave(vocab_size, dim=1), False)
        self.register_buffer("positions", torch.eye(answer_length), persistent=False)

    def logits(self, prompts: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        n, length = prompts.shape[0], self.answer_length
        v = self.vocab_size
        prompt_1h = F.one_hot(prompts, v).float().reshape(n, 1, -1).expand(n, length, -1)
        answer_1h = F.one_hot(answers, v).float().reshape(n, 1, -1) * self.causal
        pos = self.positions.expand(n, length, length)
        return self.net(torch.cat([prompt_1h, answer_1h, pos], dim=-1))

    def token_logprobs(
        self, prompts: torch.Tensor, answers: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        """Log-probabilities ``(n, answer_length)`` of ``answers`` at the sampling temperature.

        As in NeMo RL, training log-probs use the logits divided by the generation temperature, so
        the ratio to the behaviour policy compares like with like.
        """
        logits = self.logits(prompts, answers) / max(temperature, 1e-6)
        return torch.log_softmax(logits, dim=-1).gather(-1, answers.unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def generate(
        self, prompts: torch.Tensor, temperature: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Answers ``(n, answer_length)``, token by token; ``temperature == 0`` is greedy."""
        answers = torch.zeros(prompts.shape[0], self.answer_length, dtype=torch.long)
        for j in range(self.answer_length):
            step_logits = self.logits(prompts, answers)[:, j]
            if temperature <= 0:
                answers[:, j] = step_logits.argmax(dim=-1)
            else:
                probs = torch.softmax(step_logits / temperature, dim=-1)
                answers[:, j] = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return answers
