"""A training run in miniature for pruning tests: it validates every step and reports to the ledger.

The score at step s is ``quality * s / steps`` with ``quality = 1 - (x - 0.3)^2``, so a worse ``x`` is
worse at every step and a pruner can tell early. Each validation goes to the job's ledger trial
through ``nemo_rl_sweep.job.link_from_hydra().reporter()``, exactly as ``train.py`` does, which raises
``optuna.TrialPruned`` when the sweep's pruner says stop. Steps actually run go to ``steps.txt`` in the
job folder, so a test can see that a pruned job really stopped.
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nemo_rl_sweep.job import link_from_hydra


@hydra.main(version_base="1.3", config_path="conf", config_name="curve")
def main(cfg: DictConfig) -> dict:
    link = link_from_hydra()
    report = link.reporter() if link is not None else None
    out = Path(HydraConfig.get().runtime.output_dir) / "steps.txt"
    quality = 1.0 - (cfg.x - 0.3) ** 2
    score = 0.0
    for step in range(1, cfg.steps + 1):
        score = quality * step / cfg.steps
        with out.open("a") as fh:
            fh.write(f"{step}\n")
        if report is not None:
            report(step, {"score": score})
    return {"score": score}


if __name__ == "__main__":
    main()
