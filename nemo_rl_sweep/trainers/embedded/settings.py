"""Read the NeMo RL GRPO keys the embedded trainer uses, once, into a typed record.

Why one place: a sweep changes these keys by their NeMo RL paths (``policy.optimizer.kwargs.lr``,
``grpo.num_generations_per_prompt``, ...). Reading them all here, with one clear error for a missing
key or a bad value, makes a broken trial fail at once with a message that names the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_MISSING = object()

# model_name -> default sizes; ``policy.hf_config_overrides`` may change them.
MODELS: dict[str, dict[str, int]] = {
    "embedded-tiny": {"hidden_size": 64, "num_hidden_layers": 1},
    "embedded-small": {"hidden_size": 128, "num_hidden_layers": 2},
}


SECTIONS = ("grpo", "loss_fn", "policy", "data")


def to_plain(cfg: Any) -> dict[str, Any]:
    """A plain, resolved dict of the sections the trainer reads (``SECTIONS``).

    Only those sections are resolved, so an interpolation elsewhere in a larger config (the
    Hydra app's ``trainer`` or ``hydra`` nodes) can neither fail nor slow a run.
    """
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with hydra-core
        DictConfig = ()  # type: ignore[assignment]
    if not isinstance(cfg, Mapping):
        raise TypeError(f"cfg must be a mapping (the GRPO recipe), got {type(cfg).__name__}")
    plain: dict[str, Any] = {}
    for section in SECTIONS:
        if section not in cfg:
            continue
        node = cfg[section]
        if DictConfig and isinstance(node, DictConfig):
            plain[section] = OmegaConf.to_container(node, resolve=True)
        else:
            plain[section] = _copy(node)
    return plain


def _copy(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_copy(v) for v in node]
    return node


def get(cfg: Mapping[str, Any], path: str, default: Any = _MISSING) -> Any:
    """The value at dotted ``path``; a missing key without default raises a KeyError naming it."""
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is _MISSING:
                raise KeyError(f"{path}: missing from the GRPO recipe; add it (see grpo_tiny.yaml)")
            return default
        node = node[part]
    return node


def _number(cfg: Mapping[str, Any], path: str, kind: type, low: float, default: Any = _MISSING):
    value = get(cfg, path, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: expected a {kind.__name__}, got {value!r}") from None
    if kind is int and number != value and not isinstance(value, str):
        raise ValueError(f"{path}: expected an integer, got {value!r}")
    if not math.isfinite(number) or number < low:
        raise ValueError(f"{path}: must be a finite number >= {low}, got {value!r}")
    return number


@dataclass(frozen=True)
class GRPOSettings:
    """Everything the trainer reads from the recipe (NeMo RL key paths in the comments)."""

    seed: int  # grpo.seed
    num_prompts_per_step: int  # grpo.num_prompts_per_step
    num_generations_per_prompt: int  # grpo.num_generations_per_prompt
    max_num_steps: int  # grpo.max_num_steps
    val_period: int  # grpo.val_period (0 = never periodically)
    val_at_start: bool  # grpo.val_at_start
    val_at_end: bool  # grpo.val_at_end
    max_val_samples: int  # grpo.max_val_samples (held-out prompts)
    normalize_rewards: bool  # grpo.normalize_rewards
    use_leave_one_out_baseline: bool  # grpo.use_leave_one_out_baseline
    kl_penalty: float  # loss_fn.reference_policy_kl_penalty
    kl_type: str  # loss_fn.reference_policy_kl_type (k1, k2, k3)
    kl_input_clamp: float | None  # loss_fn.kl_input_clamp_value
    kl_output_clamp: float | None  # loss_fn.kl_output_clamp_value
    ratio_clip_min: float  # loss_fn.ratio_clip_min
    ratio_clip_max: float  # loss_fn.ratio_clip_max
    lr: float  # policy.optimizer.kwargs.lr
    weight_decay: float  # policy.optimizer.kwargs.weight_decay
    betas: tuple[float, float]  # policy.optimizer.kwargs.betas
    eps: float  # policy.optimizer.kwargs.eps
    max_grad_norm: float | None  # policy.max_grad_norm
    train_global_batch_size: int  # policy.train_global_batch_size
    temperature: float  # policy.generation.temperature
    val_temperature: float  # policy.generation.val_temperature (0 = greedy)
    hidden_size: int  # policy.model_name + policy.hf_config_overrides.hidden_size
    num_hidden_layers: int  # ... .num_hidden_layers
    task: str  # data.task
    vocab_size: int  # data.vocab_size
    prompt_length: int  # data.prompt_length
    answer_length: int  # data.answer_length
    data_seed: int  # data.seed

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> GRPOSettings:
        """Read and check every key; raises KeyError/ValueError naming the key."""
        model = get(cfg, "policy.model_name")
        if model not in MODELS:
            raise ValueError(
                f"policy.model_name: the embedded trainer has models {sorted(MODELS)}, got {model!r}"
            )
        sizes = dict(MODELS[model])
        sizes.update(get(cfg, "policy.hf_config_overrides", None) or {})
        optim = get(cfg, "policy.optimizer.name")
        if optim not in ("torch.optim.AdamW", "AdamW"):
            raise ValueError(
                f"policy.optimizer.name: only torch.optim.AdamW is built in, got {optim!r}"
            )
        betas = get(cfg, "policy.optimizer.kwargs.betas", [0.9, 0.999])
        kl_type = str(get(cfg, "loss_fn.reference_policy_kl_type", "k3"))
        if kl_type not in ("k1", "k2", "k3"):
            raise ValueError(f"loss_fn.reference_policy_kl_type: use k1, k2 or k3, got {kl_type!r}")
        grad_norm = get(cfg, "policy.max_grad_norm", None)
        in_clamp = get(cfg, "loss_fn.kl_input_clamp_value", None)
        out_clamp = get(cfg, "loss_fn.kl_output_clamp_value", None)
        settings = cls(
            seed=_number(cfg, "grpo.seed", int, -(2**62)),
            num_prompts_per_step=_number(cfg, "grpo.num_prompts_per_step", int, 1),
            num_generations_per_prompt=_number(cfg, "grpo.num_generations_per_prompt", int, 1),
            max_num_steps=_number(cfg, "grpo.max_num_steps", int, 1),
            val_period=_number(cfg, "grpo.val_period", int, 0),
            val_at_start=bool(get(cfg, "grpo.val_at_start", False)),
            val_at_end=bool(get(cfg, "grpo.val_at_end", True)),
            max_val_samples=_number(cfg, "grpo.max_val_samples", int, 1),
            normalize_rewards=bool(get(cfg, "grpo.normalize_rewards", True)),
            use_leave_one_out_baseline=bool(get(cfg, "grpo.use_leave_one_out_baseline", True)),
            kl_penalty=_number(cfg, "loss_fn.reference_policy_kl_penalty", float, 0.0),
            kl_type=kl_type,
            kl_input_clamp=None if in_clamp is None else float(in_clamp),
            kl_output_clamp=None if out_clamp is None else float(out_clamp),
            ratio_clip_min=_number(cfg, "loss_fn.ratio_clip_min", float, 0.0),
            ratio_clip_max=_number(cfg, "loss_fn.ratio_clip_max", float, 0.0),
            lr=_number(cfg, "policy.optimizer.kwargs.lr", float, 0.0),
            weight_decay=_number(cfg, "policy.optimizer.kwargs.weight_decay", float, 0.0),
            betas=(float(betas[0]), float(betas[1])),
            eps=_number(cfg, "policy.optimizer.kwargs.eps", float, 0.0, 1e-8),
            max_grad_norm=None
            if grad_norm is None
            else _number(cfg, "policy.max_grad_norm", float, 0.0),
            train_global_batch_size=_number(cfg, "policy.train_global_batch_size", int, 1),
            temperature=_number(cfg, "policy.generation.temperature", float, 0.0),
            val_temperature=_number(cfg, "policy.generation.val_temperature", float, 0.0, 0.0),
            hidden_size=int(sizes["hidden_size"]),
            num_hidden_layers=int(sizes["num_hidden_layers"]),
            task=str(get(cfg, "data.task", "reverse")),
            vocab_size=_number(cfg, "data.vocab_size", int, 2, 8),
            prompt_length=_number(cfg, "data.prompt_length", int, 1, 4),
            answer_length=_number(cfg, "data.answer_length", int, 1, 2),
            data_seed=_number(cfg, "data.seed", int, -(2**62), 0),
        )
        if settings.temperature <= 0:
            raise ValueError("policy.generation.temperature: GRPO samples, so it must be > 0")
        if settings.use_leave_one_out_baseline and settings.num_generations_per_prompt < 2:
            raise ValueError(
                "grpo.num_generations_per_prompt: must be >= 2 with "
                "grpo.use_leave_one_out_baseline=true"
            )
        if settings.ratio_clip_min >= 1:
            raise ValueError(
                "loss_fn.ratio_clip_min: must be < 1 (the ratio is clipped at 1 - min)"
            )
        return settings
