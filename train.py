"""The Hydra app: one call is one training run (one trial); it returns the run's metrics.

python train.py                          # train once with the recipe's values
python train.py --multirun hpo=bayes     # a GP-Bayesian sweep with the defaults
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> dict:
    from nemo_rl_sweep.job import link_from_hydra, run_training

    metrics = run_training(cfg, link_from_hydra())
    print("metrics: " + ", ".join(f"{k}={v:.6g}" for k, v in sorted(metrics.items())))
    return metrics


if __name__ == "__main__":
    main()
