"""A Hydra app with a known noisy optimum, for confirmation tests: the learning rate sets the mean
score and its seed-to-seed spread; the runs are deterministic in (lr, grpo.seed), as a trainer's are.

lr 0.01 is the true best (mean 0.7, no spread); lr 0.1 is worse on average (mean 0.5) but its run at
the recipe's seed 0 is lucky (0.9), so a search without confirmation answers 0.1.
"""

import os

import hydra
from omegaconf import DictConfig

LUCKY = {0: 0.4, 1: -0.3, 2: -0.3, 3: -0.2, 4: -0.1}  # lr 0.1: score - mean by seed


@hydra.main(version_base="1.3", config_path="conf", config_name="noisy")
def main(cfg: DictConfig) -> dict:
    seed = int(cfg.grpo.seed)
    if cfg.crash_on_seed == seed and not os.path.exists(cfg.crash_marker):
        open(cfg.crash_marker, "w").close()
        os._exit(9)  # the whole sweeper dies with its in-process job, as on a lost node
    means = {0.001: 0.3, 0.01: 0.7, 0.1: 0.5}
    spread = LUCKY.get(seed, 0.0) if cfg.lr == 0.1 else 0.0
    return {"score": means[cfg.lr] + spread, "seed": seed, "cost": 10 * cfg.lr}


if __name__ == "__main__":
    main()
