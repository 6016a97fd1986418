"""A sweep app for asynchronous sweeps: trial 0 is long, every other trial is short.

Trial 0 runs until ``wait_for`` short trials have left their mark in ``marks`` (or ``give_up_s``
passed, a bound so a broken sweep cannot hang), so it can only end normally if short trials keep
starting and ending while it runs: in batches of ``n_jobs`` it would wait for them in vain.
"""

import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="long_short")
def main(cfg: DictConfig) -> dict:
    number = int(HydraConfig.get().sweeper.trial_number)
    marks = Path(cfg.marks)
    if number == 0:
        deadline = time.monotonic() + cfg.give_up_s
        while len(list(marks.glob("short-*"))) < cfg.wait_for and time.monotonic() < deadline:
            time.sleep(0.1)
        seen = len(list(marks.glob("short-*")))
    else:
        time.sleep(cfg.short_s)
        (marks / f"short-{number}").write_text(str(cfg.x))
        seen = 0
    return {"score": float(cfg.x), "shorts_seen": float(seen)}


if __name__ == "__main__":
    main()
