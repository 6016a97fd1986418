"""What the real NeMo RL recipes say of themselves, and NeMo RL's run-time rules checked on them.

Every recipe is one of the shared, unmodified NeMo RL files (../shared/nemo_rl), loaded with NeMo
RL's semantics; a trial's values are applied as NeMo RL's command line applies them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.trainers import get_trainer
from nemo_rl_sweep.trainers.nemo_rl.config import apply_overrides, load_recipe
from nemo_rl_sweep.trainers.nemo_rl.invariants import RULES, broken_rule
from nemo_rl_sweep.trainers.nemo_rl.recipe import (
    algorithm,
    backend,
    check_backend_keys,
    default_objective,
    default_search_space,
)
from tests.helpers import NEMO_RL_CONFIGS

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(
    str(p.relative_to(NEMO_RL_CONFIGS))[: -len(".yaml")] for p in NEMO_RL_CONFIGS.rglob("*.yaml")
)
# (algorithm, backend) of every shared recipe, read off the files by hand
EXPECTED = {
    "dpo": ("dpo", "dtensor"),
    "grpo_math_1B": ("grpo", "dtensor"),
    "grpo_math_1B_megatron": ("grpo", "megatron"),
    "grpo_math_8B": ("grpo", "dtensor"),
    "grpo_math_8B_megatron": ("grpo", "megatron"),
    "recipes/llm/dpo-llama3.1-8b-instruct-4n8g-megatron.v2": ("dpo", "megatron"),
    "recipes/llm/dpo-llama3.2-1b-instruct-1n8g-fsdp2tp1.v2": ("dpo", "dtensor"),
    "recipes/llm/grpo-llama3.1-8b-instruct-2n8g-megatron-fp8-e2e": ("grpo", "megatron"),
    "recipes/llm/grpo-llama3.2-1b-instruct-1n4g-fsdp2tp1.v3": ("grpo", "dtensor"),
    "recipes/llm/grpo-llama3.2-1b-instruct-1n8g-fsdp2tp1.v3": ("grpo", "dtensor"),
    "recipes/llm/sft-llama3.2-1b-1n8g-fsdp2tp1.v3": ("sft", "dtensor"),
    "sft": ("sft", "dtensor"),
    "sft_openmathinstruct2": ("sft", "dtensor"),
    "sft_openmathinstruct2_megatron": ("sft", "megatron"),
}
OBJECTIVE = {
    "grpo": ("validation/accuracy", "maximize"),
    "sft": ("validation/val_loss", "minimize"),
    "dpo": ("validation-default/loss", "minimize"),
}


def recipe(name: str, *overrides: str):
    cfg = load_recipe(NEMO_RL_CONFIGS / f"{name}.yaml")
    return apply_overrides(cfg, list(overrides))


def test_every_shared_recipe_is_classified():
    assert RECIPES == sorted(EXPECTED)


@pytest.mark.parametrize("name", RECIPES)
def test_algorithm_backend_objective_and_space_follow_the_recipe(name):
    cfg = recipe(name)
    algo, active = EXPECTED[name]
    assert (algorithm(cfg), backend(cfg)) == (algo, active)
    assert default_objective(cfg) == OBJECTIVE[algo]
    space = {"grpo": "grpo_llm", "sft": "sft", "dpo": "dpo"}[algo]
    space += "_megatron" if active == "megatron" else ""
    assert default_search_space(cfg, "bayes") == space
    assert default_search_space(cfg, "grid") == space + "_grid"
    assert (REPO / "conf" / "search_space" / f"{space}_grid.yaml").is_file()


@pytest.mark.parametrize("name", RECIPES)
def test_every_shared_recipe_keeps_every_rule_as_it_is(name):
    assert broken_rule(recipe(name)) is None


def test_the_objective_is_one_the_recipes_script_writes():
    trainer = get_trainer("nemo_rl")
    for name in RECIPES:
        cfg = recipe(name)
        assert default_objective(cfg)[0] in trainer.metrics(cfg)
    assert "validation/accuracy" not in trainer.metrics(recipe("sft"))
    named = recipe("dpo", "+data.val_data_paths={math: a.jsonl, code: b.jsonl}")
    assert default_objective(named) == ("validation-math/loss", "minimize")
    assert "validation-code/accuracy" in trainer.metrics(named)


@pytest.mark.parametrize(
    ("name", "overrides", "rule", "words"),
    [
        # 32 prompts x 8 generations = 256 samples; the recipe trains on 512 a step
        (
            "grpo_math_1B",
            ["grpo.num_generations_per_prompt=8"],
            "grpo-step-batch",
            "32 x 8 = 256 samples, not a multiple of policy.train_global_batch_size=512",
        ),
        (
            "grpo_math_1B",
            ["cluster.gpus_per_node=8", "policy.dtensor_cfg.tensor_parallel_size=3"],
            "parallel-fits-gpus",
            "8 training GPUs are not divisible by TP*PP*CP = 3*1*1 = 3",
        ),
        (
            "sft",
            ["cluster.gpus_per_node=3"],
            "global-batch-per-rank",
            "policy.train_global_batch_size=32 is not divisible by the data-parallel size 3",
        ),
        (
            "sft",
            ["cluster.gpus_per_node=4", "policy.train_micro_batch_size=3"],
            "micro-batches",
            "each of the 4 data-parallel ranks gets 8 samples",
        ),
        (
            "dpo",
            ["policy.sequence_packing.enabled=true"],
            "dpo-batching",
            "DPO does not support policy.sequence_packing.enabled=true",
        ),
        (
            "grpo_math_1B_megatron",
            ["policy.megatron_cfg.optimizer.lr=1e-7"],
            "megatron-min-lr",
            "lr=1e-07 is below policy.megatron_cfg.optimizer.min_lr=5e-07",
        ),
        (
            "grpo_math_1B",
            [
                "cluster.gpus_per_node=4",
                "policy.dtensor_cfg.tensor_parallel_size=4",
                "policy.logprob_batch_size=8",
            ],
            "tp4-logprob-batch",
            "tensor parallel size 4 >= 4 needs policy.train_micro_batch_size=4 to equal",
        ),
        (
            "grpo_math_1B",
            ["policy.megatron_cfg.enabled=true"],
            "one-backend",
            "both are true",
        ),
        (
            "grpo_math_1B",
            ["loss_fn.force_on_policy_ratio=true", "grpo.num_generations_per_prompt=32"],
            "force-on-policy-batch",
            "to equal 32 x 32 = 1024",
        ),
        (
            "grpo_math_8B",
            [
                "policy.generation.colocated.enabled=false",
                "policy.generation.colocated.resources.gpus_per_node=8",
            ],
            "generation-gpus",
            "leaves 0 GPUs",
        ),
    ],
)
def test_a_broken_rule_is_named_with_its_numbers_and_nemo_rl_source(name, overrides, rule, words):
    text = broken_rule(recipe(name, *overrides))
    assert text is not None and text.startswith(rule + ": "), text
    assert words in text
    source = next(r.source for r in RULES if r.name == rule)
    assert text.endswith(f"(NeMo RL: {source})")


def test_sixteen_and_thirty_two_generations_keep_grpo_math_1b_s_batch_rule():
    assert broken_rule(recipe("grpo_math_1B", "grpo.num_generations_per_prompt=16")) is None
    assert broken_rule(recipe("grpo_math_1B", "grpo.num_generations_per_prompt=32")) is None


def test_a_value_only_the_jobs_environment_knows_is_not_judged(monkeypatch):
    monkeypatch.delenv("SWEEP_TEST_GPUS", raising=False)
    cfg = recipe(
        "grpo_math_1B",
        "cluster.gpus_per_node=${oc.env:SWEEP_TEST_GPUS}",
        "grpo.num_generations_per_prompt=16",
    )
    assert broken_rule(cfg) is None
    cfg = recipe("grpo_math_1B", "cluster.gpus_per_node=${oc.env:SWEEP_TEST_GPUS}")
    assert broken_rule(apply_overrides(cfg, ["grpo.num_generations_per_prompt=4"])).startswith(
        "grpo-step-batch"
    )


def test_every_rule_is_listed_in_the_docs_with_its_source():
    doc = (REPO / "docs" / "nemo_rl.md").read_text()
    for rule in RULES:
        assert f"`{rule.name}`" in doc and rule.source in doc, rule.name


@pytest.mark.parametrize(
    ("name", "key", "reads"),
    [
        ("grpo_math_1B_megatron", "policy.optimizer.kwargs.lr", "policy.megatron_cfg.optimizer.lr"),
        # the key exists in this Megatron recipe (inherited), and Megatron still never reads it
        (
            "recipes/llm/grpo-llama3.1-8b-instruct-2n8g-megatron-fp8-e2e",
            "policy.optimizer.kwargs.weight_decay",
            "policy.megatron_cfg.optimizer.weight_decay",
        ),
        ("grpo_math_1B", "policy.megatron_cfg.optimizer.lr", "policy.optimizer.kwargs.lr"),
        (
            "sft",
            "policy.megatron_cfg.tensor_model_parallel_size",
            "policy.dtensor_cfg.tensor_parallel_size",
        ),
    ],
)
def test_a_key_the_active_backend_ignores_is_refused_naming_the_key_it_reads(name, key, reads):
    with pytest.raises(SweepConfigError) as err:
        check_backend_keys(recipe(name), ["loss_fn.reference_policy_kl_penalty", key])
    assert err.value.key == key
    assert str(err.value).endswith(f"Fix: sweep {reads} instead")


def test_keys_of_the_active_backend_and_shared_keys_pass():
    check_backend_keys(
        recipe("grpo_math_1B_megatron"),
        ["policy.megatron_cfg.optimizer.lr", "policy.max_grad_norm", "grpo.num_prompts_per_step"],
    )
    check_backend_keys(
        recipe("grpo_math_1B"), ["policy.optimizer.kwargs.lr", "loss_fn.ratio_clip_min"]
    )
