"""NeMo RL's own run-time rules on a recipe, checked before a trial launches.

NeMo RL asserts these only once its Ray cluster, its workers and often its first generation are up:
a trial that breaks one spends minutes to hours of GPU time to fail. Each rule here restates one
assert or divisibility requirement of NeMo RL (commit 7ea279ab, the one the shared recipes come from)
that depends on values a sweep changes, and names the source it comes from. ``broken_rule`` returns
the first rule a trial config breaks; a value that cannot be known yet (an ``${oc.env:...}`` only
the job's environment resolves, a missing key) makes its rule pass: the check never refuses on a
guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from nemo_rl_sweep.trainers.nemo_rl.recipe import algorithm, backend

__all__ = ["RULES", "Rule", "broken_rule"]


class _Unknown(Exception):
    """A value the rule needs is not known before the job runs."""


@dataclass(frozen=True)
class Rule:
    name: str
    source: str  # where NeMo RL enforces it
    text: str  # the rule, as docs/nemo_rl.md lists it
    problem: Callable[[Any], str | None]


def _get(cfg: Any, key: str) -> Any:
    try:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    except Exception:
        raise _Unknown(key) from None
    if value is None:
        raise _Unknown(key)
    return value


def _opt(cfg: Any, key: str, default: Any) -> Any:
    try:
        return _get(cfg, key)
    except _Unknown:
        return default


def _int(cfg: Any, key: str) -> int:
    value = _get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Unknown(key)
    return value


def _parallel(cfg: Any) -> tuple[int, int, int]:
    """(TP, PP, CP) of the active backend, as ``lm_policy.Policy.__init__`` reads them."""
    if backend(cfg) == "megatron":
        m = "policy.megatron_cfg."
        return (
            _int(cfg, m + "tensor_model_parallel_size"),
            _int(cfg, m + "pipeline_model_parallel_size"),
            _int(cfg, m + "context_parallel_size"),
        )
    d = "policy.dtensor_cfg."
    return _int(cfg, d + "tensor_parallel_size"), 1, _int(cfg, d + "context_parallel_size")


def _train_world(cfg: Any) -> int:
    """GPUs the policy trains on: the whole cluster when generation is colocated, else what the
    generation's own resources leave (``grpo.setup``)."""
    gpus, nodes = _int(cfg, "cluster.gpus_per_node"), _int(cfg, "cluster.num_nodes")
    colocated = _opt(cfg, "policy.generation.colocated.enabled", True)
    if algorithm(cfg) != "grpo" or colocated is not False:
        return gpus * nodes
    res = "policy.generation.colocated.resources."
    if nodes == 1:
        return gpus - _int(cfg, res + "gpus_per_node")
    return gpus * (nodes - _int(cfg, res + "num_nodes"))


def _dp(cfg: Any) -> int:
    tp, pp, cp = _parallel(cfg)
    world, model = _train_world(cfg), tp * pp * cp
    if world <= 0 or world % model:
        raise _Unknown("data parallel size")  # reported by _world_vs_parallel
    return world // model


def _one_backend(cfg: Any) -> str | None:
    flags = [_opt(cfg, f"policy.{b}_cfg.enabled", None) for b in ("megatron", "dtensor")]
    if flags == [None, None]:
        return None  # a recipe without either section (the embedded trainer's) names no backend
    megatron, dtensor = (flag is True for flag in flags)
    if megatron == dtensor:
        both = "both are" if megatron else "neither is"
        return f"policy.megatron_cfg.enabled and policy.dtensor_cfg.enabled: {both} true"
    return None


def _generation_leaves_gpus(cfg: Any) -> str | None:
    if algorithm(cfg) != "grpo" or _opt(cfg, "policy.generation.colocated.enabled", True):
        return None
    world = _train_world(cfg)
    if world <= 0:
        return f"non-colocated generation leaves {world} GPUs (or nodes) for training"
    return None


def _world_vs_parallel(cfg: Any) -> str | None:
    tp, pp, cp = _parallel(cfg)
    world = _train_world(cfg)
    if world > 0 and world % (tp * pp * cp):
        return (
            f"{world} training GPUs are not divisible by TP*PP*CP = {tp}*{pp}*{cp} = {tp * pp * cp}"
        )
    return None


def _gbs_vs_dp(cfg: Any) -> str | None:
    gbs, dp = _int(cfg, "policy.train_global_batch_size"), _dp(cfg)
    if gbs % dp:
        return (
            f"policy.train_global_batch_size={gbs} is not divisible by the data-parallel size {dp}"
        )
    return None


def _batching(cfg: Any) -> tuple[bool, bool]:
    """(sequence packing on, dynamic batching on)."""
    return (
        _opt(cfg, "policy.sequence_packing.enabled", False) is True,
        _opt(cfg, "policy.dynamic_batching.enabled", False) is True,
    )


def _micro_batches(cfg: Any) -> str | None:
    if any(_batching(cfg)):
        return None  # micro-batches are then cut by tokens, not counted in samples
    gbs, mbs, dp = (
        _int(cfg, "policy.train_global_batch_size"),
        _int(cfg, "policy.train_micro_batch_size"),
        _dp(cfg),
    )
    if gbs % dp == 0 and (gbs // dp) % mbs:
        return (
            f"each of the {dp} data-parallel ranks gets {gbs // dp} samples "
            f"(policy.train_global_batch_size={gbs}), not a multiple of "
            f"policy.train_micro_batch_size={mbs}"
        )
    return None


def _grpo_batch(cfg: Any) -> str | None:
    if algorithm(cfg) != "grpo":
        return None
    prompts = _int(cfg, "grpo.num_prompts_per_step")
    gens = _int(cfg, "grpo.num_generations_per_prompt")
    gbs = _int(cfg, "policy.train_global_batch_size")
    if (prompts * gens) % gbs:
        return (
            f"a step has grpo.num_prompts_per_step x grpo.num_generations_per_prompt = "
            f"{prompts} x {gens} = {prompts * gens} samples, not a multiple of "
            f"policy.train_global_batch_size={gbs}"
        )
    return None


def _force_on_policy(cfg: Any) -> str | None:
    if algorithm(cfg) != "grpo" or _opt(cfg, "loss_fn.force_on_policy_ratio", False) is not True:
        return None
    prompts = _int(cfg, "grpo.num_prompts_per_step")
    gens = _int(cfg, "grpo.num_generations_per_prompt")
    gbs = _int(cfg, "policy.train_global_batch_size")
    if prompts * gens != gbs:
        return (
            f"loss_fn.force_on_policy_ratio needs policy.train_global_batch_size={gbs} to equal "
            f"{prompts} x {gens} = {prompts * gens}"
        )
    return None


def _tp4_logprob(cfg: Any) -> str | None:
    tp = _parallel(cfg)[0]
    forced = _opt(cfg, "loss_fn.force_on_policy_ratio", False) is True
    if tp < 4 or forced:
        return None
    mbs = _int(cfg, "policy.train_micro_batch_size")
    lbs = _int(cfg, "policy.logprob_batch_size")
    if mbs != lbs:
        return (
            f"tensor parallel size {tp} >= 4 needs policy.train_micro_batch_size={mbs} to equal "
            f"policy.logprob_batch_size={lbs}"
        )
    return None


def _packing_xor_dynamic(cfg: Any) -> str | None:
    packed, dynamic = _batching(cfg)
    if packed and dynamic:
        return "policy.sequence_packing.enabled and policy.dynamic_batching.enabled are both true"
    if dynamic and _parallel(cfg)[1] > 1:
        return "policy.dynamic_batching.enabled needs pipeline parallel size 1"
    return None


def _dpo_batching(cfg: Any) -> str | None:
    if algorithm(cfg) != "dpo":
        return None
    for key in ("policy.sequence_packing.enabled", "policy.dynamic_batching.enabled"):
        if _opt(cfg, key, False) is True:
            return f"DPO does not support {key}=true"
    return None


def _megatron_cp(cfg: Any) -> str | None:
    if backend(cfg) != "megatron" or _parallel(cfg)[2] <= 1:
        return None
    if _opt(cfg, "policy.sequence_packing.enabled", False) is not True:
        return "Megatron context parallelism > 1 needs policy.sequence_packing.enabled=true"
    return None


def _dtensor_cp_sp(cfg: Any) -> str | None:
    if backend(cfg) != "dtensor":
        return None
    tp, _, cp = _parallel(cfg)
    if cp > 1 and tp > 1 and _opt(cfg, "policy.dtensor_cfg.sequence_parallel", False) is True:
        return "DTensor context parallelism > 1 cannot run with sequence_parallel and TP > 1"
    return None


def _megatron_min_lr(cfg: Any) -> str | None:
    if backend(cfg) != "megatron":
        return None
    lr = float(_get(cfg, "policy.megatron_cfg.optimizer.lr"))
    min_lr = float(_opt(cfg, "policy.megatron_cfg.optimizer.min_lr", 0.0))
    if lr < min_lr:
        return (
            f"policy.megatron_cfg.optimizer.lr={lr:g} is below "
            f"policy.megatron_cfg.optimizer.min_lr={min_lr:g}"
        )
    return None


RULES: tuple[Rule, ...] = (
    Rule(
        "one-backend",
        "nemo_rl/models/policy/lm_policy.py, Policy.__init__",
        "exactly one of policy.megatron_cfg.enabled and policy.dtensor_cfg.enabled is true",
        _one_backend,
    ),
    Rule(
        "generation-gpus",
        "nemo_rl/algorithms/grpo.py, setup (non-colocated resources)",
        "non-colocated generation leaves training at least one GPU (one node)",
        _generation_leaves_gpus,
    ),
    Rule(
        "parallel-fits-gpus",
        "nemo_rl/models/policy/lm_policy.py, Policy.__init__",
        "the training GPUs (cluster.gpus_per_node x cluster.num_nodes, less non-colocated "
        "generation's) are a multiple of TP x PP x CP of the active backend",
        _world_vs_parallel,
    ),
    Rule(
        "global-batch-per-rank",
        "nemo_rl/distributed/batched_data_dict.py, shard_by_batch_size (from Policy.train)",
        "policy.train_global_batch_size is a multiple of the data-parallel size "
        "(training GPUs / (TP x PP x CP))",
        _gbs_vs_dp,
    ),
    Rule(
        "micro-batches",
        "nemo_rl/distributed/batched_data_dict.py, make_microbatch_iterator (the policy "
        "workers' train); nemo_rl/algorithms/dpo.py, add_ref_logprobs_to_data",
        "without sequence packing or dynamic batching, train_global_batch_size / data-parallel "
        "size is a multiple of policy.train_micro_batch_size",
        _micro_batches,
    ),
    Rule(
        "grpo-step-batch",
        "nemo_rl/distributed/batched_data_dict.py, shard_by_batch_size (from Policy.train in "
        "grpo_train, after the first generation)",
        "GRPO: grpo.num_prompts_per_step x grpo.num_generations_per_prompt is a multiple of "
        "policy.train_global_batch_size",
        _grpo_batch,
    ),
    Rule(
        "force-on-policy-batch",
        "nemo_rl/algorithms/grpo.py, setup",
        "GRPO with loss_fn.force_on_policy_ratio: train_global_batch_size equals "
        "num_prompts_per_step x num_generations_per_prompt",
        _force_on_policy,
    ),
    Rule(
        "tp4-logprob-batch",
        "nemo_rl/models/policy/lm_policy.py, Policy.__init__ (unless NRL_IGNORE_TP_ACCURACY_CHECK)",
        "tensor parallel size >= 4: policy.train_micro_batch_size equals "
        "policy.logprob_batch_size (or loss_fn.force_on_policy_ratio)",
        _tp4_logprob,
    ),
    Rule(
        "packing-or-dynamic",
        "nemo_rl/models/policy/lm_policy.py, Policy.__init__",
        "sequence packing and dynamic batching are not both on; dynamic batching needs PP = 1",
        _packing_xor_dynamic,
    ),
    Rule(
        "dpo-batching",
        "nemo_rl/algorithms/dpo.py, setup",
        "DPO: neither sequence packing nor dynamic batching",
        _dpo_batching,
    ),
    Rule(
        "megatron-cp-packing",
        "nemo_rl/models/megatron/setup.py (context parallelism)",
        "Megatron: context_parallel_size > 1 needs policy.sequence_packing.enabled",
        _megatron_cp,
    ),
    Rule(
        "dtensor-cp-sequence-parallel",
        "nemo_rl/models/policy/workers/dtensor_policy_worker.py, __init__",
        "DTensor: context parallelism > 1 is not combined with sequence_parallel and TP > 1",
        _dtensor_cp_sp,
    ),
    Rule(
        "megatron-min-lr",
        "Megatron-core optimizer_param_scheduler.py, OptimizerParamScheduler (built by "
        "nemo_rl/models/megatron/setup.py)",
        "Megatron: policy.megatron_cfg.optimizer.lr >= policy.megatron_cfg.optimizer.min_lr",
        _megatron_min_lr,
    ),
)


def broken_rule(cfg: Any) -> str | None:
    """``<rule name>: <what breaks it> (NeMo RL: <source>)`` for the first rule ``cfg`` breaks."""
    for rule in RULES:
        try:
            problem = rule.problem(cfg)
        except _Unknown:
            continue
        if problem:
            return f"{rule.name}: {problem} (NeMo RL: {rule.source})"
    return None
