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

from nemo_rl_sweep.trainers.embedded.optim import AdamW, clip_grad_norm
from nemo_rl_sweep.trainers.embedded.policy import TinyPolicy
from nemo_rl_sweep.trainers.embedded.settings import GRPOSettings, to_plain
from nemo_rl_sweep.trainers.embedded.task import DigitTask

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

    def __init__(self, pool: torch.Tensor, seed: int) -> None:
        self.pool = pool
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.pos = torch.randperm(len(pool), generator=self.generator), 0

    def take(self, n: int) -> torch.Tensor:
        rows = []
        while n > 0:
            if self.pos == len(self.order):
                self.order, self.pos = torch.randperm(len(self.pool), generator=self.generator), 0
            k = min(n, len(self.order) - self.pos)
            rows.append(self.order[self.pos : self.pos + k])
            self.pos, n = self.pos + k, n - k
        return self.pool[torch.cat(rows)]

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order, "pos": self.pos, "rng": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.order, self.pos = state["order"], int(state["pos"])
        self.generator.set_state(state["rng"])


class GRPORun:
    """One GRPO run's whole state: policy, frozen reference, optimizer, data and sampling streams.

    ``state_dict``/``load_state_dict`` cover everything that decides the numbers, so a run resumed
    from a checkpoint continues exactly as the uninterrupted run would have.
    """

    def __init__(self, settings: GRPOSettings) -> None:
        s = self.settings = settings
        self.task = DigitTask(s.task, s.vocab_size, s.prompt_length, s.answer_length)
        pool, self.val_prompts = self.task.split(s.max_val_samples, s.data_seed)
        torch.manual_seed(s.seed)
        self.policy = TinyPolicy(
            s.vocab_size, s.prompt_length, s.answer_length, s.hidden_size, s.num_hidden_layers
        )
        self.reference = copy.deepcopy(self.policy).requires_grad_(False)
        self.optimizer = AdamW(
            self.policy.parameters(), s.lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay
        )
        self.sampling = torch.Generator().manual_seed(s.seed + 1)
        self.prompts = _PromptStream(pool, s.seed + 2)
        self.step = 0
        self.best_accuracy = -math.inf
        self.last: dict[str, float] = {}
        self.step_times: list[float] = []
        self.tokens_per_step = (
            s.num_prompts_per_step * s.num_generations_per_prompt * s.answer_length
        )

    def validate(self) -> dict[str, float]:
        """Accuracy on the held-out prompts at ``val_temperature`` (0 = greedy)."""
        s = self.settings
        gen = torch.Generator().manual_seed(s.seed + 3 + self.step)
        answers = self.policy.generate(self.val_prompts, s.val_temperature, gen)
        accuracy = float(self.task.reward(self.val_prompts, answers).mean())
        self.best_accuracy = max(self.best_accuracy, accuracy)
        metrics = {"validation/accuracy": accuracy, "validation/best_accuracy": self.best_accuracy}
        self.last.update(metrics)
        return metrics

    def train_step(self) -> dict[str, float]:
        """One GRPO step (generation, reward, advantages, mini-batch updates); its metrics."""
        s, policy, group = self.settings, self.policy, self.settings.num_generations_per_prompt
        start = time.perf_counter()
        self.step += 1
        prompts = self.prompts.take(s.num_prompts_per_step).repeat_interleave(group, dim=0)
        answers = policy.generate(prompts, s.temperature, self.sampling)
        rewards = self.task.reward(prompts, answers)
        advantages = group_advantages(rewards.view(-1, group), s).reshape(-1)
        with torch.no_grad():
            old = policy.token_logprobs(prompts, answers, s.temperature)
            ref = self.reference.token_logprobs(prompts, answers, s.temperature)
        losses, kls, grad_norms, clip_fracs = [], [], [], []
        for idx in torch.arange(len(prompts)).split(s.train_global_batch_size):
            cur = policy.token_logprobs(prompts[idx], answers[idx], s.temperature)
            pg = clipped_policy_loss(cur, old[idx], advantages[idx], s)
            kl = kl_to_reference(cur, ref[idx], s)
            loss = (pg + s.kl_penalty * kl).mean()
            self.optimizer.zero_grad()
            loss.backward()
            grad_norms.append(clip_grad_norm(policy.parameters(), s.max_grad_norm))
            self.optimizer.step()
            ratio = torch.exp(cur.detach() - old[idx])
            clipped = (ratio < 1 - s.ratio_clip_min) | (ratio > 1 + s.ratio_clip_max)
            losses.append(float(loss.detach()))
            kls.append(float(kl.detach().mean()))
            clip_fracs.append(float(clipped.float().mean()))
        step_time = time.perf_counter() - start
        self.step_times.append(step_time)
        metrics = {
            "train/loss": sum(losses) / len(losses),
            "train/reward": float(rewards.mean()),
            "train/kl_penalty": sum(kls) / len(kls),
            "train/grad_norm": sum(grad_norms) / len(grad_norms),
            "train/clip_fraction": sum(clip_fracs) / len(clip_fracs),
            "train/lr": s.lr,
            "train/tokens_generated": float(self.tokens_per_step),
            "train/total_tokens_generated": float(self.tokens_per_step * self.step),
            "timing/train/total_step_time": step_time,
        }
        if not all(math.isfinite(v) for v in metrics.values()):
            raise FloatingPointError(f"non-finite training metrics at step {self.step}: {metrics}")
        self.last.update(metrics)
        return metrics

    def summary(self) -> dict[str, float]:
        """The run's result: last value of every metric, with the mean step time."""
        result = dict(self.last)
        if self.step_times:
            result["timing/train/total_step_time"] = sum(self.step_times) / len(self.step_times)
        return result

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampling_rng": self.sampling.get_state(),
            "prompts": self.prompts.state_dict(),
            "best_accuracy": self.best_accuracy,
            "last": dict(self.last),
            "step_times": list(self.step_times),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step = int(state["step"])
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampling.set_state(state["sampling_rng"])
        self.prompts.load_state_dict(state["prompts"])
        self.best_accuracy = float(state["best_accuracy"])
        self.last = dict(state["last"])
        self.step_times = list(state["step_times"])


def train(
    cfg: Mapping[str, Any],
    on_validation: StepHook | None = None,
    *,
    on_step: Callable[[int, dict[str, float], GRPORun], None] | None = None,
    resume_from: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Run GRPO on the recipe ``cfg`` (NeMo RL key layout) and return its final metrics.

    ``on_validation(step, metrics)`` runs after every validation with that validation's metrics;
    whatever it raises (e.g. ``optuna.TrialPruned``) stops training and propagates. Steps count
    from 1, as in NeMo RL; a validation before training (``grpo.val_at_start``) is step 0.

    For the NeMo RL-layout script: ``on_step(step, metrics, run)`` runs after every step with
    everything logged at that step (train, timing, and validation when it ran) and the
    :class:`GRPORun` (for checkpoints); ``resume_from`` is a ``GRPORun.state_dict()`` to continue.

    Returns the last value of each logged metric (so ``validation/accuracy`` is the last
    validation's, ``validation/best_accuracy`` the best so far, ``train/tokens_generated`` the
    rollout tokens per step and ``train/total_tokens_generated`` the run's, a deterministic cost),
    except ``timing/train/total_step_time``, which is the mean over the steps.
    """
    settings = GRPOSettings.from_cfg(to_plain(cfg))
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    _set_deterministic(True)
    try:
        run = GRPORun(settings)
        if resume_from is not None:
            run.load_state_dict(resume_from)
        return _loop(run, on_validation, on_step)
    finally:
        torch.set_num_threads(threads)
        _set_deterministic(deterministic)


def _loop(run: GRPORun, on_validation, on_step) -> dict[str, float]:
    s = run.settings

    def validate() -> dict[str, float]:
        metrics = run.validate()
        if on_validation is not None:
            on_validation(run.step, dict(metrics))
        return metrics

    if s.val_at_start and run.step == 0:
        metrics = validate()
        if on_step is not None:
            on_step(0, metrics, run)
    while run.step < s.max_num_steps:
        metrics = run.train_step()
        periodic = s.val_period > 0 and run.step % s.val_period == 0
        if periodic or (s.val_at_end and run.step == s.max_num_steps):
            metrics.update(validate())
        if on_step is not None:
            on_step(run.step, metrics, run)
    return run.summary()


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
