"""The app of hydra-optuna-sweeper's own example: a function of x and y to minimise (plus two extras).

Used with ``hydra_optuna_sweeper_sphere.yaml``, a sweep file written for hydra-optuna-sweeper, to show
that it runs on the nemo_rl sweeper after changing only its ``override /hydra/sweeper:`` line.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="sphere")
def main(cfg: DictConfig) -> float:
    penalty = {"a": 0.0, "b": 0.5, "c": 1.0}[cfg.opt]
    return float(cfg.x**2 + cfg.y**2 + (cfg.lr - 0.01) ** 2 + penalty)


if __name__ == "__main__":
    main()
