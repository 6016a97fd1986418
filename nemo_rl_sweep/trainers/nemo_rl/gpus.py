"""GPU slots: trials running at once on one node each get their own GPUs.

Every NeMo RL run takes all the GPUs it sees (``CUDA_VISIBLE_DEVICES``) and sizes its Ray cluster
from the recipe's ``cluster`` section, so two trials started side by side (the joblib launcher)
would train on the same GPUs. A trial needs ``cluster.gpus_per_node x cluster.num_nodes`` GPUs;
the node's GPUs are cut into slots of that size, and a trial holds a lock file per GPU of its slot
while it runs. The locks are ``flock`` locks: they are shared by every process on the node (joblib
workers are processes) and vanish with the process that held them, so a killed trial frees its
GPUs.

The GPUs trials may use are ``NEMO_RL_SWEEP_GPUS`` (a comma list, e.g. ``0,1,2,3``: set it to
share part of a node, or to test slots on a machine without GPUs), else ``CUDA_VISIBLE_DEVICES``,
else the GPUs ``nvidia-smi -L`` lists; none of them means no GPU is known and no slot is taken.
The lock files live in ``NEMO_RL_SWEEP_GPU_LOCKS`` (default: a folder of the user's, and of the
Slurm job's inside one, in the system temp folder).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nemo_rl_sweep.errors import SweepConfigError

__all__ = [
    "GPUS_ENV",
    "LOCKS_ENV",
    "PORT_RANGES",
    "Slot",
    "gpus_needed",
    "check_slots",
    "hold_slot",
    "share_port_ranges",
    "try_slot",
    "visible_gpus",
]

GPUS_ENV = "NEMO_RL_SWEEP_GPUS"
LOCKS_ENV = "NEMO_RL_SWEEP_GPU_LOCKS"
# the port ranges a NeMo RL run picks its ports from (nemo_rl/distributed/virtual_cluster.py):
# the TCPStore / NCCL rendezvous and the vLLM HTTP servers; a slot gets its own share of each
PORT_RANGES = (
    ("cluster.master_port_range_low", "cluster.master_port_range_high"),
    ("policy.generation.port_range_low", "policy.generation.port_range_high"),
)


@dataclass(frozen=True)
class Slot:
    """The GPUs a running trial holds, and which of the node's ``count`` slots they are."""

    gpus: list[str]
    index: int
    count: int


def visible_gpus(env: Mapping[str, str]) -> list[str] | None:
    """The GPU ids trials on this node may use (see the module docstring), None when unknown."""
    for name in (GPUS_ENV, "CUDA_VISIBLE_DEVICES"):
        text = env.get(name)
        if text is not None and text.strip():
            return [part.strip() for part in text.split(",") if part.strip()]
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        listed = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    ids = [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]
    return ids or None


def gpus_needed(recipe: Mapping[str, Any] | DictConfig) -> int | None:
    """``cluster.gpus_per_node x cluster.num_nodes`` of a recipe; None when it has no such
    section, asks for no GPU, or the values are not known before the job (an ``oc.env`` value)."""
    node = OmegaConf.create(dict(recipe)) if not isinstance(recipe, DictConfig) else recipe
    try:
        per_node = OmegaConf.select(node, "cluster.gpus_per_node", default=None)
        nodes = OmegaConf.select(node, "cluster.num_nodes", default=1)
    except Exception:
        return None
    if not isinstance(per_node, int) or not isinstance(nodes, int):
        return None
    return per_node * nodes if per_node * nodes > 0 else None


def check_slots(need: int | None, visible: Sequence[str] | None, trials_at_once: int) -> None:
    """Refuse a sweep whose trials at once on this node need more GPUs than it has."""
    if need is None or visible is None or trials_at_once < 1:
        return
    slots = len(visible) // need
    if trials_at_once > slots:
        raise SweepConfigError(
            "cluster.gpus_per_node",
            f"{trials_at_once} trial(s) at once need {trials_at_once} x {need} GPUs "
            f"(cluster.gpus_per_node x cluster.num_nodes), but this node shows {len(visible)} "
            f"({','.join(visible)})",
            f"run at most {slots} trial(s) at once (hydra.sweeper.n_jobs / hydra.launcher.n_jobs) "
            "or give each trial fewer GPUs",
        )


def _lock_dir(env: Mapping[str, str]) -> Path:
    """Per user; inside a Slurm job, per job too: Slurm may number each job's GPUs from 0, so two
    jobs sharing a node must not lock each other's ``gpu0``."""
    name = f"nemo_rl_sweep-gpu-locks-{os.getuid()}"
    if env.get("SLURM_JOB_ID"):
        name += f"-slurm{env['SLURM_JOB_ID']}"
    default = Path(tempfile.gettempdir()) / name
    folder = Path(env.get(LOCKS_ENV) or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def share_port_ranges(recipe: DictConfig, slot: Slot) -> None:
    """Give the slot its own part of each port range the recipe has, so runs side by side never
    pick the same port (NeMo RL picks a random free port in the range and binds it later)."""
    for low_key, high_key in PORT_RANGES:
        low = OmegaConf.select(recipe, low_key, default=None)
        high = OmegaConf.select(recipe, high_key, default=None)
        if not isinstance(low, int) or not isinstance(high, int) or high <= low:
            continue
        width = (high - low) // slot.count
        if width < 1:
            continue
        OmegaConf.update(recipe, low_key, low + slot.index * width)
        OmegaConf.update(recipe, high_key, low + (slot.index + 1) * width)


def try_slot(visible: Sequence[str], need: int, env: Mapping[str, str]) -> list[Any] | None:
    """Lock the first free slot of ``need`` GPUs; the open lock files (holding the locks), or
    None when every slot is taken. Slots are aligned groups, so sizes never fragment a node."""
    folder = _lock_dir(env)
    for start in range(0, len(visible) - need + 1, need):
        held = []
        for gpu in visible[start : start + need]:
            handle = open(folder / f"gpu{gpu}.lock", "a+")  # noqa: SIM115 (held while running)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                break
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            held.append(handle)
        if len(held) == need:
            return held
        for handle in held:
            handle.close()  # closing drops the lock
    return None


@contextmanager
def hold_slot(
    visible: Sequence[str], need: int, env: Mapping[str, str], poll_s: float = 1.0
) -> Iterator[Slot]:
    """Wait for a free slot of ``need`` of ``visible`` GPUs and hold it while the block runs."""
    if need > len(visible):
        raise RuntimeError(
            f"the trial needs {need} GPUs (cluster.gpus_per_node x cluster.num_nodes) but this "
            f"node shows {len(visible)} ({','.join(visible)})"
        )
    while (held := try_slot(visible, need, env)) is None:
        time.sleep(poll_s)
    gpus = [Path(h.name).stem.removeprefix("gpu") for h in held]
    try:
        yield Slot(gpus, list(visible).index(gpus[0]) // need, len(visible) // need)
    finally:
        for handle in held:
            handle.close()
