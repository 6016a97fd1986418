"""Running real Hydra apps in subprocesses, as a user would, and reading what they leave behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import yaml

REPO = Path(__file__).resolve().parents[1]
TOY_APP = REPO / "tests" / "apps" / "toy.py"
TRAIN_APP = REPO / "train.py"
# the real NeMo RL configs: ../shared beside the project (CI lays it there; a git worktree gets a link)
NEMO_RL_CONFIGS = REPO.parent / "shared" / "nemo_rl" / "examples" / "configs"


def run_app(
    app: Path, args: list[str], cwd: Path, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {})}
    env.setdefault("HYDRA_FULL_ERROR", "0")
    return subprocess.run(
        [sys.executable, str(app), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def sweep_dirs(cwd: Path) -> list[Path]:
    return sorted(p.parent for p in (cwd / "multirun").glob("*/*/optimization_results.yaml"))


def results(sweep_dir: Path) -> dict:
    return yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())


def load_study(sweep_dir: Path) -> optuna.Study:
    res = results(sweep_dir)
    return optuna.load_study(study_name=res["study_name"], storage=res["storage"])


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
