"""The embedded GRPO trainer's real learning curves over a grid, computed once and cached.

Why a grid: the multi-fidelity benchmark needs each problem's best achievable final value to say
when a sweep has found a good configuration. For the real trainer that value is only known over a
finite set, so the benchmark's GRPO problem is this grid (each parameter an index into its values):
every curve is a real, deterministic embedded-GRPO training of ``conf/recipe/grpo_tiny.yaml``
(100 steps, ``validation/accuracy`` every 10), stored in ``data/grpo_curves.json``. A sweep then reads
the curve of the configuration it asked for, step by step, as the trainer would have reported it.

    python benchmarks/grpo_curves.py          # ~5 min on one core; rewrites data/grpo_curves.json
"""

from __future__ import annotations

import copy
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / "data" / "grpo_curves.json"
METRIC = "validation/accuracy"

GRID: dict[str, list[Any]] = {
    "policy.optimizer.kwargs.lr": [float(v) for v in np.geomspace(1e-4, 1e-1, 10)],
    "loss_fn.reference_policy_kl_penalty": [float(v) for v in np.geomspace(1e-4, 3e-1, 5)],
    "grpo.num_generations_per_prompt": [4, 8, 16],
    "policy.generation.temperature": [0.6, 0.87, 1.13, 1.4],
}


def _set(cfg: dict, dotted: str, value: Any) -> None:
    node = cfg
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value


def build() -> dict[str, Any]:
    """Train every grid point once; curves keyed by the index tuple, e.g. ``"3,1,0,2"``."""
    import torch
    from omegaconf import OmegaConf

    from nemo_rl_sweep.trainers.embedded import train

    torch.set_num_threads(1)
    recipe = OmegaConf.to_container(
        OmegaConf.load(ROOT / "conf" / "recipe" / "grpo_tiny.yaml"), resolve=True
    )
    curves: dict[str, list[list[float]]] = {}
    start = time.perf_counter()
    for index in itertools.product(*(range(len(v)) for v in GRID.values())):
        cfg = copy.deepcopy(recipe)
        for (key, values), i in zip(GRID.items(), index, strict=True):
            _set(cfg, key, values[i])
        curve: dict[int, float] = {}
        train(cfg, on_validation=lambda s, m, c=curve: c.__setitem__(int(s), float(m[METRIC])))
        curves[",".join(map(str, index))] = [[s, v] for s, v in sorted(curve.items())]
    return {
        "recipe": "conf/recipe/grpo_tiny.yaml",
        "metric": METRIC,
        "grid": GRID,
        "seconds": round(time.perf_counter() - start, 1),
        "curves": curves,
    }


def load() -> dict[str, Any]:
    return json.loads(CACHE.read_text())


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    data = build()
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(data, separators=(",", ":")))
    finals = sorted(c[-1][1] for c in data["curves"].values())
    print(f"{len(finals)} curves in {data['seconds']} s; best final {finals[-1]:.4f}")
