"""Run one NeMo RL training script per trial and read its numbers back.

A trial is one launch of a NeMo RL script (``examples/run_grpo.py``, ``run_sft.py``, ...) as a
subprocess, exactly as a user would start it: ``<command> <script> --config <job>/config.yaml``
with the checkout as working directory. The trial's full recipe is written to the job folder, and
its ``logger.log_dir`` and ``checkpointing.checkpoint_dir`` point inside that folder, because NeMo
RL resumes from any checkpoint it finds: trials sharing a folder would resume each other.

While the script runs, the TensorBoard events (or the ``step_N/training_info.json`` files) are
polled and every new validation value is handed to ``on_validation(step, metrics)``; an exception
raised there (``optuna.TrialPruned``) stops the subprocess and propagates. When the script ends,
the objective is read (best or last value of a TensorBoard tag, or a ``training_info.json`` key).
A non-zero exit or a missing objective raises :class:`NeMoRLRunError` whose message ends with the
last lines of the job's log.

``runner_cfg`` keys (``conf/trainer/nemo_rl.yaml`` documents them for users):

- ``checkout``: the NeMo RL checkout (working directory of the script).
- ``script``: a path relative to ``checkout`` (``examples/run_grpo.py``), or a module name when
  ``command`` ends with ``-m``.
- ``command``: what runs the script, e.g. ``[uv, run, python]``, ``[python]``, ``[python, -m]``;
  empty or null means this interpreter.
- ``objective``: ``tag`` (str or list; the TensorBoard tag(s) or ``training_info.json`` key(s);
  null = the sweep's ``hydra.sweeper.metric``, else ``validation/accuracy``), ``source``
  (``tensorboard`` | ``training_info``), ``reduce`` (``last`` | ``best``), ``higher_is_better``
  (for ``best``; null = from ``hydra.sweeper.direction``, else true).
- optional: ``extra_args`` (list appended to the command), ``env`` (mapping added to the
  environment), ``poll_interval_s`` (default 5), ``kill_grace_s`` (default 30),
  ``exclude_keys`` (top-level keys of ``cfg`` that are not recipe keys; default ``[trainer]``),
  ``log_tail_lines`` (default 20), ``checkpoints`` (``keep`` | ``best`` | ``none``; the sweeper
  applies it, see ``checkpoints.py``).

Around the run: the job folder belongs to one trial (``folder.py``: a run for another trial is
refused there), the trial names its W&B / MLflow / SwanLab run and gets its own Ray temp folder,
and, where GPUs are known, it holds its own slot of ``cluster.gpus_per_node x cluster.num_nodes``
GPUs while it runs (``gpus.py``). Values reading the environment (``${oc.env:...}``) are resolved
in the job's environment with ``env`` applied, and skipped by the check before launch
(``envvars.py``).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.trainers import OnValidation
from nemo_rl_sweep.trainers.nemo_rl.checkpoints import checkpoint_mode
from nemo_rl_sweep.trainers.nemo_rl.config import register_resolvers
from nemo_rl_sweep.trainers.nemo_rl.envvars import job_environment, reads_env, without_env_values
from nemo_rl_sweep.trainers.nemo_rl.folder import (
    FolderTaken,
    TrialIdentity,
    claim_folder,
    current_identity,
    name_external_runs,
    ray_temp_dir,
)
from nemo_rl_sweep.trainers.nemo_rl.gpus import (
    check_slots,
    gpus_needed,
    hold_slot,
    share_port_ranges,
    visible_gpus,
)
from nemo_rl_sweep.trainers.nemo_rl.tensorboard import ScalarLog

__all__ = [
    "NeMoRLRunError",
    "check_nemo_rl_trial",
    "Objective",
    "RunnerSettings",
    "prepare_recipe",
    "read_final_metrics",
    "ValidationProgress",
    "run_nemo_rl_trial",
]

_STEP_DIR = re.compile(r"step_(\d+)$")


class NeMoRLRunError(RuntimeError):
    """The NeMo RL job failed (non-zero exit, missing objective); the message carries the log tail."""


@dataclass(frozen=True)
class Objective:
    """Which numbers of a run are its objective and how to reduce a series to one value."""

    tags: tuple[str, ...]
    source: str = "tensorboard"
    reduce: str = "last"
    higher_is_better: bool = True

    @classmethod
    def from_cfg(
        cls, node: Any, default_tag: Any = None, default_higher: bool | None = None
    ) -> Objective:
        """From ``trainer.objective``; a null ``tag`` / ``higher_is_better`` takes the defaults
        given (the sweep's ``metric`` / ``direction``), else ``validation/accuracy`` / true."""
        node = _plain(node) or {}
        raw = node.get("tag")
        if raw is None:
            raw = default_tag if default_tag else "validation/accuracy"
        tags = (raw,) if isinstance(raw, str) else tuple(str(t) for t in raw or ())
        if not tags or not all(tags):
            raise SweepConfigError(
                "trainer.objective.tag", "is empty", "name a TensorBoard tag: validation/accuracy"
            )
        source = str(node.get("source", "tensorboard"))
        if source not in ("tensorboard", "training_info"):
            raise SweepConfigError(
                "trainer.objective.source",
                f"unknown source {source!r}",
                "use tensorboard or training_info",
            )
        reduce = str(node.get("reduce", "last"))
        if reduce not in ("last", "best"):
            raise SweepConfigError(
                "trainer.objective.reduce", f"unknown reduction {reduce!r}", "use last or best"
            )
        if reduce == "best" and len(tags) > 1:
            raise SweepConfigError(
                "trainer.objective.reduce",
                "best needs a single objective tag",
                "use reduce=last when the sweep has several objectives",
            )
        higher = node.get("higher_is_better")
        if higher is None:
            higher = True if default_higher is None else default_higher
        return cls(tags, source, reduce, bool(higher))

    def pick(self, series: Sequence[tuple[int, float]]) -> float:
        """Last value (highest step) or best value of a non-empty (step, value) series."""
        if self.reduce == "last":
            return max(series)[1]
        values = [v for _, v in series if not math.isnan(v)] or [series[-1][1]]
        return max(values) if self.higher_is_better else min(values)


@dataclass(frozen=True)
class RunnerSettings:
    """The validated runner configuration; built before anything is launched."""

    checkout: Path
    script: str
    command: tuple[str, ...]
    objective: Objective
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    poll_interval_s: float = 5.0
    kill_grace_s: float = 30.0
    exclude_keys: tuple[str, ...] = ("trainer",)
    log_tail_lines: int = 20
    checkpoints: str = "keep"

    @classmethod
    def from_cfg(
        cls,
        runner_cfg: Any,
        sweep_metric: Any = None,
        sweep_direction: Any = None,
        check_paths: bool = True,
    ) -> RunnerSettings:
        """Validate ``runner_cfg`` (mapping or DictConfig); refuse bad input with one line.

        ``sweep_metric`` / ``sweep_direction`` (the sweeper's ``metric`` and ``direction``) fill
        a null ``objective.tag`` / ``objective.higher_is_better``. ``check_paths=False`` takes the
        checkout and script on trust (the job's environment will decide them).
        """
        node = _plain(runner_cfg) or {}
        checkout_raw = node.get("checkout")
        if not check_paths:
            checkout_raw = checkout_raw or "."
        if not checkout_raw:
            raise SweepConfigError(
                "trainer.checkout",
                "the NeMo RL checkout is not set",
                "pass trainer.checkout=/path/to/RL or export NEMO_RL_DIR=/path/to/RL",
            )
        checkout = Path(str(checkout_raw)).expanduser().resolve()
        if check_paths and not checkout.is_dir():
            raise SweepConfigError(
                "trainer.checkout",
                f"{checkout} is not a directory",
                "point trainer.checkout at a NeMo RL checkout",
            )
        command = tuple(str(c) for c in (node.get("command") or ()))
        if not command:
            command = (sys.executable,)
        script = str(node.get("script") or "")
        if not script:
            raise SweepConfigError(
                "trainer.script", "no script given", "e.g. trainer.script=examples/run_grpo.py"
            )
        if check_paths and command[-1] != "-m":
            script_path = Path(script) if Path(script).is_absolute() else checkout / script
            if not script_path.is_file():
                raise SweepConfigError(
                    "trainer.script",
                    f"{script_path} does not exist",
                    "give a script path relative to trainer.checkout, e.g. examples/run_grpo.py",
                )
        env = {str(k): str(v) for k, v in (node.get("env") or {}).items()}
        return cls(
            checkout=checkout,
            script=script,
            command=command,
            objective=Objective.from_cfg(
                node.get("objective"), sweep_metric, _higher_is_better(sweep_direction)
            ),
            extra_args=tuple(str(a) for a in (node.get("extra_args") or ())),
            env=env,
            poll_interval_s=float(node.get("poll_interval_s", 5.0)),
            kill_grace_s=float(node.get("kill_grace_s", 30.0)),
            exclude_keys=tuple(node.get("exclude_keys", ("trainer",)) or ()),
            log_tail_lines=int(node.get("log_tail_lines", 20)),
            checkpoints=checkpoint_mode(node.get("checkpoints")),
        )


def _higher_is_better(direction: Any) -> bool | None:
    """True for ``maximize``, False for ``minimize`` (first of a list), None when unknown."""
    if isinstance(direction, list | tuple):
        direction = direction[0] if direction else None
    if direction is None:
        return None
    return str(direction).lower().startswith("max")


def _sweep_objective() -> tuple[Any, Any]:
    """The running Hydra sweep's ``metric`` and ``direction``, or (None, None) outside one."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None, None
    sweeper = HydraConfig.get().sweeper
    metric, direction = sweeper.get("metric"), sweeper.get("direction")
    return _plain(metric), _plain(direction)


def _plain(node: Any) -> Any:
    """A DictConfig/ListConfig as plain Python (interpolations resolved), anything else as is."""
    if isinstance(node, DictConfig) or OmegaConf.is_list(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def prepare_recipe(
    cfg: Mapping[str, Any] | DictConfig,
    job_dir: Path,
    settings: RunnerSettings,
    identity: TrialIdentity | None = None,
    before_launch: bool = False,
) -> DictConfig:
    """The trial's recipe with its own log and checkpoint folders, TensorBoard on, and its own
    run names in the trackers the recipe turns on (``identity``).

    ``cfg`` is not modified. Top-level keys in ``settings.exclude_keys`` (the runner's own config)
    are dropped. Interpolations stay unresolved (NeMo RL resolves them itself), but they must
    resolve here too, so a broken one fails before launch: in the job's environment (with
    ``settings.env``), or, ``before_launch``, without the values that read the environment.
    """
    register_resolvers()
    if isinstance(cfg, DictConfig):
        recipe = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    else:
        recipe = OmegaConf.create(dict(cfg))
    assert isinstance(recipe, DictConfig)
    for key in settings.exclude_keys:
        recipe.pop(key, None)
    OmegaConf.update(recipe, "logger.log_dir", str(job_dir / "logs"), force_add=True)
    OmegaConf.update(recipe, "logger.tensorboard_enabled", True, force_add=True)
    OmegaConf.update(
        recipe, "checkpointing.checkpoint_dir", str(job_dir / "checkpoints"), force_add=True
    )
    name_external_runs(recipe, identity or TrialIdentity())
    if settings.objective.source == "training_info" and not OmegaConf.select(
        recipe, "checkpointing.enabled", default=False
    ):
        raise SweepConfigError(
            "checkpointing.enabled",
            "is false, so the run writes no step_N/training_info.json to read the objective from",
            "set checkpointing.enabled=true or trainer.objective.source=tensorboard",
        )
    try:
        if before_launch:
            OmegaConf.to_container(without_env_values(recipe), resolve=True, throw_on_missing=False)
        else:
            with job_environment(settings.env):
                OmegaConf.to_container(recipe, resolve=True)
    except Exception as exc:
        key = getattr(exc, "full_key", "") or "recipe"
        raise SweepConfigError(
            str(key), f"interpolation does not resolve ({str(exc).splitlines()[0]})", "fix it"
        ) from exc
    return recipe


def _checkpoints(checkpoint_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    """(step, training_info) of every finished ``step_N`` checkpoint, in step order."""
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for folder in checkpoint_dir.iterdir():
        match = _STEP_DIR.fullmatch(folder.name)
        info_file = folder / "training_info.json"
        if match and info_file.is_file():
            try:
                info = json.loads(info_file.read_text())
            except (OSError, ValueError):
                continue  # being written; picked up at the next poll
            found.append((int(match.group(1)), info))
    return sorted(found, key=lambda item: item[0])


def _numbers(info: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in info.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


class ValidationProgress:
    """Turns the growing files of a run into new validation results, each reported once."""

    def __init__(self, job_dir: Path, objective: Objective) -> None:
        self.objective = objective
        self.scalars = ScalarLog(job_dir / "logs")
        self.checkpoint_dir = job_dir / "checkpoints"
        self.reported: set[int] = set()

    def new_validations(self) -> list[tuple[int, dict[str, float]]]:
        first = self.objective.tags[0]
        self.scalars.poll()
        out: list[tuple[int, dict[str, float]]] = []
        if self.objective.source == "tensorboard":
            prefix = first.split("/", 1)[0] + "/" if "/" in first else first
            for step, _ in self.scalars.series(first):
                if step not in self.reported:
                    self.reported.add(step)
                    out.append((step, self.scalars.at_step(step, prefix)))
        else:
            for step, info in _checkpoints(self.checkpoint_dir):
                if step not in self.reported and first in info:
                    self.reported.add(step)
                    out.append((step, _numbers(info)))
        return out


def _tail(log_file: Path, lines: int) -> str:
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def read_final_metrics(
    job_dir: Path, objective: Objective, log_file: Path | None = None, tail_lines: int = 20
) -> dict[str, float]:
    """The numbers a finished run left: the last value of every TensorBoard tag, with the
    objective tag(s) reduced as asked (from ``training_info.json`` when that is the source).

    Raises :class:`NeMoRLRunError` naming the tag and what was written instead if an objective is
    missing.
    """
    scalars = ScalarLog(job_dir / "logs")
    scalars.poll()
    checkpoints = _checkpoints(job_dir / "checkpoints")
    metrics: dict[str, float] = scalars.last_values()
    for tag in objective.tags:
        if objective.source == "tensorboard":
            series = scalars.series(tag)
            where = f"TensorBoard events under {job_dir / 'logs'}/exp_*/tensorboard"
            present = ", ".join(scalars.tags()) or "none"
        else:
            series = [
                (s, float(i[tag])) for s, i in checkpoints if isinstance(i.get(tag), int | float)
            ]
            where = f"training_info.json under {job_dir / 'checkpoints'}/step_*"
            present = ", ".join(sorted({k for _, i in checkpoints for k in i})) or "none"
        if not series:
            tail = _tail(log_file, tail_lines) if log_file else ""
            raise NeMoRLRunError(
                f"objective {tag!r} was never written to {where} (written: {present}); "
                f"set trainer.objective.tag to one of them"
                + (f"\n--- last lines of {log_file} ---\n{tail}" if log_file else "")
            )
        metrics[tag] = objective.pick(series)
    return metrics


def _stop(proc: subprocess.Popen, grace_s: float) -> None:
    """Terminate the script's whole process group (TERM, then KILL after ``grace_s``).

    Waits for every member of the group, not only the script: a trainer's workers (data loaders,
    generation servers) must be gone before the next trial takes the GPUs.
    """
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        proc.poll()  # reap the leader as soon as it exits
        time.sleep(0.05)
    if _group_alive(proc.pid):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    deadline = time.monotonic() + 5.0
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies waiting to be reaped do not count)."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():  # not Linux: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc_dir.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _stop_on_sigterm(proc: subprocess.Popen, grace_s: float) -> Any:
    """While the script runs, a SIGTERM to this job stops the script's process group first.

    The script runs in its own session (so pruning can stop all of it), which also means a
    SIGTERM sent to this job alone (a cancelled local job) would not reach it. The previous
    handler is chained, or the default exit (143) taken. Returns the previous handler, or None
    when not on the main thread (where Python cannot set handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None:  # set outside Python; the default is the closest we can restore
        previous = signal.SIG_DFL

    def handler(signum: int, frame: Any) -> None:
        _stop(proc, grace_s)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    return previous


def _default_job_dir() -> Path:
    """The running Hydra job's output folder, or the working directory outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def check_nemo_rl_trial(
    cfg: Mapping[str, Any] | DictConfig,
    runner_cfg: Mapping[str, Any] | DictConfig | None = None,
    sweep_metric: Any = None,
    sweep_direction: Any = None,
    trials_at_once: int | None = None,
) -> None:
    """Refuse a trial config the runner would refuse, without launching anything.

    For the sweeper to call once before the first job: a missing checkout or script, a bad
    objective, a ``training_info`` objective with checkpointing off, an interpolation that
    does not resolve, or ``trials_at_once`` trials on this node needing more GPUs than it shows
    raise :class:`SweepConfigError` here instead of failing every trial. What the job's
    environment decides (``${oc.env:...}`` values, a checkout read from the environment that is
    not here) is left for the job.
    """
    if runner_cfg is None:
        runner_cfg = cfg.get("trainer")
    settings = RunnerSettings.from_cfg(
        runner_cfg, sweep_metric, sweep_direction, check_paths=_paths_known(runner_cfg)
    )
    recipe = prepare_recipe(
        cfg, Path("/job-dir-checked-before-launch"), settings, before_launch=True
    )
    if trials_at_once is not None and "RAY_ADDRESS" not in (settings.env or {}):
        env = {**os.environ, **(settings.env or {})}
        check_slots(gpus_needed(without_env_values(recipe)), visible_gpus(env), trials_at_once)


def _paths_known(runner_cfg: Any) -> bool:
    """False when the checkout comes from the environment and is not a folder here: the job's
    own setup (the launcher's setup lines) may set it."""
    if isinstance(runner_cfg, DictConfig):
        raw = OmegaConf.to_container(runner_cfg, resolve=False).get("checkout")
    else:
        raw = (runner_cfg or {}).get("checkout")
    if not reads_env(raw):
        return True
    resolved = (_plain(runner_cfg) or {}).get("checkout")
    return bool(resolved) and Path(str(resolved)).expanduser().is_dir()


def run_nemo_rl_trial(
    cfg: Mapping[str, Any] | DictConfig,
    runner_cfg: Mapping[str, Any] | DictConfig | None = None,
    job_dir: str | Path | None = None,
    on_validation: OnValidation | None = None,
    identity: TrialIdentity | None = None,
) -> dict[str, float]:
    """Run one NeMo RL training job for a trial and return its metrics.

    ``cfg`` is the trial's full recipe (NeMo RL key layout; top-level keys named in
    ``runner_cfg.exclude_keys`` are dropped), ``runner_cfg`` the runner settings (see the module
    docstring; default ``cfg.trainer``), ``job_dir`` the trial's own folder (default: the Hydra
    job's output folder, else the working directory), ``identity`` the trial (default: the
    running Hydra job's ledger trial, else a run outside a sweep). Writes ``<job_dir>/config.yaml``
    and ``<job_dir>/train.log``; logs and checkpoints go to ``<job_dir>/logs`` and
    ``<job_dir>/checkpoints``. ``on_validation(step, metrics)`` gets every new value of the
    objective's first tag with the other tags of its section at that step (``validation/*``).

    Raises :class:`SweepConfigError` for bad settings (before launching),
    :class:`NeMoRLRunError` for a failed run, a missing objective or a folder of another trial,
    and whatever ``on_validation`` raises (after stopping the script).
    """
    if runner_cfg is None:
        runner_cfg = cfg.get("trainer")
    settings = RunnerSettings.from_cfg(runner_cfg, *_sweep_objective())
    identity = identity if identity is not None else current_identity()
    job_dir = Path(job_dir if job_dir is not None else _default_job_dir()).expanduser().resolve()
    recipe = prepare_recipe(cfg, job_dir, settings, identity)
    try:
        claim_folder(job_dir, identity)
    except FolderTaken as exc:
        raise NeMoRLRunError(f"refused to start: {exc}") from None
    config_path = job_dir / "config.yaml"
    argv = [*settings.command, settings.script, "--config", str(config_path)]
    argv += list(settings.extra_args)
    with job_environment(settings.env) as env:
        need = gpus_needed(recipe)  # in the job's environment: its oc.env values are known here
    env = {**env, "PYTHONUNBUFFERED": "1"}
    if "RAY_TMPDIR" not in (settings.env or {}):
        env["RAY_TMPDIR"] = str(ray_temp_dir(job_dir))  # its own Ray instance, not another's
    if "RAY_ADDRESS" not in (settings.env or {}):
        env.pop("RAY_ADDRESS", None)
    # an external Ray cluster (RAY_ADDRESS in trainer.env) places the run itself: no slot here
    visible = None if "RAY_ADDRESS" in (settings.env or {}) else visible_gpus(env)
    if visible and need and need > len(visible):
        raise NeMoRLRunError(
            f"the trial needs {need} GPUs (cluster.gpus_per_node x cluster.num_nodes) but this "
            f"node shows {len(visible)} ({','.join(visible)})"
        )
    slot = hold_slot(visible, need, env) if visible and need else nullcontext(None)
    log_file = job_dir / "train.log"
    with slot as held:
        if held is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(held.gpus)
            share_port_ranges(recipe, held)
        OmegaConf.save(recipe, config_path)
        returncode = _run_script(argv, env, settings, job_dir, log_file, on_validation)
    if returncode != 0:
        raise NeMoRLRunError(
            f"NeMo RL job exited with code {returncode}: {' '.join(argv)}\n"
            f"--- last lines of {log_file} ---\n{_tail(log_file, settings.log_tail_lines)}"
        )
    return read_final_metrics(job_dir, settings.objective, log_file, settings.log_tail_lines)


def _run_script(
    argv: list[str],
    env: dict[str, str],
    settings: RunnerSettings,
    job_dir: Path,
    log_file: Path,
    on_validation: OnValidation | None,
) -> int:
    """Run the script to its end, handing new validations over; its exit code."""
    progress = ValidationProgress(job_dir, settings.objective)
    shown = " ".join(f"{k}={env[k]}" for k in ("CUDA_VISIBLE_DEVICES", "RAY_TMPDIR") if k in env)
    with open(log_file, "ab") as log:
        log.write(f"$ cd {settings.checkout} && {shown} {' '.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=settings.checkout,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # its own process group, so stopping it stops its children
            )
        except OSError as exc:
            raise NeMoRLRunError(
                f"could not start {argv[0]!r} in {settings.checkout}: {exc}"
            ) from exc
        previous = _stop_on_sigterm(proc, settings.kill_grace_s)
        try:
            while True:
                try:
                    proc.wait(timeout=settings.poll_interval_s)
                    finished = True
                except subprocess.TimeoutExpired:
                    finished = False
                if on_validation is not None:
                    for step, metrics in progress.new_validations():
                        on_validation(step, metrics)
                if finished:
                    return proc.returncode
        except BaseException:
            _stop(proc, settings.kill_grace_s)
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
