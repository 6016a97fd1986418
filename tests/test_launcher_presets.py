"""The Slurm launcher preset for NeMo RL trials composes into hydra-submitit-launcher's own schema."""

from hydra import compose, initialize_config_dir

from tests.helpers import REPO


def test_slurm_nemo_rl_preset_composes_with_submitit_schema():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hpo=bayes", "hydra/launcher=slurm_nemo_rl", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu"
    assert launcher.gpus_per_node == 8 and launcher.nodes == 1 and launcher.timeout_min == 240
    assert launcher.max_num_timeout == 0
    assert list(launcher.setup) == ["export NEMO_RL_DIR=$HOME/RL"]
    assert cfg.hydra.sweeper.strategy == "bayes"
