"""The NeMo RL job runner, driving real subprocesses that write real TensorBoard event files.

The scripts here are small NeMo RL-style programs (``--config <yaml>``, TensorBoard scalars under
``<logger.log_dir>/exp_NNN/tensorboard/``, ``<checkpoint_dir>/step_N/training_info.json``) written
by the tests; the embedded trainer's own script is exercised at the end of the file.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.trainers.nemo_rl.runner import NeMoRLRunError, run_nemo_rl_trial
from nemo_rl_sweep.trainers.nemo_rl.tensorboard import ScalarLog, read_scalars

REPO = Path(__file__).resolve().parents[1]

# A NeMo RL-style training script: validation every 2 steps, TensorBoard + checkpoints.
SCRIPT = textwrap.dedent(
    """
    import argparse, json, os, sys, time
    sys.path.insert(0, {repo!r})
    from omegaconf import OmegaConf
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from nemo_rl_sweep.trainers.nemo_rl.config import apply_overrides, load_recipe

    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    args, overrides = parser.parse_known_args()
    cfg = load_recipe(args.config)
    apply_overrides(cfg, overrides)
    cfg = OmegaConf.to_container(cfg, resolve=True)
    print("cwd=" + os.getcwd(), "lr=" + str(cfg["policy"]["optimizer"]["kwargs"]["lr"]), flush=True)
    with open(os.path.join(os.path.dirname(args.config), "pid"), "w") as f:
        f.write(str(os.getpid()))
    if cfg.get("wait_after_validation"):
        import subprocess  # a child of the script, as NeMo RL's Ray workers are
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(os.path.join(os.path.dirname(args.config), "child_pid"), "w") as f:
            f.write(str(child.pid))
    log_dir = os.path.join(cfg["logger"]["log_dir"], "exp_001", "tensorboard")
    writer = EventFileWriter(log_dir)  # what torch's SummaryWriter (NeMo RL's logger) writes with

    def scalar(tag, value, step):
        value = summary_pb2.Summary.Value(tag=tag, simple_value=value)
        event = event_pb2.Event(step=step, wall_time=time.time(), summary=summary_pb2.Summary(value=[value]))
        writer.add_event(event)

    lr = cfg["policy"]["optimizer"]["kwargs"]["lr"]
    accuracy = [0.25, 0.75, 0.5]
    for step in range(1, 7):
        scalar("train/loss", 1.0 / step, step)
        if step % 2 == 0:
            acc = accuracy[step // 2 - 1] * lr
            scalar("validation/accuracy", acc, step)
            scalar("validation/avg_length", 10.0 + step, step)
            scalar("timing/validation/total", 0.5, step)
            writer.flush()
            ckpt = os.path.join(cfg["checkpointing"]["checkpoint_dir"], "step_%d" % step)
            os.makedirs(ckpt)
            with open(os.path.join(ckpt, "training_info.json"), "w") as f:
                json.dump({{"step": step, "val:accuracy": acc, "note": "text"}}, f)
            if cfg.get("wait_after_validation"):
                time.sleep(600)  # a long run: only a stop from outside ends it early
    writer.close()
    for i in range(30):
        print("line", i, flush=True)
    sys.exit(int(cfg.get("exit_code", 0)))
    """
)


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "RL"
    (root / "examples").mkdir(parents=True)
    (root / "examples" / "run_fake_grpo.py").write_text(SCRIPT.format(repo=str(REPO)))
    return root


def recipe(**extra) -> dict:
    return {
        "policy": {
            "max_total_sequence_length": 8,
            "optimizer": {"kwargs": {"lr": 1.0}},
            "tokens": "${mul:${policy.max_total_sequence_length},2}",
        },
        "logger": {"log_dir": "logs", "tensorboard_enabled": False},
        "checkpointing": {"enabled": True, "checkpoint_dir": "results/grpo"},
        "trainer": {"name": "nemo_rl"},
        **extra,
    }


def runner(checkout: Path, **objective) -> dict:
    return {
        "checkout": str(checkout),
        "script": "examples/run_fake_grpo.py",
        "command": [sys.executable],
        "poll_interval_s": 0.05,
        "kill_grace_s": 5,
        "objective": {"tag": "validation/accuracy", **objective},
    }


def test_runner_runs_the_script_in_its_own_job_folder(checkout, tmp_path):
    job = tmp_path / "job"
    seen: list[tuple[int, dict]] = []
    metrics = run_nemo_rl_trial(
        recipe(), runner(checkout), job, on_validation=lambda s, m: seen.append((s, m))
    )
    # the full config went into the job folder, pointing logs and checkpoints inside it
    written = OmegaConf.load(job / "config.yaml")
    assert written.logger.log_dir == str(job / "logs")
    assert written.checkpointing.checkpoint_dir == str(job / "checkpoints")
    assert written.logger.tensorboard_enabled is True
    assert "trainer" not in written
    assert (
        OmegaConf.to_container(written)["policy"]["tokens"]
        == "${mul:${policy.max_total_sequence_length},2}"
    )
    log = (job / "train.log").read_text()
    assert f"cwd={checkout}" in log and "line 29" in log
    # every validation was handed over once, in order, with its section's tags
    assert [s for s, _ in seen] == [2, 4, 6]
    assert seen[1][1] == {"validation/accuracy": 0.75, "validation/avg_length": 14.0}
    # last value of every tag, the latest checkpoint's numbers, the objective as asked (last)
    assert metrics["validation/accuracy"] == 0.5
    assert metrics["train/loss"] == pytest.approx(1 / 6)
    assert "val:accuracy" not in metrics  # training_info.json is read only when asked for
    assert sorted(os.listdir(job / "checkpoints")) == ["step_2", "step_4", "step_6"]


def test_objective_best_and_from_training_info(checkout, tmp_path):
    best = run_nemo_rl_trial(recipe(), runner(checkout, reduce="best"), tmp_path / "a")
    assert best["validation/accuracy"] == 0.75
    lowest = run_nemo_rl_trial(
        recipe(), runner(checkout, reduce="best", higher_is_better=False), tmp_path / "b"
    )
    assert lowest["validation/accuracy"] == 0.25
    seen = []
    info = run_nemo_rl_trial(
        recipe(),
        runner(checkout, tag="val:accuracy", source="training_info", reduce="best"),
        tmp_path / "c",
        on_validation=lambda s, m: seen.append((s, m["val:accuracy"])),
    )
    assert info["val:accuracy"] == 0.75
    assert seen == [(2, 0.25), (4, 0.75), (6, 0.5)]


def test_trials_never_share_folders(checkout, tmp_path):
    """Two trials from one recipe write to their own folders, so neither resumes the other."""
    cfg = recipe()
    a = run_nemo_rl_trial(cfg, runner(checkout), tmp_path / "t0")
    cfg["policy"]["optimizer"]["kwargs"]["lr"] = 2.0
    b = run_nemo_rl_trial(cfg, runner(checkout), tmp_path / "t1")
    assert (a["validation/accuracy"], b["validation/accuracy"]) == (0.5, 1.0)
    assert read_scalars(tmp_path / "t0" / "logs", "validation/accuracy") == [
        (2, 0.25),
        (4, 0.75),
        (6, 0.5),
    ]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead


def test_exception_from_on_validation_stops_the_run_and_propagates(checkout, tmp_path):
    class Pruned(Exception):
        pass

    def prune(step, metrics):
        raise Pruned(step)

    job = tmp_path / "pruned"
    with pytest.raises(Pruned) as err:
        run_nemo_rl_trial(recipe(wait_after_validation=True), runner(checkout), job, prune)
    assert err.value.args == (2,)
    assert not _alive(int((job / "pid").read_text()))
    # the script's own children go with it (it runs in its own process group)
    child = job / "child_pid"
    assert child.exists() and not _alive(int(child.read_text()))


def test_failed_script_carries_the_last_lines_of_its_log(checkout, tmp_path):
    with pytest.raises(NeMoRLRunError) as err:
        run_nemo_rl_trial(recipe(exit_code=3), runner(checkout), tmp_path / "fail")
    message = str(err.value)
    assert "exited with code 3" in message
    assert "line 29" in message and "line 10" in message
    assert "line 9\n" not in message  # only the last 20 lines


def test_a_tag_the_run_never_wrote_is_a_clear_error(checkout, tmp_path):
    with pytest.raises(NeMoRLRunError) as err:
        run_nemo_rl_trial(recipe(), runner(checkout, tag="validation/acc"), tmp_path / "tag")
    message = str(err.value)
    assert "'validation/acc' was never written" in message
    assert "validation/accuracy" in message  # what was written instead
    assert "line 29" in message


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"script": "examples/run_nothing.py"}, "trainer.script"),
        ({"checkout": "/nonexistent/RL"}, "trainer.checkout"),
        ({"checkout": None}, "trainer.checkout"),
        ({"objective": {"tag": "x", "source": "wandb"}}, "trainer.objective.source"),
        ({"objective": {"tag": "x", "reduce": "median"}}, "trainer.objective.reduce"),
    ],
)
def test_bad_runner_settings_are_refused_before_launch(checkout, tmp_path, change, key):
    with pytest.raises(SweepConfigError) as err:
        run_nemo_rl_trial(recipe(), {**runner(checkout), **change}, tmp_path / "bad")
    assert err.value.key == key
    assert not (tmp_path / "bad" / "train.log").exists()


def test_training_info_objective_needs_checkpointing(checkout, tmp_path):
    cfg = recipe()
    cfg["checkpointing"]["enabled"] = False
    with pytest.raises(SweepConfigError) as err:
        run_nemo_rl_trial(
            cfg, runner(checkout, tag="val:accuracy", source="training_info"), tmp_path / "x"
        )
    assert err.value.key == "checkpointing.enabled"


def test_scalar_log_follows_files_as_they_grow(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    log = ScalarLog(tmp_path / "logs")
    assert log.poll() == []
    writer = SummaryWriter(str(tmp_path / "logs" / "exp_001" / "tensorboard"))
    writer.add_scalar("validation/accuracy", 0.5, 10)
    writer.flush()
    assert log.poll() == [("validation/accuracy", 10, 0.5)]
    writer.add_scalar("validation/accuracy", 0.25, 20)
    writer.flush()
    assert log.poll() == [("validation/accuracy", 20, 0.25)]  # only what is new
    writer.close()
    # a resumed launch adds exp_002; its value for a step replaces the earlier one
    again = SummaryWriter(str(tmp_path / "logs" / "exp_002" / "tensorboard"))
    again.add_scalar("validation/accuracy", 0.75, 20)
    again.close()
    log.poll()
    assert log.series("validation/accuracy") == [(10, 0.5), (20, 0.75)]


def test_scalar_log_reads_tensor_scalars_and_waits_for_partial_records(tmp_path):
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.util import tensor_util
    from torch.utils.tensorboard import SummaryWriter

    board = tmp_path / "logs" / "exp_003" / "tensorboard"
    writer = SummaryWriter(str(board))
    value = summary_pb2.Summary.Value(
        tag="validation/accuracy", tensor=tensor_util.make_tensor_proto(0.625)
    )
    writer._get_file_writer().add_summary(summary_pb2.Summary(value=[value]), 7)
    writer.close()
    (events,) = board.glob("events.out.tfevents*")
    data = events.read_bytes()
    events.write_bytes(data[:-5])  # the writer is mid-record
    log = ScalarLog(tmp_path / "logs")
    assert log.poll() == []
    events.write_bytes(data)
    assert log.poll() == [("validation/accuracy", 7, 0.625)]


# --- end to end: the embedded trainer's NeMo RL-style script as the trial's job -----------------


def embedded_runner(**objective) -> dict:
    return {
        "checkout": str(REPO),
        "script": "nemo_rl_sweep.trainers.embedded.run_grpo",
        "command": [sys.executable, "-m"],
        "poll_interval_s": 0.1,
        "objective": {"tag": "validation/accuracy", **objective},
    }


def tiny_recipe(**changes):
    from nemo_rl_sweep.trainers.nemo_rl.config import apply_overrides, load_recipe

    cfg = load_recipe(REPO / "conf" / "recipe" / "grpo_tiny.yaml")
    apply_overrides(cfg, ["grpo.max_num_steps=12", "grpo.val_period=4"])
    apply_overrides(cfg, [f"{k}={v}" for k, v in changes.items()])
    return cfg


def test_runner_drives_the_embedded_script_and_matches_the_in_process_trainer(tmp_path):
    import numpy as np

    from nemo_rl_sweep.trainers.embedded import train

    cfg = tiny_recipe(**{"policy.optimizer.kwargs.lr": 0.02, "grpo.seed": 3})
    seen_subprocess: list[tuple[int, float]] = []
    via_runner = run_nemo_rl_trial(
        cfg,
        embedded_runner(),
        tmp_path / "job",
        on_validation=lambda s, m: seen_subprocess.append((s, m["validation/accuracy"])),
    )
    seen_in_process: list[tuple[int, float]] = []
    in_process = train(
        OmegaConf.to_container(cfg, resolve=True),
        on_validation=lambda s, m: seen_in_process.append((s, m["validation/accuracy"])),
    )
    # the same validations, at the same steps, with the same values (TensorBoard keeps float32)
    assert [s for s, _ in seen_subprocess] == [s for s, _ in seen_in_process]
    assert [v for _, v in seen_subprocess] == [float(np.float32(v)) for _, v in seen_in_process]
    compared = [t for t in in_process if t in via_runner and not t.startswith("timing/")]
    assert {"validation/accuracy", "train/loss", "train/reward"} <= set(compared)
    for tag in compared:
        assert via_runner[tag] == pytest.approx(in_process[tag], rel=1e-6, abs=1e-7), tag
    # NeMo RL's layout in the job folder
    assert (tmp_path / "job" / "logs" / "exp_001" / "tensorboard").is_dir()
    assert (tmp_path / "job" / "checkpoints" / "step_12" / "training_info.json").is_file()
    from_checkpoint = run_nemo_rl_trial(
        cfg, embedded_runner(tag="val:accuracy", source="training_info"), tmp_path / "job2"
    )
    assert from_checkpoint["val:accuracy"] == in_process["validation/accuracy"]  # JSON: float64


def test_embedded_script_refusing_its_config_is_a_failed_trial_with_the_reason(tmp_path):
    cfg = tiny_recipe()
    cfg.grpo.num_generations_per_prompt = 1  # GRPO needs at least two answers per prompt
    with pytest.raises(NeMoRLRunError) as err:
        run_nemo_rl_trial(cfg, embedded_runner(), tmp_path / "bad")
    assert "exited with code 2" in str(err.value)
    assert "error:" in str(err.value)


def test_objective_defaults_to_the_sweeps_metric_and_direction(checkout):
    from nemo_rl_sweep.trainers.nemo_rl.runner import RunnerSettings

    settings = {**runner(checkout), "objective": {"tag": None, "reduce": "best"}}
    sft = RunnerSettings.from_cfg(settings, "validation/val_loss", "minimize").objective
    assert (sft.tags, sft.higher_is_better) == (("validation/val_loss",), False)
    alone = RunnerSettings.from_cfg(settings).objective
    assert (alone.tags, alone.higher_is_better) == (("validation/accuracy",), True)
    two = {**runner(checkout), "objective": {"tag": None}}
    pareto = RunnerSettings.from_cfg(two, ["validation/accuracy", "train/loss"], ["max", "min"])
    assert pareto.objective.tags == ("validation/accuracy", "train/loss")
    with pytest.raises(SweepConfigError, match="single objective"):
        RunnerSettings.from_cfg(settings, ["validation/accuracy", "train/loss"], "maximize")


# --- end to end through Hydra: a sweep whose trials are NeMo RL-style subprocess jobs -----------


def run_sweep(tmp_path: Path, name: str, trainer: list[str]) -> list:
    """A 2-trial grid sweep through train.py; returns its ledger trials (sorted by lr)."""
    import subprocess

    import optuna

    storage = f"sqlite:///{tmp_path / 'ledger.db'}"
    argv = [
        sys.executable,
        "train.py",
        "--multirun",
        "hpo=grid",
        *trainer,
        "grpo.max_num_steps=8",
        "grpo.val_period=4",
        "grpo.seed=5",
        "policy.optimizer.kwargs.lr=choice(0.003,0.02)",
        "grpo.num_generations_per_prompt=choice(4)",
        f"hydra.sweep.dir={tmp_path / name}",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.study_name={name}",
    ]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = optuna.load_study(study_name=name, storage=storage)
    return sorted(study.trials, key=lambda t: t.params["policy.optimizer.kwargs.lr"])


def test_hydra_sweep_with_the_nemo_rl_runner_equals_the_in_process_trainer(tmp_path):
    import numpy as np

    script = [
        "trainer=nemo_rl",
        f"trainer.checkout={REPO}",
        "trainer.script=nemo_rl_sweep.trainers.embedded.run_grpo",
        f"trainer.command=[{sys.executable},-m]",
        "trainer.poll_interval_s=0.2",
    ]
    subprocess_trials = run_sweep(tmp_path, "via-runner", script)
    in_process_trials = run_sweep(tmp_path, "in-process", ["trainer=embedded"])
    assert [t.state.name for t in subprocess_trials] == ["COMPLETE", "COMPLETE"]
    assert [t.state.name for t in in_process_trials] == ["COMPLETE", "COMPLETE"]
    for sub, inproc in zip(subprocess_trials, in_process_trials, strict=True):
        assert sub.params == inproc.params
        assert sub.values == [float(np.float32(inproc.values[0]))]
        # each validation was recorded on the trial while it ran, as in-process
        assert sub.intermediate_values == {
            step: float(np.float32(v)) for step, v in inproc.intermediate_values.items()
        }
        assert sorted(sub.intermediate_values) == [4, 8]
        job = Path(sub.user_attrs["job_dir"])
        assert (job / "config.yaml").is_file() and (job / "train.log").is_file()
        assert OmegaConf.load(job / "config.yaml").logger.log_dir == str(job / "logs")


def test_check_refuses_before_launch_what_the_runner_would_refuse(checkout, tmp_path):
    from nemo_rl_sweep.trainers.nemo_rl.runner import check_nemo_rl_trial

    check_nemo_rl_trial(recipe(trainer=runner(checkout)))  # runner settings from cfg.trainer
    with pytest.raises(SweepConfigError) as err:
        check_nemo_rl_trial(recipe(), {**runner(checkout), "script": "examples/run_sft.py"})
    assert err.value.key == "trainer.script" and "run_sft.py" in str(err.value)
    broken = recipe()
    broken["policy"]["tokens"] = "${mul:${policy.max_total_sequence_length}}"
    with pytest.raises(SweepConfigError, match="policy.tokens"):
        check_nemo_rl_trial(broken, runner(checkout))


def test_sigterm_to_the_job_stops_the_script_too(checkout, tmp_path):
    """A cancelled job must not leave its training script running on the GPUs."""
    import signal
    import subprocess
    import time

    job = tmp_path / "cancelled"
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from nemo_rl_sweep.trainers.nemo_rl.runner import run_nemo_rl_trial
        run_nemo_rl_trial({recipe(wait_after_validation=True)!r}, {runner(checkout)!r}, {str(job)!r})
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    while not (job / "child_pid").exists() and parent.poll() is None:
        time.sleep(0.05)
    assert parent.poll() is None, "the job ended before it could be cancelled"
    parent.send_signal(signal.SIGTERM)
    assert parent.wait() == 128 + signal.SIGTERM
    assert not _alive(int((job / "pid").read_text()))
    assert not _alive(int((job / "child_pid").read_text()))
