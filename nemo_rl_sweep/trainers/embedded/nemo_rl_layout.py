"""Write a run's numbers where NeMo RL writes them, so one reader serves both trainers.

Why: the NeMo RL job runner reads TensorBoard events under ``<logger.log_dir>/exp_NNN/tensorboard/``
and ``<checkpointing.checkpoint_dir>/step_N/training_info.json``. The embedded trainer's script
writes the same files with the same tags, so a sweep over it exercises that runner end to end.

- ``next_experiment_dir``: NeMo RL's rule, a new ``exp_NNN`` per launch (one more than the highest).
- Scalars: ``SummaryWriter.add_scalar(tag, value, step)`` with NeMo RL's tags (``train/loss``,
  ``validation/accuracy``, ``timing/train/total_step_time``, ...).
- Checkpoints: every ``checkpointing.save_period`` steps and at the last step (the trainer state in
  ``trainer_state.pt``, from which a relaunch in the same folder resumes, as NeMo RL does), written to
  ``tmp_step_N`` then renamed to ``step_N`` (a reader never sees half a checkpoint); the
  ``training_info.json`` holds ``step`` and the metrics as NeMo RL names them (``val:accuracy``,
  ``train:loss``); only the best ``keep_top_k`` by ``checkpointing.metric_name`` are kept, and
  the latest.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

STATE_FILE = "trainer_state.pt"
_EXP = re.compile(r"exp_(\d+)$")
_STEP = re.compile(r"step_(\d+)$")


def next_experiment_dir(log_dir: str | Path) -> Path:
    """Create and return ``<log_dir>/exp_NNN`` with NNN one more than the highest there (from 001)."""
    base = Path(log_dir)
    numbers = [int(m.group(1)) for p in base.glob("exp_*") if (m := _EXP.search(p.name))]
    folder = base / f"exp_{max(numbers, default=0) + 1:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def checkpoint_key(tag: str) -> str:
    """NeMo RL's checkpoint-metric name for a logged tag: ``validation/accuracy`` -> ``val:accuracy``."""
    prefix, _, name = tag.partition("/")
    if prefix == "validation":
        return f"val:{name}"
    return f"{prefix}:{name}" if name else tag


def latest_checkpoint(checkpoint_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The finished ``step_N`` with the highest N that holds a trainer state, and its info."""
    found = []
    for folder in Path(checkpoint_dir).glob("step_*"):
        match = _STEP.search(folder.name)
        if match and (folder / STATE_FILE).is_file() and (folder / "training_info.json").is_file():
            found.append((int(match.group(1)), folder))
    if not found:
        return None
    folder = max(found)[1]
    return folder, json.loads((folder / "training_info.json").read_text())


def load_state(folder: Path) -> dict[str, Any]:
    """The trainer state saved in checkpoint ``folder``."""
    import torch

    return torch.load(folder / STATE_FILE, weights_only=True)


class TensorBoardScalars:
    """Scalars into ``<exp_dir>/tensorboard``; torch's SummaryWriter is imported only when used."""

    def __init__(self, exp_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = exp_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # a runner polling the events sees each step as it ends

    def close(self) -> None:
        self.writer.close()


class CheckpointWriter:
    """``step_N/training_info.json`` every ``save_period`` steps and at the last step."""

    def __init__(self, checkpointing: Mapping[str, Any], max_num_steps: int) -> None:
        self.folder = Path(checkpointing["checkpoint_dir"])
        self.save_period = int(checkpointing.get("save_period") or 0)
        self.metric_name = checkpointing.get("metric_name")
        self.higher_is_better = bool(checkpointing.get("higher_is_better", True))
        top_k = checkpointing.get("keep_top_k")
        self.keep_top_k = None if top_k is None else int(top_k)
        self.max_num_steps = max_num_steps
        self.latest: dict[str, float] = {}

    def on_step(
        self,
        step: int,
        metrics: Mapping[str, float],
        extra: Mapping[str, Any],
        state: Callable[[], Mapping[str, Any]] | None = None,
    ) -> Path | None:
        """Remember this step's numbers; save when the step is due (``state()`` gives the
        trainer state to store with it). Returns the checkpoint folder when one was written."""
        self.latest.update(
            {checkpoint_key(k): float(v) for k, v in metrics.items() if not k.startswith("timing/")}
        )
        periodic = self.save_period > 0 and step % self.save_period == 0
        if step > 0 and (periodic or step == self.max_num_steps):
            return self.save(step, extra, None if state is None else state())
        return None

    def save(
        self, step: int, extra: Mapping[str, Any], state: Mapping[str, Any] | None = None
    ) -> Path:
        info = {"step": step, **extra, **self.latest}
        tmp = self.folder / f"tmp_step_{step}"
        final = self.folder / f"step_{step}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if state is not None:
            import torch

            torch.save(dict(state), tmp / STATE_FILE)
        (tmp / "training_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        self._keep_top_k(latest=step)
        return final

    def _keep_top_k(self, latest: int) -> None:
        """Delete all but the best ``keep_top_k`` checkpoints; the latest one always stays.

        As NeMo RL does: ranked by the checkpoint metric (by step when ``metric_name`` is null),
        a checkpoint lacking the metric ranks last.
        """
        if self.keep_top_k is None:
            return
        ranked = []
        for folder in self.folder.glob("step_*"):
            match = _STEP.search(folder.name)
            if not match:
                continue
            step = int(match.group(1))
            score = float(step)
            if self.metric_name:
                try:
                    info = json.loads((folder / "training_info.json").read_text())
                    value = float(info[self.metric_name])
                    score = value if self.higher_is_better else -value
                except (OSError, ValueError, KeyError, TypeError):
                    score = math.nan
                score = -math.inf if math.isnan(score) else score
            ranked.append((score, step, folder))
        ranked.sort(key=lambda r: (r[0], r[1]), reverse=True)
        for _, step, folder in ranked[self.keep_top_k :]:
            if step != latest:
                shutil.rmtree(folder, ignore_errors=True)
