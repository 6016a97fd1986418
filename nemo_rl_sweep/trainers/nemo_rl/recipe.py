"""What a NeMo RL recipe says about itself: its algorithm, its training backend, what it writes.

The sweep's defaults follow from these (the search space, the metric and its direction), and a
swept key the active backend never reads is refused before launch: NeMo RL builds the Megatron
optimizer from ``policy.megatron_cfg.optimizer`` and the DTensor one from ``policy.optimizer``
(``nemo_rl/models/policy/lm_policy.py`` picks the worker by ``megatron_cfg.enabled``), so a value
swept under the other one changes nothing and every trial would be the same run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import OmegaConf

from nemo_rl_sweep.errors import SweepConfigError

__all__ = [
    "ALGORITHMS",
    "algorithm",
    "backend",
    "check_backend_keys",
    "default_objective",
    "default_search_space",
    "written_metrics",
]

ALGORITHMS: tuple[str, ...] = ("grpo", "sft", "dpo")

# the same setting under each backend: a DTensor key and the Megatron key NeMo RL reads instead
_SAME_SETTING: tuple[tuple[str, str], ...] = (
    ("policy.optimizer.kwargs.lr", "policy.megatron_cfg.optimizer.lr"),
    ("policy.optimizer.kwargs.weight_decay", "policy.megatron_cfg.optimizer.weight_decay"),
    ("policy.optimizer.kwargs.eps", "policy.megatron_cfg.optimizer.adam_eps"),
    ("policy.dtensor_cfg.tensor_parallel_size", "policy.megatron_cfg.tensor_model_parallel_size"),
    ("policy.dtensor_cfg.context_parallel_size", "policy.megatron_cfg.context_parallel_size"),
    ("policy.dtensor_cfg.sequence_parallel", "policy.megatron_cfg.sequence_parallel"),
    ("policy.scheduler", "policy.megatron_cfg.scheduler"),
)
# the sections each backend alone reads
_ONLY_READ_BY = {
    "dtensor": ("policy.optimizer", "policy.scheduler", "policy.dtensor_cfg"),
    "megatron": ("policy.megatron_cfg",),
}


def _select(cfg: Any, key: str, default: Any = None) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=default, throw_on_missing=False)
    except Exception:  # an interpolation that only resolves in the job's environment
        return default


def algorithm(cfg: Any) -> str | None:
    """``grpo``, ``sft`` or ``dpo``: the one of NeMo RL's top-level sections the recipe has."""
    if not isinstance(cfg, Mapping) and not OmegaConf.is_dict(cfg):
        return None
    found = [name for name in ALGORITHMS if name in cfg and cfg[name] is not None]
    return found[0] if len(found) == 1 else None


def backend(cfg: Any) -> str:
    """``megatron`` where ``policy.megatron_cfg.enabled`` is true, else ``dtensor``."""
    return "megatron" if _select(cfg, "policy.megatron_cfg.enabled") is True else "dtensor"


def _validation_sets(cfg: Any) -> list[str]:
    """DPO logs ``validation-<name>/...`` per validation set (``nemo_rl/algorithms/dpo.py``);
    named sets come from ``data.val_data_paths``, a single one is ``default``."""
    named = _select(cfg, "data.val_data_paths")
    if OmegaConf.is_dict(named) or isinstance(named, Mapping):
        return [str(k) for k in named] or ["default"]
    return ["default"]


def written_metrics(cfg: Any) -> list[str] | None:
    """The TensorBoard tags the recipe's script writes that a sweep can optimise; None if unknown."""
    algo = algorithm(cfg)
    timing = "timing/train/total_step_time"
    if algo == "grpo":
        return [
            "validation/accuracy",
            "validation/avg_length",
            "train/loss",
            "train/reward",
            timing,
        ]
    if algo == "sft":
        return ["validation/val_loss", "train/loss", timing]
    if algo == "dpo":
        out = []
        for name in _validation_sets(cfg):
            out += [f"validation-{name}/loss", f"validation-{name}/accuracy"]
        return [*out, "train/loss", "train/accuracy", timing]
    return None


def default_objective(cfg: Any) -> tuple[str, str]:
    """The metric and direction a sweep of this recipe optimises unless the user names one."""
    algo = algorithm(cfg)
    if algo == "sft":
        return "validation/val_loss", "minimize"
    if algo == "dpo":
        return f"validation-{_validation_sets(cfg)[0]}/loss", "minimize"
    return "validation/accuracy", "maximize"


def default_search_space(cfg: Any, strategy: str) -> str:
    """``<algorithm>[_megatron][_grid]`` (``grpo_llm`` for GRPO): the LLM ranges at the keys the
    recipe's backend reads, ``choice`` lists for a grid. The embedded trainer's own recipe
    (``policy.model_name: embedded-*``, run through its NeMo RL-style script) keeps the toy space
    its small policy is sized for."""
    if str(_select(cfg, "policy.model_name", "")).startswith("embedded-"):
        return "grpo_grid" if strategy == "grid" else "grpo"
    name = {"grpo": "grpo_llm", "sft": "sft", "dpo": "dpo"}.get(algorithm(cfg) or "", "grpo_llm")
    if backend(cfg) == "megatron":
        name += "_megatron"
    return name + "_grid" if strategy == "grid" else name


def _under(key: str, section: str) -> bool:
    return key == section or key.startswith(section + ".")


def _counterpart(key: str, active: str) -> str | None:
    """The key the ``active`` backend reads for the setting ``key`` names under the other one."""
    for dtensor_key, megatron_key in _SAME_SETTING:
        theirs, ours = (
            (dtensor_key, megatron_key) if active == "megatron" else (megatron_key, dtensor_key)
        )
        if _under(key, theirs):
            return ours + key[len(theirs) :]
    return None


def check_backend_keys(cfg: Any, keys: Iterable[str]) -> None:
    """Refuse a swept key that only the recipe's inactive training backend reads."""
    active = backend(cfg)
    inactive = "dtensor" if active == "megatron" else "megatron"
    names = {"megatron": "Megatron", "dtensor": "DTensor"}
    switch = "policy.megatron_cfg.enabled"
    for raw in keys:
        key = raw.lstrip("+~")
        if _under(key, switch) or _under(key, "policy.dtensor_cfg.enabled"):
            continue
        if not any(_under(key, section) for section in _ONLY_READ_BY[inactive]):
            continue
        reads = _counterpart(key, active)
        raise SweepConfigError(
            key,
            f"the recipe trains with {names[active]} ({switch}={str(active == 'megatron').lower()}), "
            f"which never reads this {names[inactive]} key",
            f"sweep {reads} instead" if reads else f"sweep a key under {_ONLY_READ_BY[active][0]}",
        )
