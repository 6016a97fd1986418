"""Every NeMo RL command of the README and docs/nemo_rl.md, run as a user runs it, on the real recipes.

No GPU here: a sweep runs with ``hydra.sweeper.dry_run=true`` (every check before launch, the
objective, the search space and the first trials, nothing launched), a single run with
``--cfg job``. The commands are read from the documents themselves, so a new or changed command
fails here until its expected ranges are written down below.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import NEMO_RL_CONFIGS, TRAIN_APP, error_lines, load_study, run_app, sweep_dirs

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "docs" / "nemo_rl.md"]

GRPO = "validation/accuracy (maximize)"
SFT = "validation/val_loss (minimize)"
DPO = "validation-default/loss (minimize)"
GRPO_LLM = {
    "policy.optimizer.kwargs.lr": "tag(log, interval(1e-07, 3e-05))",
    "loss_fn.reference_policy_kl_penalty": "tag(log, interval(0.0001, 0.1))",
}
BASE = "python train.py --multirun"
# command -> (objective, swept keys and their ranges); None: a single run, composed only
EXPECTED: dict[str, tuple[str, dict[str, str]] | None] = {
    f"{BASE} hpo=bayes trainer=nemo_rl recipe=grpo_math_1B hydra.sweeper.n_trials=12": (
        GRPO,
        GRPO_LLM,
    ),
    f"{BASE} hpo=bayes trainer=nemo_rl recipe=grpo_math_1B hydra/launcher=slurm_nemo_rl "
    "hydra.launcher.partition=batch hydra.sweeper.n_jobs=4": (GRPO, GRPO_LLM),
    # a two-node recipe through ray.sub (the dry run shows the submission, Slurm is not asked)
    f"{BASE} hpo=bayes trainer=nemo_rl recipe=grpo_math_8B cluster.num_nodes=2 "
    "hydra/launcher=slurm_raysub hydra.launcher.account=my_acct hydra.launcher.partition=batch "
    "hydra.sweeper.n_jobs=4": (GRPO, GRPO_LLM),
    f"{BASE} hpo=bayes trainer=nemo_rl recipe=grpo_math_8B cluster.num_nodes=2 "
    "hydra/launcher=slurm_raysub hydra.launcher.account=my_acct hydra.launcher.partition=batch "
    "hydra.launcher.time=8:00:00 hydra.sweeper.n_jobs=4": (GRPO, GRPO_LLM),
    "python train.py trainer=nemo_rl trainer.checkout=$HOME/RL recipe=grpo_math_1B "
    "'hydra.searchpath=[nemorl://'$HOME'/RL/examples/configs]'": None,
    "python train.py trainer=nemo_rl recipe=grpo_math_1B --cfg job": None,
    "python train.py trainer=nemo_rl recipe=grpo_math_1B": None,
    f"{BASE} hpo=random trainer=nemo_rl recipe=grpo_math_1B hydra.sweeper.n_trials=12 "
    "grpo.max_num_steps=200": (GRPO, GRPO_LLM),
    f"{BASE} hpo=random trainer=nemo_rl recipe=grpo_math_1B "
    "'policy.optimizer.kwargs.lr=tag(log, interval(1e-6, 1e-5))' "
    "'grpo.num_generations_per_prompt=choice(16, 32)'": (
        GRPO,
        {
            "policy.optimizer.kwargs.lr": "tag(log, interval(1e-06, 1e-05))",
            "loss_fn.reference_policy_kl_penalty": "tag(log, interval(0.0001, 0.1))",
            "grpo.num_generations_per_prompt": "choice(16, 32)",
        },
    ),
    f"{BASE} hpo=bayes trainer=nemo_rl recipe=grpo_math_1B "
    "search_space@hydra.sweeper.params=none "
    "'policy.optimizer.kwargs.lr=tag(log, interval(1e-6, 1e-5))'": (
        GRPO,
        {"policy.optimizer.kwargs.lr": "tag(log, interval(1e-06, 1e-05))"},
    ),
    f"{BASE} hpo=random trainer=nemo_rl trainer.script=examples/run_sft.py recipe=sft": (
        SFT,
        {
            "policy.optimizer.kwargs.lr": "tag(log, interval(1e-06, 0.0001))",
            "policy.optimizer.kwargs.weight_decay": "interval(0.0, 0.2)",
            "policy.train_global_batch_size": "choice(16, 32, 64)",
            "policy.max_grad_norm": "tag(log, interval(0.1, 10.0))",
        },
    ),
    f"{BASE} hpo=random trainer=nemo_rl trainer.script=examples/run_dpo.py recipe=dpo": (
        DPO,
        {
            "policy.optimizer.kwargs.lr": "tag(log, interval(1e-07, 1e-05))",
            "dpo.reference_policy_kl_penalty": "tag(log, interval(0.01, 0.5))",
            "dpo.sft_loss_weight": "interval(0.0, 1.0)",
            "policy.train_global_batch_size": "choice(64, 128, 256)",
        },
    ),
    f"{BASE} hpo=bayes trainer=nemo_rl trainer.script=examples/run_sft.py "
    "recipe=sft_openmathinstruct2_megatron policy.megatron_cfg.optimizer.min_lr=1e-6": (
        SFT,
        {
            "policy.megatron_cfg.optimizer.lr": "tag(log, interval(1e-06, 0.0001))",
            "policy.megatron_cfg.optimizer.weight_decay": "interval(0.0, 0.2)",
            "policy.train_global_batch_size": "choice(256, 512, 1024)",
        },
    ),
    f"{BASE} hpo=random trainer=nemo_rl recipe=grpo_math_1B hydra.sweeper.n_jobs=4 "
    "hydra/launcher=slurm_nemo_rl hydra.launcher.timeout_min=720 cluster.gpus_per_node=8": (
        GRPO,
        GRPO_LLM,
    ),
    f"{BASE} hpo=random trainer=nemo_rl recipe=grpo_math_1B cluster.gpus_per_node=2 "
    "hydra/launcher=joblib hydra.launcher.n_jobs=4 hydra.sweeper.n_jobs=4": (GRPO, GRPO_LLM),
    # the embedded trainer's tiny recipe through its NeMo RL-style script: the toy grid
    f"{BASE} hpo=grid trainer=nemo_rl trainer.checkout=$PWD "
    "trainer.script=nemo_rl_sweep.trainers.embedded.run_grpo 'trainer.command=[python,-m]' "
    "trainer.poll_interval_s=0.5": (
        GRPO,
        {
            "policy.optimizer.kwargs.lr": "choice(0.003, 0.01, 0.03)",
            "grpo.num_generations_per_prompt": "choice(4, 8)",
        },
    ),
}


def documented_commands() -> list[str]:
    """The NeMo RL ``python train.py`` commands of the documents, continuation lines joined."""
    out = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].startswith("    python train.py"):
                cmd = lines[i].strip()
                while cmd.endswith("\\"):
                    i += 1
                    cmd = cmd[:-1].rstrip() + " " + lines[i].strip()
                if "trainer=nemo_rl" in cmd:
                    out.append(cmd)
            i += 1
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's home with a NeMo RL checkout at ~/RL: the real recipes and the example scripts."""
    home = tmp_path_factory.mktemp("home")
    examples = home / "RL" / "examples"
    examples.mkdir(parents=True)
    (examples / "configs").symlink_to(NEMO_RL_CONFIGS)
    for script in ("run_grpo.py", "run_sft.py", "run_dpo.py"):
        (examples / script).write_text("raise SystemExit('not run in these tests')\n")
    (home / "RL" / "ray.sub").write_text("exit 1  # not submitted in these tests\n")
    return home


def run_documented(command: str, home: Path, cwd: Path):
    env = {"HOME": str(home), "NEMO_RL_DIR": str(home / "RL"), "PWD": str(cwd)}
    env["CONTAINER"] = "/images/nemo_rl.sqsh"  # the docs export it for hydra/launcher=slurm_raysub
    expanded = command.replace("$HOME", str(home)).replace("$PWD", str(cwd))
    argv = shlex.split(expanded)
    assert argv[:2] == ["python", "train.py"]
    extra = ["hydra.sweeper.dry_run=true"] if "--multirun" in argv else ["--cfg", "job"]
    args = argv[2:] + ([] if "--cfg" in argv else extra)
    return run_app(TRAIN_APP, args, cwd, env={**os.environ, **env})


def dry_run_report(stdout: str) -> tuple[str, dict[str, str]]:
    """The objective and the swept keys (with their ranges) a dry run printed."""
    objective, swept, in_space = "", {}, False
    for line in stdout.splitlines():
        if line.startswith("[dry run] objective: "):
            objective = line.removeprefix("[dry run] objective: ")
        elif line.startswith("[dry run] strategy"):
            in_space = True
        elif line.startswith("[dry run]"):
            in_space = False
        elif in_space and ": " in line:
            key, text = line.strip().split(": ", 1)
            if text.endswith(")"):
                swept[key] = text
    return objective, swept


def test_every_documented_command_has_its_expected_ranges_written_down():
    assert sorted(documented_commands()) == sorted(EXPECTED)


@pytest.mark.parametrize("command", list(EXPECTED), ids=range(len(EXPECTED)))
def test_a_documented_command_runs_and_shows_the_ranges_a_user_expects(command, home, tmp_path):
    proc = run_documented(command, home, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert error_lines(proc) == []
    expected = EXPECTED[command]
    if expected is None:
        assert "num_generations_per_prompt: 16" in proc.stdout  # grpo_math_1B, composed
        return
    assert dry_run_report(proc.stdout) == expected
    assert "nothing was launched" in proc.stdout
    assert not (tmp_path / "multirun" / "nemo_rl_sweep.db").exists()


# --- refusals before launch, with the ledger untouched --------------------------------------------


def nemo_rl_sweep(home: Path, cwd: Path, *args: str):
    env = {**os.environ, "HOME": str(home), "NEMO_RL_DIR": str(home / "RL")}
    return run_app(TRAIN_APP, ["--multirun", "trainer=nemo_rl", *args], cwd, env=env)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            [
                "hpo=random",
                "recipe=grpo_math_1B_megatron",
                "search_space@hydra.sweeper.params=grpo_llm",
            ],
            "Error: policy.optimizer.kwargs.lr: the recipe trains with Megatron "
            "(policy.megatron_cfg.enabled=true), which never reads this DTensor key. "
            "Fix: sweep policy.megatron_cfg.optimizer.lr instead",
        ),
        (
            [
                "hpo=random",
                "trainer.script=examples/run_sft.py",
                "recipe=sft",
                "hydra.sweeper.metric=validation/accuracy",
            ],
            "Error: hydra.sweeper.metric: 'validation/accuracy' is not reported by trainer "
            "nemo_rl. Fix: use one of validation/val_loss, train/loss, "
            "timing/train/total_step_time",
        ),
        (
            ["hpo=random", "recipe=grpo_math_1B", "grpo.num_generations_per_prompt=choice(4,8)"],
            "Error: hydra.sweeper.params: no point of the search space can run (8 checked); e.g. "
            "policy.optimizer.kwargs.lr=1e-07 "
            "loss_fn.reference_policy_kl_penalty=0.0001 grpo.num_generations_per_prompt=4 "
            "breaks grpo-step-batch: a step has grpo.num_prompts_per_step x "
            "grpo.num_generations_per_prompt = 32 x 4 = 128 samples, not a multiple of "
            "policy.train_global_batch_size=512",
        ),
    ],
    ids=["backend", "metric", "no-feasible-point"],
)
def test_bad_input_is_one_error_line_before_any_job_and_no_ledger(home, tmp_path, args, line):
    proc = nemo_rl_sweep(home, tmp_path, *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = error_lines(proc)
    assert len(errors) == 1
    assert errors[0].startswith(line), errors[0]
    assert not (tmp_path / "multirun" / "nemo_rl_sweep.db").exists()


def test_the_embedded_trainer_keeps_its_toy_space(tmp_path):
    proc = run_app(TRAIN_APP, ["--multirun", "hpo=bayes", "hydra.sweeper.dry_run=true"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    objective, swept = dry_run_report(proc.stdout)
    assert objective == GRPO
    assert swept["policy.optimizer.kwargs.lr"] == "tag(log, interval(0.0001, 0.1))"


# --- a real sweep: an infeasible grid point is recorded, never launched ---------------------------


def test_a_grid_skips_an_infeasible_point_says_so_and_runs_the_rest(tmp_path):
    """The tiny recipe takes 8 prompts a step and trains on 32 samples: 2 generations per prompt
    (16 samples) breaks NeMo RL's batch rule, 4 keeps it. Failure tolerance 0 still lets the sweep
    finish: an infeasible trial is not a failed run."""
    args = [
        "--multirun",
        "hpo=grid",
        "trainer=nemo_rl",
        f"trainer.checkout={REPO}",
        "trainer.script=nemo_rl_sweep.trainers.embedded.run_grpo",
        "trainer.command=[python,-m]",
        "trainer.poll_interval_s=0.2",
        "grpo.max_num_steps=2",
        "grpo.val_period=2",
        "hydra.sweeper.max_failure_rate=0.0",
        "grpo.num_generations_per_prompt=choice(2,4)",
        "policy.optimizer.kwargs.lr=choice(0.01)",
    ]
    proc = run_app(TRAIN_APP, args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "grid: 1 of 2 points break a rule and will be skipped" in out
    study = load_study(sweep_dirs(tmp_path)[0])
    by_gens = {t.params["grpo.num_generations_per_prompt"]: t for t in study.trials}
    skipped, ran = by_gens[2], by_gens[4]
    assert skipped.state.name == "FAIL" and ran.state.name == "COMPLETE"
    assert skipped.user_attrs["fail_kind"] == "infeasible"
    assert skipped.user_attrs["fail_reason"].startswith(
        "infeasible, not launched: grpo-step-batch: a step has grpo.num_prompts_per_step x "
        "grpo.num_generations_per_prompt = 8 x 2 = 16 samples"
    )
    assert "job_dir" not in skipped.user_attrs  # no job ever ran for it
    with sqlite3.connect(tmp_path / "multirun" / "nemo_rl_sweep.db") as db:
        assert db.execute("select count(*) from trials").fetchone()[0] == 2
