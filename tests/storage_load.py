"""Many sweepers at once on one study: start them, wait, and read back what the ledger holds.

Shared by the load tests (tests/test_storage_load.py) and the measuring script
(benchmarks/storage_load_benchmark.py). Each sweeper is a real Hydra run of the toy app, as a user
starts one on a login node; the checks read the study back from the storage.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from tests.test_resume import _start


def grid_args(points: int) -> list[str]:
    """A grid of ``points`` points (a multiple of 4: x in range(0, points / 4), y in range(0, 4))."""
    return [
        "hydra.sweeper.strategy=grid",
        "hydra.sweeper.n_trials=null",
        f"x=range(0,{points // 4})",
    ]


def random_args(n_trials: int) -> list[str]:
    return ["hydra.sweeper.strategy=random", f"hydra.sweeper.n_trials={n_trials}"]


@dataclass
class Group:
    """``sweepers`` sweepers of one study, all started at once."""

    study: str
    strategy: str  # grid | random
    trials: int
    sweepers: int

    def args(self) -> list[str]:
        return grid_args(self.trials) if self.strategy == "grid" else random_args(self.trials)


@dataclass
class Sweeper:
    group: Group
    returncode: int
    stdout: str
    stderr: str


@dataclass
class LoadRun:
    """What the sweepers left: their exit codes and outputs, and each study's trials."""

    sweepers: list[Sweeper]
    trials: dict[str, list[FrozenTrial]]
    wall_s: float

    def problems(self) -> list[str]:
        """Everything that breaks the contract: empty when the storage held the load."""
        out = []
        for i, sw in enumerate(self.sweepers):
            if sw.returncode != 0:
                out.append(
                    f"sweeper {i} ({sw.group.study}) exited {sw.returncode}: {sw.stderr[-1500:]}"
                )
            for line in sw.stderr.splitlines():
                if "Traceback" in line:
                    out.append(f"sweeper {i} ({sw.group.study}) printed a traceback")
        for group in {sw.group.study: sw.group for sw in self.sweepers}.values():
            out += _study_problems(group, self.trials[group.study])
        return out

    def surplus(self) -> int:
        """Trials closed unrun (another sweeper held the point, or the budget was spent)."""
        return sum(bool(t.user_attrs.get("stale")) for ts in self.trials.values() for t in ts)


def real(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Trials that ran (not closed unrun as stale or surplus)."""
    return [t for t in trials if not t.user_attrs.get("stale")]


def _study_problems(group: Group, trials: list[FrozenTrial]) -> list[str]:
    out = []
    ran = real(trials)
    complete = [t for t in ran if t.state == TrialState.COMPLETE]
    if len(complete) != group.trials or len(ran) != group.trials:
        states = Counter(t.state.name for t in ran)
        out.append(
            f"{group.study}: {len(complete)} complete trials, not {group.trials} ({dict(states)})"
        )
    left = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if left:
        out.append(f"{group.study}: trials left RUNNING or WAITING: {left[:20]}")
    if group.strategy == "grid":
        points = Counter((t.params["x"], t.params["y"]) for t in ran)
        twice = [p for p, n in points.items() if n > 1]
        if twice:
            out.append(f"{group.study}: grid points run twice: {twice[:10]}")
        if len(points) != group.trials:
            out.append(f"{group.study}: {len(points)} grid points ran, not {group.trials}")
    return out


def run_load(groups: list[Group], storage: str, cwd: Path, n_jobs: int = 2) -> LoadRun:
    """Start every group's sweepers at once on ``storage``, wait for all, read the studies back."""
    from nemo_rl_sweep.ledger import open_storage

    t0 = time.monotonic()
    started = []
    for group in groups:
        for i in range(group.sweepers):
            folder = cwd / f"{group.study}-{i}"  # its own folder, as on its own login node
            folder.mkdir(parents=True, exist_ok=True)
            args = [
                f"hydra.sweeper.storage={storage}",
                f"hydra.sweeper.study_name={group.study}",
                f"hydra.sweeper.n_jobs={n_jobs}",
                f"hydra.sweeper.seed={i}",
                *group.args(),
            ]
            started.append((group, _start(args, folder)))
    sweepers = []
    for group, proc in started:
        out, err = proc.communicate()
        sweepers.append(Sweeper(group, proc.returncode, out, err))
    wall = time.monotonic() - t0
    opened = open_storage(storage)
    trials = {
        g.study: optuna.load_study(study_name=g.study, storage=opened).get_trials() for g in groups
    }
    return LoadRun(sweepers, trials, wall)
