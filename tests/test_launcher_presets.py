"""The Slurm launcher preset for NeMo RL trials composes into hydra-submitit-launcher's own schema
and reserves the GPUs the recipe's cluster section asks for."""

import pytest
from hydra import compose, initialize_config_dir

from tests.helpers import NEMO_RL_CONFIGS, REPO

SEARCHPATH = f"hydra.searchpath=[nemorl://{NEMO_RL_CONFIGS}]"


def compose_launcher(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hpo=bayes", "hydra/launcher=slurm_nemo_rl", *overrides],
            return_hydra_config=True,
        )
    return cfg


def test_slurm_nemo_rl_preset_composes_with_submitit_schema():
    cfg = compose_launcher(
        "hydra.launcher.partition=gpu",
        "trainer=nemo_rl",
        SEARCHPATH,
        "recipe=grpo_math_8B_megatron",
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu"
    assert launcher.nodes == 1 and launcher.timeout_min == 240
    assert launcher.max_num_timeout == 0
    assert list(launcher.setup) == ["export NEMO_RL_DIR=$HOME/RL"]
    assert cfg.hydra.sweeper.strategy == "bayes"


@pytest.mark.parametrize(
    ("recipe", "extra", "gpus"),
    [
        ("grpo_math_8B_megatron", [], 8),  # cluster.gpus_per_node: 8 in the recipe
        ("grpo_math_1B", [], 1),
        ("recipes/llm/grpo-llama3.2-1b-instruct-1n4g-fsdp2tp1.v3", [], 4),
        ("grpo_math_1B", ["cluster.gpus_per_node=2"], 2),  # the command line sets both
    ],
)
def test_slurm_preset_reserves_the_gpus_of_the_recipe(recipe, extra, gpus):
    cfg = compose_launcher("trainer=nemo_rl", SEARCHPATH, f"recipe={recipe}", *extra)
    assert cfg.cluster.gpus_per_node == gpus
    assert cfg.hydra.launcher.gpus_per_node == gpus
    # what sbatch gets: the launcher as Hydra builds it from this config
    from hydra.core.plugins import Plugins

    launcher = Plugins.instance()._instantiate(cfg.hydra.launcher)
    assert launcher.params["gpus_per_node"] == gpus


def test_slurm_preset_without_a_cluster_section_reserves_eight():
    cfg = compose_launcher("~cluster")
    assert cfg.hydra.launcher.gpus_per_node == 8
