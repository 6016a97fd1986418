"""GRPO, small and real: group sampling, group-relative advantages, clipped ratio, KL to a reference.

Why it exists: the default job of a sweep must run on a laptop in seconds, yet respond to the same
hyperparameters, under the same NeMo RL key paths, the way a real GRPO run does. One step:

1. take ``grpo.num_prompts_per_step`` training prompts and sample ``grpo.num_generations_per_prompt``
   answers for each at ``policy.generation.temperature`` (the behaviour policy's log-probs are kept);
2. score them with the task's verifiable 0/1 reward;
3. advantages relative to the group: reward minus the group mean (leave-one-out mean when
   ``grpo.use_leave_one_out_baseline``), divided by the group's standard deviation when
   ``grpo.normalize_rewards``;
4. split the rollouts into ``policy.train_global_batch_size`` mini-batches, one AdamW step each, on
   the token-level loss ``-min(r A, clip(r, 1 - ratio_clip_min, 1 + ratio_clip_max) A) + beta KL``
   with ``r`` the ratio to the behaviour policy and ``KL`` the chosen estimator (k3 by default) to the
   frozen reference (the initial policy), gradients clipped at ``policy.max_grad_norm``.

Validation every ``grpo.val_period`` steps answers the held-out prompts at
``policy.generation.val_temperature`` (0 = greedy, the recipe's default) and reports
``validation/accuracy``, the share of exactly right answers.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from nemo_rl_sweep.trainer.optim import AdamW, clip_grad_norm
from nemo_rl_sweep.trainer.policy import TinyPolicy
from nemo_rl_sweep.trainer.settings import GRPOSettings, to_plain
from nemo_rl_sweep.trainer.task import DigitTask

StepHook = Callable[[int, dict[str, float]], None]


def group_advantages(rewards: torch.Tensor, settings: GRPOSettings) -> torch.Tensor:
    """Per-sample advantages for rewards ``(num_prompts, num_generations)``."""
    g = rewards.shape[1]
    if settings.use_leave_one_out_baseline and g > 1:
        baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / (g - 1)
    else:
        baseline = rewards.mean(dim=1, keepdim=True)
    advantages = rewards - baseline
    if settings.normalize_rewards and g > 1:
        std = rewards.std(dim=1, keepdim=True)
        advantages = torch.where(std > 0, advantages / (std + 1e-6), torch.zeros_like(advantages))
    return advantages


def kl_to_reference(cur: torch.Tensor, ref: torch.Tensor, settings: GRPOSettings) -> torch.Tensor:
    """Per-token KL(pi || ref) estimate from sampled tokens (k1, k2 or k3, as in NeMo RL)."""
    log_ratio = ref - cur
    if settings.kl_input_clamp is not None:
        log_ratio = log_ratio.clamp(-settings.kl_input_clamp, settings.kl_input_clamp)
    if settings.kl_type == "k1":
        kl = -log_ratio
    elif settings.kl_type == "k2":
        kl = 0.5 * log_ratio**2
    else:
        kl = torch.exp(log_ratio) - log_ratio - 1
    if settings.kl_output_clamp is not None:
        kl = kl.clamp(-settings.kl_output_clamp, settings.kl_output_clamp)
    return kl


def clipped_policy_loss(
    cur: torch.Tensor, old: torch.Tensor, advantages: torch.Tensor, settings: GRPOSettings
) -> torch.Tensor:
    """Per-token PPO-style clipped surrogate (to minimise)."""
    ratio = torch.exp(cur - old)
    clipped = ratio.clamp(1 - settings.ratio_clip_min, 1 + settings.ratio_clip_max)
    adv = advantages.unsqueeze(-1)
    return -torch.minimum(ratio * adv, clipped * adv)


class _PromptStream:
    """Shuffled passes over the training pool, like NeMo RL's epoch-based dataloader."""

    def __init__(self, pool: torch.Tensor, generator: torch.Generator) -> None:
        self.pool, self.generator = pool, generator
        self.order, self.pos = torch.randperm(len(pool), generator=generator), 0

    def take(self, n: int) -> torch.Tensor:
        rows = []
        while n > 0:
            if self.pos == len(self.order):
                self.order, self.pos = torch.randperm(len(self.pool), generator=self.generator), 0
            k = min(n, len(self.order) - self.pos)
            rows.append(self.order[self.pos : self.pos + k])
            self.pos, n = self.pos + k, n - k
        return self.pool[torch.cat(rows)]


def validate(policy: TinyPolicy, task: DigitTask, val: torch.Tensor, temperature: float, gen):
    """Share of held-out prompts answered exactly right."""
    answers = policy.generate(val, temperature, gen)
    return float(task.reward(val, answers).mean())


def train(
    cfg: Mapping[str, Any],
    on_validation: StepHook | None = None,
    *,
    on_step: StepHook | None = None,
) -> dict[str, float]:
    """Run GRPO on the recipe ``cfg`` (NeMo RL key layout) and return its final metrics.

    ``on_validation(step, metrics)`` runs after every validation with that validation's metrics;
    whatever it raises (e.g. ``optuna.TrialPruned``) stops training and propagates. ``on_step(step,
    metrics)`` runs after every step with everything logged at that step (train, timing, and
    validation when it ran); the NeMo RL-layout script writes TensorBoard and checkpoints from it.
    Steps count from 1, as in NeMo RL; a validation before training (``grpo.val_at_start``) is step 0.

    Returns the last value of each logged metric, plus ``validation/best_accuracy``, the mean
    ``timing/train/total_step_time`` and ``train/total_tokens_generated`` (the run's cost).
    """
    settings = GRPOSettings.from_cfg(to_plain(cfg))
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    _set_deterministic(True)
    try:
        return _train(settings, on_validation, on_step)
    finally:
        torch.set_num_threads(threads)
        _set_deterministic(deterministic)


def _set_deterministic(on: bool) -> None:
    """``torch.use_deterministic_algorithms`` without its import of torch._inductor (~2 s).

    The public setter also configures the compiler stack, which this trainer never uses; the C
    switch it wraps is enough for eager CPU ops. Falls back to the public call if it moves.
    """
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # pragma: no cover - depends on the torch version
        torch.use_deterministic_algorithms(on)
    else:
        setter(on)


def _train(s: GRPOSettings, on_validation: StepHook | None, on_step: StepHook | None):
    task = DigitTask(s.task, s.vocab_size, s.prompt_length, s.answer_length)
    pool, val = task.split(s.max_val_samples, s.data_seed)
    torch.manual_seed(s.seed)
    policy = TinyPolicy(
        s.vocab_size, s.prompt_length, s.answer_length, s.hidden_size, s.num_hidden_layers
    )
    reference = copy.deepcopy(policy).requires_grad_(False)
    optimizer = AdamW(
        policy.parameters(), lr=s.lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay
    )
    gen = torch.Generator().manual_seed(s.seed + 1)
    val_gen = torch.Generator()
    prompts_stream = _PromptStream(pool, torch.Generator().manual_seed(s.seed + 2))
    group = s.num_generations_per_prompt
    tokens_per_step = s.num_prompts_per_step * group * s.answer_length
    last: dict[str, float] = {}
    step_times: list[float] = []
    best = -math.inf

    def run_validation(step: int) -> dict[str, float]:
        nonlocal best
        val_gen.manual_seed(s.seed + 3 + step)
        accuracy = validate(policy, task, val, s.val_temperature, val_gen)
        best = max(best, accuracy)
        metrics = {"validation/accuracy": accuracy, "validation/best_accuracy": best}
        last.update(metrics)
        if on_validation is not None:
            on_validation(step, dict(metrics))
        return metrics

    if s.val_at_start:
        metrics = run_validation(0)
        if on_step is not None:
            on_step(0, metrics)

    for step in range(1, s.max_num_steps + 1):
        start = time.perf_counter()
        prompts = prompts_stream.take(s.num_prompts_per_step).repeat_interleave(group, dim=0)
        answers = policy.generate(prompts, s.temperature, gen)
        rewards = task.reward(prompts, answers)
        advantages = group_advantages(rewards.view(-1, group), s).reshape(-1)
        with torch.no_grad():
            old = policy.token_logprobs(prompts, answers, s.temperature)
            ref = reference.token_logprobs(prompts, answers, s.temperature)
        losses, kls, grad_norms, clip_fracs = [], [], [], []
        for idx in torch.arange(len(prompts)).split(s.train_global_batch_size):
            cur = policy.token_logprobs(prompts[idx], answers[idx], s.temperature)
            pg = clipped_policy_loss(cur, old[idx], advantages[idx], s)
            kl = kl_to_reference(cur, ref[idx], s)
            loss = (pg + s.kl_penalty * kl).mean()
            optimizer.zero_grad()
            loss.backward()
            grad_norms.append(clip_grad_norm(policy.parameters(), s.max_grad_norm))
            optimizer.step()
            ratio = torch.exp(cur.detach() - old[idx])
            clipped = (ratio < 1 - s.ratio_clip_min) | (ratio > 1 + s.ratio_clip_max)
            losses.append(float(loss.detach()))
            kls.append(float(kl.detach().mean()))
            clip_fracs.append(float(clipped.float().mean()))
        step_time = time.perf_counter() - start
        step_times.append(step_time)
        metrics = {
            "train/loss": sum(losses) / len(losses),
            "train/reward": float(rewards.mean()),
            "train/kl_penalty": sum(kls) / len(kls),
            "train/grad_norm": sum(grad_norms) / len(grad_norms),
            "train/clip_fraction": sum(clip_fracs) / len(clip_fracs),
            "train/lr": s.lr,
            "train/tokens_generated": float(tokens_per_step),
            "timing/train/total_step_time": step_time,
        }
        if not all(math.isfinite(v) for v in metrics.values()):
            raise FloatingPointError(f"non-finite training metrics at step {step}: {metrics}")
        last.update(metrics)
        periodic = s.val_period > 0 and step % s.val_period == 0
        if periodic or (s.val_at_end and step == s.max_num_steps):
            metrics.update(run_validation(step))
        if on_step is not None:
            on_step(step, metrics)

    result = dict(last)
    result["timing/train/total_step_time"] = sum(step_times) / len(step_times)
    result["train/total_tokens_generated"] = float(tokens_per_step * s.max_num_steps)
    return result
