"""A tiny Hydra app for sweeper tests: a known function of x and y, with switches to fail on purpose."""

import math
import os
import signal
import time

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="toy")
def main(cfg: DictConfig) -> dict:
    if cfg.mode == "die_if_big" and cfg.x > cfg.fail_above:  # as the OOM killer or a segfault
        os.kill(os.getpid(), signal.Signals[cfg.die_signal])
    time.sleep(cfg.sleep)
    if cfg.mode == "raise" or (cfg.mode == "raise_if_big" and cfg.x > cfg.fail_above):
        raise RuntimeError(f"boom at x={cfg.x}")
    if cfg.mode == "give_nan":
        return {"score": math.nan}
    value = -((cfg.x - 0.3) ** 2) - (cfg.y - 2) ** 2 + (0.5 if cfg.opt == "b" else 0.0)
    with open(os.path.join(os.getcwd(), "ran.txt") if cfg.mark else os.devnull, "a") as fh:
        fh.write(f"{cfg.x} {cfg.y}\n")
    if cfg.mode == "float":
        return value
    return {"score": value, "cost": abs(cfg.x) + cfg.y}


if __name__ == "__main__":
    main()
