"""A stand-in for NeMo RL's example scripts, for tests on a machine without GPUs.

It behaves as NeMo RL does where a sweep depends on it, and nowhere else:

- ``python examples/run_grpo.py --config <yaml> key=value ...``: the recipe is loaded with its
  ``defaults:`` chain and the overrides applied (Hydra's grammar on a struct config), then every
  interpolation is resolved in the script's own environment (``${oc.env:...}`` included);
- GRPO asserts NeMo RL's batch rule: ``grpo.num_prompts_per_step x grpo.num_generations_per_prompt``
  must be a multiple of ``policy.train_global_batch_size`` (``BatchedDataDict.shard_by_batch_size``
  in nemo_rl/distributed/batched_data_dict.py asserts it at the first training step);
- it resumes from the latest ``<checkpointing.checkpoint_dir>/step_N/training_info.json``, as
  NeMo RL's checkpoint manager does, so a run started in another run's folder continues that run;
- scalars go to TensorBoard under ``<logger.log_dir>/exp_NNN/tensorboard`` (the next free NNN, as
  NeMo RL's ``get_next_experiment_dir``), a checkpoint every ``checkpointing.save_period`` steps
  holds ``training_info.json`` and ``policy/weights.bin`` (WEIGHT_BYTES bytes).

The numbers are a known function of the learning rate and the step (``value``), so a test can
tell which trial's numbers it reads. What the script saw is printed (``standin: key=value``) to
its log: the GPUs, Ray's temp folder, the tracker names. With ``STANDIN_BARRIER_DIR`` and
``STANDIN_BARRIER_COUNT`` set, it waits after starting until that many runs have started, so a
test can prove runs overlapped. ``STANDIN_STEP_S`` (seconds per training step, default 0) makes a
run last long enough to be watched, cancelled or requeued while it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

WEIGHT_BYTES = 100_000
# the validation tag each algorithm writes, and whether higher is better
METRICS = {
    "grpo": ("validation/accuracy", True),
    "sft": ("validation/val_loss", False),
    "dpo": ("validation-default/loss", False),
}


def value(algorithm: str, lr: float, step: int) -> float:
    """The validation number of a run with learning rate ``lr`` at ``step``."""
    progress = lr * 1e4 * step
    return progress if METRICS[algorithm][1] else 1.0 / (1.0 + progress)


def learning_rate(cfg: dict) -> float:
    """``policy.optimizer.kwargs.lr``, or Megatron's ``policy.megatron_cfg.optimizer.lr``."""
    policy = cfg["policy"]
    if policy.get("megatron_cfg", {}).get("enabled"):
        return float(policy["megatron_cfg"]["optimizer"]["lr"])
    return float(policy["optimizer"]["kwargs"]["lr"])


def latest_checkpoint(checkpoint_dir: Path) -> int:
    steps = [
        int(m.group(1))
        for p in checkpoint_dir.glob("step_*/training_info.json")
        if (m := re.fullmatch(r"step_(\d+)", p.parent.name))
    ]
    return max(steps, default=0)


def next_experiment_dir(log_dir: Path) -> Path:
    ids = [
        int(m.group(1)) for p in log_dir.glob("exp_*") if (m := re.fullmatch(r"exp_(\d+)", p.name))
    ]
    folder = log_dir / f"exp_{max(ids, default=0) + 1:03d}"
    folder.mkdir(parents=True)
    return folder


def wait_for_others() -> None:
    folder, count = os.environ.get("STANDIN_BARRIER_DIR"), os.environ.get("STANDIN_BARRIER_COUNT")
    if not folder or not count:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"started-{os.getpid()}").touch()
    deadline = time.monotonic() + 120  # a broken slot lock must fail the test, not hang it
    while len(list(Path(folder).glob("started-*"))) < int(count) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"standin: overlapped={len(list(Path(folder).glob('started-*')))}", flush=True)


def main(algorithm: str) -> None:
    from omegaconf import OmegaConf
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from nemo_rl_sweep.trainers.nemo_rl.config import apply_overrides, load_recipe

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    args, overrides = parser.parse_known_args()
    loaded = load_recipe(args.config)
    apply_overrides(loaded, overrides)
    cfg = OmegaConf.to_container(loaded, resolve=True)
    section = cfg[algorithm]
    if algorithm == "grpo":
        samples = section["num_prompts_per_step"] * section["num_generations_per_prompt"]
        gbs = cfg["policy"]["train_global_batch_size"]
        assert samples % gbs == 0, (
            f"Total batch size ({samples}) is not a multiple of batch_size ({gbs})"
        )
    logger = cfg["logger"]
    for key in ("CUDA_VISIBLE_DEVICES", "RAY_TMPDIR"):
        print(f"standin: {key}={os.environ.get(key, '')}", flush=True)
    print(f"standin: policy.model_name={cfg['policy']['model_name']}", flush=True)
    ports = (
        cfg["cluster"].get("master_port_range_low"),
        cfg["cluster"].get("master_port_range_high"),
    )
    print(f"standin: master_ports={ports[0]}-{ports[1]}", flush=True)
    if logger.get("wandb_enabled"):
        print(f"standin: wandb.name={logger['wandb'].get('name')}", flush=True)
        print(f"standin: wandb.group={logger['wandb'].get('group')}", flush=True)
    wait_for_others()

    lr = learning_rate(cfg)
    checkpointing = cfg["checkpointing"]
    checkpoint_dir = Path(checkpointing["checkpoint_dir"])
    start = latest_checkpoint(checkpoint_dir) if checkpointing["enabled"] else 0
    print(f"standin: resumed_from_step={start}", flush=True)
    writer = EventFileWriter(str(next_experiment_dir(Path(logger["log_dir"])) / "tensorboard"))

    def scalar(tag: str, number: float, step: int) -> None:
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, simple_value=number)]
        )
        writer.add_event(event_pb2.Event(step=step, wall_time=time.time(), summary=summary))

    tag = METRICS[algorithm][0]
    step_s = float(os.environ.get("STANDIN_STEP_S", "0"))
    for step in range(start + 1, section["max_num_steps"] + 1):
        time.sleep(step_s)
        scalar("train/loss", 1.0 / step, step)
        if section["val_period"] > 0 and step % section["val_period"] == 0:
            scalar(tag, value(algorithm, lr, step), step)
            writer.flush()
        if checkpointing["enabled"] and step % checkpointing["save_period"] == 0:
            folder = checkpoint_dir / f"step_{step}"
            (folder / "policy").mkdir(parents=True)
            (folder / "policy" / "weights.bin").write_bytes(b"\0" * WEIGHT_BYTES)
            info = {"step": step, "val:" + tag.rsplit("/", 1)[1]: value(algorithm, lr, step)}
            (folder / "training_info.json").write_text(json.dumps(info))
    writer.close()
