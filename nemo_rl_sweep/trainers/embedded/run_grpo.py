"""The embedded GRPO trainer with NeMo RL's command line: ``--config <yaml> key=value ...``.

Why a script: NeMo RL trains through scripts (``examples/run_grpo.py --config ... key=value``), and
the NeMo RL job runner launches such a script per trial and reads its files. This one behaves the
same way (same argument form, same struct-mode overrides, same output layout), so the runner is
tested end to end with a real subprocess, no GPU and no NeMo RL needed::

    python -m nemo_rl_sweep.trainers.embedded.run_grpo --config conf/recipe/grpo_tiny.yaml \\
        policy.optimizer.kwargs.lr=1e-2 logger.log_dir=/tmp/run/logs

Overrides use Hydra's grammar on a struct config: an unknown key is an error unless written
``+key=`` / ``++key=``. The YAML may use NeMo RL's ``defaults:`` inheritance. Like NeMo RL it
resumes from the latest ``step_N`` checkpoint in its checkpoint folder. It prints one progress
line per step, writes TensorBoard scalars under ``<logger.log_dir>/exp_NNN/tensorboard/`` (when
``logger.tensorboard_enabled``) and ``<checkpointing.checkpoint_dir>/step_N/training_info.json``
(when ``checkpointing.enabled``), and exits non-zero on any error (2 for bad configuration).
With the same seed its numbers equal the in-process ``train``'s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "conf" / "recipe" / "grpo_tiny.yaml"


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """``--config`` plus the remaining ``key=value`` overrides, as NeMo RL's scripts parse them."""
    parser = argparse.ArgumentParser(description="Run the embedded GRPO trainer")
    parser.add_argument(
        "--config",
        type=str,
        default=None,
        help=f"Path to YAML config file (default {DEFAULT_CONFIG})",
    )
    return parser.parse_known_args(argv)


def load_config(path: str | Path, overrides: list[str]) -> dict[str, Any]:
    """The recipe with NeMo RL's inheritance and struct-mode overrides applied, resolved."""
    from omegaconf import OmegaConf

    from nemo_rl_sweep.trainers.nemo_rl.config import apply_overrides, load_recipe

    config = load_recipe(path)
    if overrides:
        apply_overrides(config, overrides)
    return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]


def _progress(step: int, total: int, metrics: dict[str, float]) -> str:
    if step == 0:
        return f"Step 0/{total}: validation accuracy={metrics['validation/accuracy']:.4f}"
    line = (
        f"Step {step}/{total}: loss={metrics['train/loss']:.4f} "
        f"reward={metrics['train/reward']:.4f} "
        f"step_time={metrics['timing/train/total_step_time']:.4f}s"
    )
    if "validation/accuracy" in metrics:
        line += f" | validation accuracy={metrics['validation/accuracy']:.4f}"
    return line


def run(config: dict[str, Any]) -> dict[str, float]:
    """Train with ``config`` and write NeMo RL's layout; returns the final metrics."""
    from nemo_rl_sweep.trainers.embedded.grpo import train
    from nemo_rl_sweep.trainers.embedded.nemo_rl_layout import (
        CheckpointWriter,
        TensorBoardScalars,
        latest_checkpoint,
        load_state,
        next_experiment_dir,
    )
    from nemo_rl_sweep.trainers.embedded.settings import GRPOSettings

    settings = GRPOSettings.from_cfg(config)  # refuse bad values before writing anything
    logger, checkpointing = config.get("logger") or {}, config.get("checkpointing") or {}
    scalars = None
    if logger.get("tensorboard_enabled"):
        exp_dir = next_experiment_dir(logger.get("log_dir") or "logs")
        scalars = TensorBoardScalars(exp_dir)
        print(f"TensorBoard events: {scalars.folder}", flush=True)
    checkpoints, resume_from = None, None
    if checkpointing.get("enabled"):
        checkpoints = CheckpointWriter(checkpointing, settings.max_num_steps)
        print(f"Checkpoints: {checkpoints.folder}", flush=True)
        found = latest_checkpoint(checkpoints.folder)
        if found is not None:
            folder, info = found
            resume_from = load_state(folder)
            checkpoints.latest.update(
                {k: v for k, v in info.items() if ":" in k and isinstance(v, (int, float))}
            )
            print(f"Resuming from checkpoint {folder} (step {resume_from['step']})", flush=True)
    rollouts = settings.num_prompts_per_step * settings.num_generations_per_prompt

    def on_step(step: int, metrics: dict[str, float], run: Any) -> None:
        if scalars is not None:
            scalars.log(step, metrics)
        if checkpoints is not None:
            extra = {"total_steps": step, "consumed_samples": step * rollouts}
            checkpoints.on_step(step, metrics, extra, run.state_dict)
        print(_progress(step, settings.max_num_steps, metrics), flush=True)

    try:
        return train(config, on_step=on_step, resume_from=resume_from)
    finally:
        if scalars is not None:
            scalars.close()


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    from nemo_rl_sweep.errors import SweepConfigError

    path = args.config or DEFAULT_CONFIG
    try:
        config = load_config(path, overrides)
        from nemo_rl_sweep.trainers.embedded.settings import GRPOSettings

        GRPOSettings.from_cfg(config)
    except (SweepConfigError, KeyError, ValueError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(f"Loaded configuration from: {path}", flush=True)
    if overrides:
        print(f"Overrides: {' '.join(overrides)}", flush=True)
    metrics = run(config)
    print("Final metrics: " + ", ".join(f"{k}={v:.6g}" for k, v in sorted(metrics.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
