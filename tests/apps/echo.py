"""A Hydra app that only says what it was given: the fuzz tests compare it with the search space."""

import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="echo")
def main(cfg: DictConfig) -> dict:
    received = OmegaConf.to_container(cfg, resolve=False)
    out = Path(HydraConfig.get().runtime.output_dir) / "received.json"
    # non-finite floats and any string survive: json writes NaN/Infinity, Python reads them back
    out.write_text(json.dumps(received, ensure_ascii=False))
    return {"score": 0.0}


if __name__ == "__main__":
    main()
