"""NeMo RL recipes load with NeMo RL's semantics; search-space groups address real keys.

The YAML files under ../shared/nemo_rl are unmodified NeMo RL configs (eight, and six added
later). The values checked here only come out right if ``defaults:`` inheritance (one, two and
three levels), list replacement and interpolation through NeMo RL's resolvers all behave as in
NeMo RL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.trainers.nemo_rl.config import (
    apply_overrides,
    key_exists,
    load_recipe,
    missing_keys,
    register_resolvers,
)
from tests.helpers import NEMO_RL_CONFIGS

REPO = Path(__file__).resolve().parents[1]
CONFIGS = NEMO_RL_CONFIGS
LLM = "recipes/llm"
ALL_EIGHT = [
    "grpo_math_1B.yaml",
    "grpo_math_8B.yaml",
    "sft.yaml",
    "dpo.yaml",
    f"{LLM}/grpo-llama3.2-1b-instruct-1n8g-fsdp2tp1.v3.yaml",
    f"{LLM}/grpo-llama3.2-1b-instruct-1n4g-fsdp2tp1.v3.yaml",
    f"{LLM}/sft-llama3.2-1b-1n8g-fsdp2tp1.v3.yaml",
    f"{LLM}/dpo-llama3.2-1b-instruct-1n8g-fsdp2tp1.v2.yaml",
]
ADDED_LATER = [  # PROVENANCE.md: the Megatron and OpenMathInstruct2 recipes, same NeMo RL commit
    "grpo_math_1B_megatron.yaml",
    "grpo_math_8B_megatron.yaml",
    "sft_openmathinstruct2.yaml",
    "sft_openmathinstruct2_megatron.yaml",
    f"{LLM}/dpo-llama3.1-8b-instruct-4n8g-megatron.v2.yaml",
    f"{LLM}/grpo-llama3.1-8b-instruct-2n8g-megatron-fp8-e2e.yaml",
]


def resolved(name: str) -> dict:
    return OmegaConf.to_container(load_recipe(CONFIGS / name), resolve=True)


def at(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_fixture_folder_has_all_eight_files_and_those_added_later():
    found = sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml"))
    assert found == sorted(ALL_EIGHT + ADDED_LATER)


@pytest.mark.parametrize("name", ALL_EIGHT)
def test_every_real_config_loads_and_resolves(name):
    cfg = load_recipe(CONFIGS / name)
    assert "defaults" not in cfg
    plain = OmegaConf.to_container(cfg, resolve=True)
    for section in ("policy", "checkpointing", "logger", "cluster", "data"):
        assert section in plain, section
    assert plain["policy"]["optimizer"]["name"] == "torch.optim.AdamW"


EXPECTED = {
    "grpo_math_1B.yaml": {
        "policy.optimizer.kwargs.lr": 5.0e-6,
        "policy.logprob_batch_size": 4,  # ${policy.train_micro_batch_size}
        "policy.sequence_packing.train_mb_tokens": 512 * 4,  # ${mul:...}
        "policy.generation.val_temperature": 1.0,  # relative ${.temperature}
        "grpo.adv_estimator.normalize_rewards": True,
        "policy.megatron_cfg.optimizer.clip_grad": 1.0,
    },
    "grpo_math_8B.yaml": {
        "policy.optimizer.kwargs.lr": 3.0e-7,
        "policy.max_total_sequence_length": 4096,
        # defined in grpo_math_1B.yaml, resolved with the 8B's values:
        "data.max_input_seq_length": 4096,
        "grpo.reward_shaping.max_response_length": 4096,
        "policy.generation.mcore_generation_config.max_model_len": 4096,
        "policy.sequence_packing.train_mb_tokens": 4096 * 1,
        "policy.sequence_packing.logprob_mb_tokens": 4096 * 2,
        "policy.dynamic_batching.logprob_mb_tokens": 4096 * 2,
        # inherited unchanged from grpo_math_1B.yaml:
        "loss_fn.reference_policy_kl_penalty": 0.01,
        "grpo.val_period": 10,
        "policy.generation.vllm_cfg.gpu_memory_utilization": 0.6,
        "policy.sequence_packing.enabled": True,
        # the child's own values:
        "grpo.num_prompts_per_step": 64,
        "grpo.num_generations_per_prompt": 32,
        "cluster.gpus_per_node": 8,
        # lists are replaced, not merged:
        "policy.scheduler.0.kwargs.total_iters": 13,
        "policy.scheduler.2.milestones": [13],
    },
    f"{LLM}/grpo-llama3.2-1b-instruct-1n8g-fsdp2tp1.v3.yaml": {
        "grpo.max_num_steps": 500,
        "cluster.gpus_per_node": 8,
        "policy.dynamic_batching.enabled": True,
        "policy.dynamic_batching.train_mb_tokens": 512 * 4,
        "loss_fn.reference_policy_kl_penalty": 0.01,
    },
    # three levels: 1n4g -> 1n8g -> grpo_math_1B
    f"{LLM}/grpo-llama3.2-1b-instruct-1n4g-fsdp2tp1.v3.yaml": {
        "cluster.gpus_per_node": 4,  # 1n4g
        "checkpointing.checkpoint_dir": "results/grpo-llama3.2-1b-instruct-1n4g-fsdp2tp1",
        "logger.log_dir": "logs/grpo-llama3.2-1b-instruct-1n4g-fsdp2tp1",
        "logger.wandb.name": "grpo-llama3.2-1b-instruct-1n4g-fsdp2tp1",
        "logger.wandb.project": "nemo-rl",  # 1n8g
        "grpo.max_num_steps": 500,  # 1n8g
        "policy.model_name": "meta-llama/Llama-3.2-1B-Instruct",  # 1n8g
        "policy.dynamic_batching.enabled": True,  # 1n8g
        "policy.sequence_packing.enabled": False,  # 1n8g over grpo_math_1B's True
        "policy.make_sequence_length_divisible_by": 1,  # 1n8g over an interpolation
        "policy.generation.vllm_cfg.max_model_len": 512,
        "loss_fn.reference_policy_kl_penalty": 0.01,  # grpo_math_1B
        "policy.optimizer.kwargs.lr": 5.0e-6,  # grpo_math_1B
        "policy.dynamic_batching.train_mb_tokens": 512 * 4,  # grpo_math_1B's ${mul:...}
        "logger.mlflow.experiment_name": "grpo-dev",  # grpo_math_1B
        "cluster.num_nodes": 1,
    },
    "sft.yaml": {
        "policy.optimizer.kwargs.lr": 5.0e-6,
        "logger.wandb.name": "sft-dev-squad",  # "sft-dev-${data.train.dataset_name}"
        "policy.dynamic_batching.train_mb_tokens": 1024,
        "checkpointing.metric_name": "val:val_loss",
    },
    f"{LLM}/sft-llama3.2-1b-1n8g-fsdp2tp1.v3.yaml": {
        "sft.max_num_steps": 500,
        "sft.val_period": 10,  # sft.yaml
        "checkpointing.save_period": 100,
        "checkpointing.metric_name": "val:val_loss",  # sft.yaml
        "data.train.seed": 42,  # ${sft.seed} from sft.yaml
        "data.train.dataset_name": "OpenMathInstruct-2",
        "data.validation": None,  # the child's null replaces sft.yaml's mapping
        "logger.swanlab.name": "sft-dev-OpenMathInstruct-2",  # sft.yaml's interpolation, child data
        "logger.tensorboard.log_dir": "tb_logs-sft-dev-openmathinstruct2",
        "policy.tokenizer.name": "meta-llama/Llama-3.2-1B",
        "policy.optimizer.kwargs.weight_decay": 0.1,
        "cluster.gpus_per_node": 8,
    },
    "dpo.yaml": {
        "dpo.sft_average_log_probs": False,  # ${.preference_average_log_probs}
        "policy.megatron_cfg.scheduler.start_weight_decay": 0.1,
        "data.max_input_seq_length": 1024,
    },
    f"{LLM}/dpo-llama3.2-1b-instruct-1n8g-fsdp2tp1.v2.yaml": {
        "dpo.val_global_batch_size": 32,
        "dpo.val_at_start": False,
        "dpo.reference_policy_kl_penalty": 0.05,  # dpo.yaml
        "dpo.max_num_steps": 150,  # dpo.yaml
        "policy.tokenizer.name": "meta-llama/Llama-3.2-1B-Instruct",  # ${policy.model_name}
        "logger.tensorboard_enabled": True,
        "logger.tensorboard.log_dir": "tb_logs-dpo-dev",  # dpo.yaml
        "policy.optimizer.kwargs.lr": 5.0e-6,
        "cluster.gpus_per_node": 8,
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_values_only_inheritance_and_interpolation_produce(name):
    cfg = resolved(name)
    got = {key: at(cfg, key) for key in EXPECTED[name]}
    assert got == EXPECTED[name]


def test_grpo_math_8b_scheduler_list_is_the_childs():
    cfg = resolved("grpo_math_8B.yaml")
    assert len(cfg["policy"]["scheduler"]) == 3
    assert cfg["policy"]["scheduler"][0]["kwargs"]["total_iters"] == 13


def test_interpolations_stay_unresolved_until_asked():
    cfg = load_recipe(CONFIGS / "grpo_math_8B.yaml")
    raw = OmegaConf.to_container(cfg, resolve=False)
    assert raw["data"]["max_input_seq_length"] == "${policy.max_total_sequence_length}"
    # an override applied before resolution flows into every interpolation naming it
    apply_overrides(cfg, ["policy.max_total_sequence_length=1000"])
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["data"]["max_input_seq_length"] == 1000
    assert plain["policy"]["sequence_packing"]["logprob_mb_tokens"] == 2000


def test_resolvers_are_registered_and_oc_env_works(monkeypatch):
    register_resolvers()
    for name in ("mul", "add", "div", "max"):
        assert OmegaConf.has_resolver(name)
    monkeypatch.setenv("NRS_TEST_DIR", "/scratch/x")
    cfg = OmegaConf.create(
        {
            "a": 6,
            "b": 4,
            "m": "${mul:${a},${b}}",
            "s": "${add:${a},${b}}",
            "d": "${div:${a},${b}}",
            "x": "${max:${a},${b}}",
            "e": "${oc.env:NRS_TEST_DIR}",
        }
    )
    assert OmegaConf.to_container(cfg, resolve=True) == {
        "a": 6,
        "b": 4,
        "m": 24,
        "s": 10,
        "d": 1.5,
        "x": 6,
        "e": "/scratch/x",
    }


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_override_marker_replaces_a_section_instead_of_merging(tmp_path):
    write(tmp_path, "base.yaml", "opt: {name: adam, lr: 1, betas: [1, 2]}\nother: {a: 1, b: 2}\n")
    child = write(
        tmp_path,
        "child.yaml",
        "defaults: base.yaml\nopt: {_override_: true, name: sgd}\nother: {b: 3}\n",
    )
    cfg = OmegaConf.to_container(load_recipe(child))
    assert cfg == {"opt": {"name": "sgd"}, "other": {"a": 1, "b": 3}}


def test_parents_merge_in_order_then_the_child(tmp_path):
    write(tmp_path, "p1.yaml", "a: {x: 1, y: 1}\nk: one\n")
    write(tmp_path, "p2.yaml", "a: {y: 2, z: 2}\nk: two\n")
    write(tmp_path, "sub/p3.yaml", "a: {_override_: true, only: 3}\n")
    child = write(tmp_path, "child.yaml", "defaults: [p1.yaml, p2.yaml]\nk: child\n")
    assert OmegaConf.to_container(load_recipe(child)) == {
        "a": {"x": 1, "y": 2, "z": 2},
        "k": "child",
    }
    # a later parent's _override_ section replaces the earlier parents' section
    child2 = write(tmp_path, "child2.yaml", "defaults: [p1.yaml, sub/p3.yaml]\n")
    assert OmegaConf.to_container(load_recipe(child2)) == {"a": {"only": 3}, "k": "one"}


def test_parent_paths_are_relative_to_the_file_naming_them(tmp_path):
    write(tmp_path, "root.yaml", "v: root\nw: root\n")
    write(tmp_path, "mid/mid.yaml", "defaults: ../root.yaml\nv: mid\n")
    leaf = write(tmp_path, "mid/deep/leaf.yaml", "defaults: ../mid.yaml\nw: leaf\n")
    assert OmegaConf.to_container(load_recipe(leaf)) == {"v": "mid", "w": "leaf"}
    absolute = write(tmp_path, "abs.yaml", f"defaults: {tmp_path / 'root.yaml'}\nv: abs\n")
    assert OmegaConf.to_container(load_recipe(absolute)) == {"v": "abs", "w": "root"}


def test_child_value_flows_into_a_parents_interpolation(tmp_path):
    write(tmp_path, "parent.yaml", "base_value: 42\nderived: {value: '${mul:${base_value},2}'}\n")
    child = write(tmp_path, "child.yaml", "defaults: parent.yaml\nbase_value: 43\n")
    assert OmegaConf.to_container(load_recipe(child), resolve=True)["derived"]["value"] == 86


def test_defaults_cycle_is_one_clear_error_naming_the_files(tmp_path):
    write(tmp_path, "a.yaml", "defaults: b.yaml\nx: 1\n")
    write(tmp_path, "b.yaml", "defaults: [c.yaml]\nx: 2\n")
    write(tmp_path, "c.yaml", "defaults: a.yaml\nx: 3\n")
    with pytest.raises(SweepConfigError) as err:
        load_recipe(tmp_path / "a.yaml")
    message = str(err.value)
    assert "cycle" in message and "\n" not in message
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        assert name in message


def test_self_inheritance_is_a_cycle(tmp_path):
    write(tmp_path, "self.yaml", "defaults: ./self.yaml\n")
    with pytest.raises(SweepConfigError, match="cycle"):
        load_recipe(tmp_path / "self.yaml")


def test_diamond_inheritance_is_not_a_cycle(tmp_path):
    write(tmp_path, "root.yaml", "r: 1\n")
    write(tmp_path, "left.yaml", "defaults: root.yaml\nl: 1\n")
    write(tmp_path, "right.yaml", "defaults: root.yaml\nq: 1\n")
    top = write(tmp_path, "top.yaml", "defaults: [left.yaml, right.yaml]\n")
    assert OmegaConf.to_container(load_recipe(top)) == {"r": 1, "l": 1, "q": 1}


def test_missing_parent_names_the_parent_and_the_child(tmp_path):
    child = write(tmp_path, "child.yaml", "defaults: ../gone/parent.yaml\nx: 1\n")
    with pytest.raises(SweepConfigError) as err:
        load_recipe(child)
    assert err.value.key.endswith("gone/parent.yaml")
    assert "child.yaml" in str(err.value) and "does not exist" in str(err.value)


def test_missing_recipe_names_the_file(tmp_path):
    with pytest.raises(SweepConfigError) as err:
        load_recipe(tmp_path / "grpo_math_9B.yaml")
    assert "grpo_math_9B.yaml" in str(err.value) and "does not exist" in str(err.value)


def test_broken_yaml_and_list_top_level_are_refused(tmp_path):
    with pytest.raises(SweepConfigError, match="not valid YAML"):
        load_recipe(write(tmp_path, "bad.yaml", "a: [1, 2\n"))
    with pytest.raises(SweepConfigError, match="mapping"):
        load_recipe(write(tmp_path, "list.yaml", "- 1\n- 2\n"))


def test_overrides_are_struct_like_nemo_rl():
    cfg = load_recipe(CONFIGS / "grpo_math_1B.yaml")
    with pytest.raises(SweepConfigError) as err:
        apply_overrides(cfg, ["policy.optimizer.kwargs.learning_rate=1e-6"])
    assert err.value.key == "policy.optimizer.kwargs.learning_rate"
    assert "+policy.optimizer.kwargs.learning_rate" in str(err.value)
    apply_overrides(
        cfg,
        [
            "policy.optimizer.kwargs.lr=2e-6",
            "+policy.optimizer.kwargs.amsgrad=true",
            "++loss_fn.new_term=0.5",
            "~grpo.async_grpo",
            "policy.scheduler.0.kwargs.total_iters=7",
        ],
    )
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["policy"]["optimizer"]["kwargs"]["lr"] == 2e-6
    assert plain["policy"]["optimizer"]["kwargs"]["amsgrad"] is True
    assert plain["loss_fn"]["new_term"] == 0.5
    assert "async_grpo" not in plain["grpo"]
    assert plain["policy"]["scheduler"][0]["kwargs"]["total_iters"] == 7


def test_sweep_syntax_is_not_a_single_override():
    cfg = load_recipe(CONFIGS / "grpo_math_1B.yaml")
    with pytest.raises(SweepConfigError, match="sweep"):
        apply_overrides(cfg, ["policy.optimizer.kwargs.lr=choice(1e-6,1e-5)"])


def test_key_exists_walks_dicts_and_lists_without_resolving():
    cfg = load_recipe(CONFIGS / "grpo_math_1B.yaml")
    assert key_exists(cfg, "grpo.advantage_clip_low")  # holds null
    assert key_exists(cfg, "policy.scheduler.1.kwargs.factor")
    assert key_exists(cfg, "policy.dynamic_batching.train_mb_tokens")  # an interpolation
    assert not key_exists(cfg, "policy.scheduler.3")
    assert not key_exists(cfg, "policy.optimizer.kwargs.lr.x")
    assert missing_keys(cfg, ["grpo.seed", "grpo.sead", "+grpo.new"]) == ["grpo.sead"]


REAL_CONFIG_OF_FAMILY = {"grpo": "grpo_math_1B.yaml", "sft": "sft.yaml", "dpo": "dpo.yaml"}
SEARCH_SPACE_FILES = sorted((REPO / "conf" / "search_space").glob("*.yaml"))


@pytest.mark.parametrize("group", ["grpo", "sft", "dpo"])
def test_required_search_space_groups_exist(group):
    text = (REPO / "conf" / "search_space" / f"{group}.yaml").read_text()
    assert text.startswith("# @package hydra.sweeper.params")
    assert yaml.safe_load(text), f"{group}.yaml is empty"


MEGATRON_CONFIG_OF_FAMILY = {
    "grpo": "grpo_math_1B_megatron.yaml",
    "sft": "sft_openmathinstruct2_megatron.yaml",
    "dpo": "recipes/llm/dpo-llama3.1-8b-instruct-4n8g-megatron.v2.yaml",
}
# the presets' placeholder (the sweeper picks a space) and the empty space: no keys
KEYLESS_SPACES = {"auto", "none"}


@pytest.mark.parametrize("path", SEARCH_SPACE_FILES, ids=lambda p: p.stem)
def test_every_search_space_key_exists_in_the_real_config(path):
    """grpo* groups are checked against grpo_math_1B.yaml, sft* and dpo* against sft/dpo.yaml;
    *_megatron* groups against a real Megatron recipe of their algorithm."""
    if path.stem in KEYLESS_SPACES:
        assert yaml.safe_load(path.read_text()) is None
        return
    family = next((f for f in REAL_CONFIG_OF_FAMILY if path.stem.startswith(f)), None)
    assert family, f"{path.name}: name it grpo*/sft*/dpo* so it is checked against a real config"
    keys = list(yaml.safe_load(path.read_text()))
    table = MEGATRON_CONFIG_OF_FAMILY if "_megatron" in path.stem else REAL_CONFIG_OF_FAMILY
    cfg = load_recipe(CONFIGS / table[family])
    assert keys
    assert missing_keys(cfg, keys) == [], f"{path.name}: keys absent from the NeMo RL config"


# --- the Hydra side: NeMo RL files as the `recipe` group of the trial config -------------------


def compose_trial(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


SEARCHPATH = f"hydra.searchpath=[nemorl://{CONFIGS}]"


def test_hydra_composes_a_nemo_rl_recipe_with_its_inheritance():
    cfg = compose_trial(
        [
            "trainer=nemo_rl",
            "recipe=grpo_math_8B",
            SEARCHPATH,
            "policy.max_total_sequence_length=100",
        ]
    )
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["policy"]["optimizer"]["kwargs"]["lr"] == 3.0e-7
    assert plain["grpo"]["num_prompts_per_step"] == 64
    assert plain["policy"]["sequence_packing"]["logprob_mb_tokens"] == 200
    assert plain["data"]["max_input_seq_length"] == 100
    assert plain["trainer"]["name"] == "nemo_rl"
    assert "defaults" not in plain


def test_hydra_serves_nested_recipes_three_levels_deep():
    cfg = compose_trial([f"recipe={LLM}/grpo-llama3.2-1b-instruct-1n4g-fsdp2tp1.v3", SEARCHPATH])
    assert cfg.cluster.gpus_per_node == 4
    assert cfg.grpo.max_num_steps == 500
    assert cfg.policy.optimizer.kwargs.lr == 5.0e-6


def test_hydra_refuses_a_key_the_recipe_lacks_unless_plus():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match=r"\+policy\.optimizer\.kwargs\.lrr"):
        compose_trial(["recipe=grpo_math_1B", SEARCHPATH, "policy.optimizer.kwargs.lrr=1e-6"])
    cfg = compose_trial(["recipe=grpo_math_1B", SEARCHPATH, "+policy.optimizer.kwargs.lrr=1e-6"])
    assert cfg.policy.optimizer.kwargs.lrr == 1e-6


def test_hydra_lists_the_recipes_of_the_folder_and_refuses_an_unknown_one():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as err:
        compose_trial(["recipe=grpo_math_9B", SEARCHPATH])
    for name in ("grpo_math_1B", "grpo_math_8B", "sft", "dpo"):
        assert name in str(err.value)


def test_nemo_rl_dir_puts_the_checkouts_configs_on_the_search_path(monkeypatch):
    monkeypatch.setenv("NEMO_RL_DIR", str(CONFIGS.parent.parent))
    cfg = compose_trial(["trainer=nemo_rl", "recipe=dpo"])
    assert cfg.dpo.reference_policy_kl_penalty == 0.05
    assert cfg.trainer.checkout == str(CONFIGS.parent.parent)
    assert cfg.trainer.script == "examples/run_grpo.py"


def test_hydra_reports_a_broken_recipe_in_one_line(tmp_path):
    from hydra.errors import CompactHydraException

    write(tmp_path, "a.yaml", "defaults: b.yaml\n")
    write(tmp_path, "b.yaml", "defaults: a.yaml\n")
    write(tmp_path, "orphan.yaml", "defaults: ../gone.yaml\n")
    searchpath = f"hydra.searchpath=[nemorl://{tmp_path}]"
    with pytest.raises(CompactHydraException) as err:  # printed without a traceback
        compose_trial(["recipe=a", searchpath])
    assert "cycle" in str(err.value) and "b.yaml" in str(err.value)
    with pytest.raises(CompactHydraException) as err:
        compose_trial(["recipe=orphan", searchpath])
    assert "gone.yaml" in str(err.value) and "orphan.yaml" in str(err.value)


def test_any_recipe_file_by_absolute_path_without_a_search_path(tmp_path):
    mine = write(
        tmp_path,
        "mine.yaml",
        f"defaults: {CONFIGS / 'grpo_math_8B.yaml'}\nloss_fn:\n  reference_policy_kl_penalty: 0.02\n",
    )
    cfg = compose_trial(["trainer=nemo_rl", f"recipe={mine}"])
    assert cfg.loss_fn.reference_policy_kl_penalty == 0.02
    assert cfg.policy.optimizer.kwargs.lr == 3.0e-7  # from grpo_math_8B.yaml
    assert OmegaConf.to_container(cfg, resolve=True)["data"]["max_input_seq_length"] == 4096
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException):
        compose_trial([f"recipe={tmp_path / 'absent.yaml'}"])
