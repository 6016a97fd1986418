"""Real NeMo RL recipes, safely: one folder per trial forever, tracker names, environment values
left for the job, GPU slots on one node, checkpoints kept or freed.

The trials run the stand-in NeMo RL scripts of tests/apps/nemo_rl_standin (they resume from the
latest checkpoint in their folder, write NeMo RL's TensorBoard layout and assert NeMo RL's batch
rule) on the real recipes of ../shared/nemo_rl, through real Hydra sweeps of train.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.trainers.nemo_rl.config import apply_overrides, load_recipe
from nemo_rl_sweep.trainers.nemo_rl.folder import OWNER_FILE, TrialIdentity
from nemo_rl_sweep.trainers.nemo_rl.runner import (
    NeMoRLRunError,
    check_nemo_rl_trial,
    run_nemo_rl_trial,
)
from tests.helpers import NEMO_RL_CONFIGS, REPO, TRAIN_APP, error_lines, run_app

STANDIN = REPO / "tests" / "apps" / "nemo_rl_standin"
sys.path.insert(0, str(STANDIN))
from standin import WEIGHT_BYTES, value  # noqa: E402

SHORT_GRPO = ["grpo.max_num_steps=4", "grpo.val_period=2", "checkpointing.save_period=2"]


def sweep_args(tmp_path: Path, *extra: str, recipe: str = "grpo_math_1B") -> list[str]:
    """A sweep of a real recipe whose trials run the stand-in script."""
    return [
        "--multirun",
        "trainer=nemo_rl",
        f"hydra.searchpath=[nemorl://{NEMO_RL_CONFIGS}]",
        f"recipe={recipe}",
        f"trainer.checkout={STANDIN}",
        f"trainer.command=[{sys.executable}]",
        "trainer.poll_interval_s=0.2",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'ledger.db'}",
        *extra,
    ]


def grpo_sweep(tmp_path: Path, *extra: str) -> list[str]:
    return sweep_args(
        tmp_path,
        "search_space@hydra.sweeper.params=grpo_llm",
        "loss_fn.reference_policy_kl_penalty=choice(0.01)",
        *SHORT_GRPO,
        *extra,
    )


def run_sweep(tmp_path: Path, args: list[str], env: dict | None = None) -> str:
    done = run_app(TRAIN_APP, args, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def trials(tmp_path: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{tmp_path / 'ledger.db'}").trials


def log_facts(job_dir: Path) -> dict[str, str]:
    """The ``standin: key=value`` lines the stand-in printed to the trial's train.log."""
    text = (job_dir / "train.log").read_text()
    return dict(re.findall(r"^standin: ([\w.]+)=(.*)$", text, flags=re.M))


# --- the stand-in behaves as NeMo RL where it matters ------------------------------------------


def test_standin_asserts_nemo_rls_batch_rule(tmp_path):
    cfg = load_recipe(NEMO_RL_CONFIGS / "grpo_math_1B.yaml")
    apply_overrides(cfg, [*SHORT_GRPO, "grpo.num_generations_per_prompt=4"])  # 32 x 4 = 128
    cfg.logger.log_dir, cfg.checkpointing.checkpoint_dir = str(tmp_path / "l"), str(tmp_path / "c")
    OmegaConf.save(cfg, tmp_path / "config.yaml")
    argv = [sys.executable, "examples/run_grpo.py", "--config", str(tmp_path / "config.yaml")]
    bad = subprocess.run(argv, cwd=STANDIN, capture_output=True, text=True)
    assert bad.returncode != 0
    assert "Total batch size (128) is not a multiple of batch_size (512)" in bad.stderr
    good = subprocess.run([*argv, "grpo.num_generations_per_prompt=32"], cwd=STANDIN)
    assert good.returncode == 0  # 32 x 32 = 1024, two global batches of 512


@pytest.mark.parametrize(
    ("algorithm", "recipe", "tag"),
    [("sft", "sft.yaml", "validation/val_loss"), ("dpo", "dpo.yaml", "validation-default/loss")],
)
def test_standin_sft_and_dpo_write_nemo_rls_tags(tmp_path, algorithm, recipe, tag):
    cfg = load_recipe(NEMO_RL_CONFIGS / recipe)
    apply_overrides(cfg, [f"{algorithm}.max_num_steps=3", f"{algorithm}.val_period=3"])
    runner = {
        "checkout": str(STANDIN),
        "script": f"examples/run_{algorithm}.py",
        "command": [sys.executable],
        "poll_interval_s": 0.1,
        "objective": {"tag": tag},
    }
    metrics = run_nemo_rl_trial(cfg, runner, tmp_path / "job")
    lr = float(cfg.policy.optimizer.kwargs.lr)
    assert metrics[tag] == pytest.approx(value(algorithm, lr, 3), rel=1e-6)


# --- 1. one folder per trial, forever -------------------------------------------------------


def test_resume_and_a_second_sweeper_never_share_a_folder(tmp_path):
    """A fixed sweep folder, a resumed study, two sweepers at once on one study and a second
    study in it: every trial runs in its own folder and reports its own numbers (the stand-in
    would resume another trial's run in a shared folder)."""
    fixed = f"hydra.sweep.dir={tmp_path / 'sweep'}"
    lrs = "policy.optimizer.kwargs.lr=tag(log, interval(1e-6, 3e-5))"

    def args(study: str, n_trials: int, seed: int) -> list[str]:
        return grpo_sweep(
            tmp_path,
            "hpo=random",
            lrs,
            fixed,
            f"hydra.sweeper.study_name={study}",
            f"hydra.sweeper.n_trials={n_trials}",
            f"hydra.sweeper.seed={seed}",
        )

    run_sweep(tmp_path, args("s", 2, 1))
    run_sweep(tmp_path, args("s", 4, 2))  # the same command, a bigger budget: a resume
    pair = [
        subprocess.Popen(
            [sys.executable, str(TRAIN_APP), *args("pair", 4, seed)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (3, 4)
    ]
    assert [p.wait() for p in pair] == [0, 0], [p.stderr.read()[-2000:] for p in pair]
    run_sweep(tmp_path, args("other", 2, 5))

    done = {
        (study, t.number): t for study in ("s", "pair", "other") for t in trials(tmp_path, study)
    }
    assert len(done) >= 10 and all(t.state.name == "COMPLETE" for t in done.values())
    folders = {key: Path(t.user_attrs["job_dir"]) for key, t in done.items()}
    assert len(set(folders.values())) == len(done)
    for (study, number), trial in done.items():
        folder = folders[(study, number)]
        assert folder == tmp_path / "sweep" / study / f"trial_{number}"
        owner = json.loads((folder / OWNER_FILE).read_text())
        assert (owner["study"], owner["trial"]) == (study, number)
        assert log_facts(folder)["resumed_from_step"] == "0"
        lr = trial.params["policy.optimizer.kwargs.lr"]
        assert trial.value == pytest.approx(value("grpo", lr, 4), rel=1e-6)


def test_the_runner_refuses_a_folder_of_another_trial(tmp_path):
    cfg = load_recipe(NEMO_RL_CONFIGS / "grpo_math_1B.yaml")
    apply_overrides(cfg, SHORT_GRPO)
    runner = {
        "checkout": str(STANDIN),
        "script": "examples/run_grpo.py",
        "command": [sys.executable],
        "poll_interval_s": 0.1,
        "objective": {"tag": "validation/accuracy"},
    }
    job = tmp_path / "job"
    mine = TrialIdentity("s", 0, "sqlite:///x.db")
    first = run_nemo_rl_trial(cfg, runner, job, identity=mine)
    with pytest.raises(NeMoRLRunError) as err:
        run_nemo_rl_trial(cfg, runner, job, identity=TrialIdentity("s", 1, "sqlite:///x.db"))
    assert "belongs to study 's' trial 0" in str(err.value)
    assert "not to study 's' trial 1" in str(err.value)
    # the same trial may come back (a requeued job) and resumes its own run
    assert run_nemo_rl_trial(cfg, runner, job, identity=mine) == first
    assert "resumed_from_step=4" in (job / "train.log").read_text()
    # a folder with checkpoints nobody claimed is refused too, and left as it was
    stray = tmp_path / "stray"
    (stray / "checkpoints" / "step_2").mkdir(parents=True)
    with pytest.raises(NeMoRLRunError, match="already holds checkpoints"):
        run_nemo_rl_trial(cfg, runner, stray, identity=mine)
    assert sorted(p.name for p in stray.iterdir()) == ["checkpoints"]


def test_tracker_names_and_the_wandb_group_follow_the_trial(tmp_path):
    """sft.yaml turns W&B on with one fixed name; every trial gets its own, in one group."""
    args = sweep_args(
        tmp_path,
        "hpo=random",
        "hydra.sweeper.n_trials=2",
        "trainer.script=examples/run_sft.py",
        "search_space@hydra.sweeper.params=sft",
        "hydra.sweeper.metric=validation/val_loss",
        "hydra.sweeper.direction=minimize",
        "sft.max_num_steps=2",
        "sft.val_period=1",
        "logger.mlflow_enabled=true",
        "hydra.sweeper.study_name=sft-names",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        recipe="sft",
    )
    run_sweep(tmp_path, args)
    names = set()
    for trial in trials(tmp_path, "sft-names"):
        folder = Path(trial.user_attrs["job_dir"])
        written = OmegaConf.load(folder / "config.yaml").logger
        name = f"sft-names-trial{trial.number}"
        assert (written.wandb.name, written.wandb.group) == (name, "sft-names")
        assert written.mlflow.run_name == name
        assert written.swanlab.name != name  # SwanLab is off in sft.yaml: left as it was
        facts = log_facts(folder)  # what the script itself saw
        assert (facts["wandb.name"], facts["wandb.group"]) == (name, "sft-names")
        names.add(name)
    assert len(names) == 2


# --- 5. environment values are the job's ------------------------------------------------------


def test_environment_values_are_resolved_in_the_job_not_the_sweeper(tmp_path):
    """A recipe reading ${oc.env:NRS_HF_HOME} runs although the sweeper's environment lacks it:
    trainer.env sets it for the job, and the check before launch leaves it alone."""
    mine = tmp_path / "my_grpo.yaml"
    mine.write_text(
        f"defaults: {NEMO_RL_CONFIGS / 'grpo_math_1B.yaml'}\n"
        "policy:\n  model_name: ${oc.env:NRS_HF_HOME}/hub/Qwen2.5-1.5B\n"
    )
    args = grpo_sweep(
        tmp_path,
        "hpo=grid",
        "policy.optimizer.kwargs.lr=choice(1e-5)",
        "hydra.sweeper.study_name=env",
        "+trainer.env.NRS_HF_HOME=/scratch/hf",
    )
    args[args.index("recipe=grpo_math_1B")] = f"recipe={mine}"
    run_sweep(tmp_path, args)
    (trial,) = trials(tmp_path, "env")
    folder = Path(trial.user_attrs["job_dir"])
    written = OmegaConf.load(folder / "config.yaml")
    assert OmegaConf.to_container(written)["policy"]["model_name"] == (
        "${oc.env:NRS_HF_HOME}/hub/Qwen2.5-1.5B"
    )  # left for NeMo RL
    assert trial.state.name == "COMPLETE"
    assert log_facts(folder)["policy.model_name"] == "/scratch/hf/hub/Qwen2.5-1.5B"


def test_check_skips_environment_values_but_not_broken_ones(tmp_path):
    cfg = OmegaConf.create(
        {
            "policy": {
                "model_name": "${oc.env:NRS_UNSET_VAR}/m",
                "tokenizer": "${policy.model_name}",
            },
            "logger": {"log_dir": "logs"},
            "checkpointing": {"enabled": True, "checkpoint_dir": "c"},
            "trainer": {
                "checkout": "${oc.env:NRS_UNSET_CHECKOUT,null}",
                "script": "examples/run_grpo.py",
                "objective": {"tag": "validation/accuracy"},
            },
        }
    )
    check_nemo_rl_trial(cfg)  # the job's environment will decide both
    cfg.policy.broken = "${mul:${policy.nothing},2}"
    with pytest.raises(SweepConfigError, match="policy.broken"):
        check_nemo_rl_trial(cfg)


# --- 6. GPU slots on one node ------------------------------------------------------------------


def test_concurrent_trials_get_disjoint_gpus(tmp_path):
    """Two trials at once (joblib), 2 GPUs each, on a node showing 4 (NEMO_RL_SWEEP_GPUS); each
    with its own Ray temp folder."""
    env = {"NEMO_RL_SWEEP_GPUS": "0,1,2,3", "NEMO_RL_SWEEP_GPU_LOCKS": str(tmp_path / "locks")}
    run_sweep(
        tmp_path,
        grpo_sweep(
            tmp_path,
            "hpo=grid",
            "policy.optimizer.kwargs.lr=choice(1e-5,2e-5)",
            "cluster.gpus_per_node=2",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.study_name=gpus",
            f"+trainer.env.STANDIN_BARRIER_DIR={tmp_path / 'barrier'}",
            "+trainer.env.STANDIN_BARRIER_COUNT=2",
        ),
        env=env,
    )
    facts = [log_facts(Path(t.user_attrs["job_dir"])) for t in trials(tmp_path, "gpus")]
    assert [f["overlapped"] for f in facts] == ["2", "2"]  # both ran at the same time
    sets = [set(f["CUDA_VISIBLE_DEVICES"].split(",")) for f in facts]
    assert all(len(s) == 2 for s in sets) and not sets[0] & sets[1]
    assert sets[0] | sets[1] == {"0", "1", "2", "3"}
    # its own part of NeMo RL's port ranges (grpo_math_1B: master ports 1400-1999)
    assert sorted(f["master_ports"] for f in facts) == ["1400-1699", "1699-1998"]
    ray = [f["RAY_TMPDIR"] for f in facts]
    assert len(set(ray)) == 2 and all(len(f) < 40 for f in ray)  # room for Ray's socket paths


def test_more_slots_than_gpus_is_refused_before_launch(tmp_path):
    env = {"NEMO_RL_SWEEP_GPUS": "0,1,2,3", "NEMO_RL_SWEEP_GPU_LOCKS": str(tmp_path / "locks")}
    args = grpo_sweep(
        tmp_path,
        "hpo=grid",
        "policy.optimizer.kwargs.lr=choice(1e-5,2e-5)",
        "cluster.gpus_per_node=4",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
    )
    done = run_app(TRAIN_APP, args, cwd=tmp_path, env=env)
    assert done.returncode == 2
    (line,) = error_lines(done)
    assert line.startswith("Error: cluster.gpus_per_node: 2 trial(s) at once need 2 x 4 GPUs")
    assert "Fix: run at most 1 trial(s) at once" in line
    assert not (tmp_path / "ledger.db").exists()
    assert not list(tmp_path.glob("multirun/*/*/*/trial_*"))


def test_a_slot_is_exclusive_across_processes(tmp_path):
    from nemo_rl_sweep.trainers.nemo_rl.gpus import try_slot

    env = {"NEMO_RL_SWEEP_GPU_LOCKS": str(tmp_path / "locks")}
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.path.insert(0, sys.argv[1]);"
            "from nemo_rl_sweep.trainers.nemo_rl.gpus import try_slot;"
            "held = try_slot(['0', '1', '2', '3'], 2, {'NEMO_RL_SWEEP_GPU_LOCKS': sys.argv[2]});"
            "print(','.join(h.name[-9:-5] for h in held), flush=True); sys.stdin.read()",
            str(REPO),
            env["NEMO_RL_SWEEP_GPU_LOCKS"],
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "gpu0,gpu1"  # the other process holds 0,1
    mine = try_slot(["0", "1", "2", "3"], 2, env)
    assert [Path(h.name).name for h in mine] == ["gpu2.lock", "gpu3.lock"]
    assert try_slot(["0", "1", "2", "3"], 2, env) is None  # every slot is taken
    holder.stdin.close()
    holder.wait()  # the holder's locks die with it
    again = try_slot(["0", "1", "2", "3"], 2, env)
    assert [Path(h.name).name for h in again] == ["gpu0.lock", "gpu1.lock"]


# --- 7. disk -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["best", "none", "keep"])
def test_checkpoints_best_none_keep(tmp_path, mode):
    out = run_sweep(
        tmp_path,
        grpo_sweep(
            tmp_path,
            "hpo=grid",
            "policy.optimizer.kwargs.lr=choice(1e-5,3e-5,2e-5)",
            f"trainer.checkpoints={mode}",
            "hydra.sweeper.study_name=disk",
        ),
    )
    done = trials(tmp_path, "disk")
    best = max(done, key=lambda t: t.value)
    assert best.params["policy.optimizer.kwargs.lr"] == 3e-5
    one_checkpoint = WEIGHT_BYTES + len(
        json.dumps({"step": 2, "val:accuracy": value("grpo", 1e-5, 2)})
    )
    freed = 0
    for trial in done:
        folder = Path(trial.user_attrs["job_dir"])
        kept = sorted(p.name for p in (folder / "checkpoints").iterdir())
        expect = mode == "keep" or (mode == "best" and trial.number == best.number)
        assert kept == (["step_2", "step_4"] if expect else [])
        freed += 0 if expect else 2
        # nothing else goes: the config, the log, the owner marker, the TensorBoard events
        assert (folder / "config.yaml").is_file() and (folder / OWNER_FILE).is_file()
        assert (folder / "train.log").is_file()
        assert list((folder / "logs" / "exp_001" / "tensorboard").glob("events.out.tfevents*"))
    study = optuna.load_study(study_name="disk", storage=f"sqlite:///{tmp_path / 'ledger.db'}")
    total = study.user_attrs.get("nemo_rl_sweep.checkpoints_freed_bytes", 0)
    assert total == pytest.approx(freed * one_checkpoint, rel=0.01)
    if freed:
        assert f"({total} bytes; trainer.checkpoints)" in out
    else:
        assert "trainer.checkpoints)" not in out


def test_only_the_named_trials_own_checkpoints_are_deleted(tmp_path):
    from nemo_rl_sweep.trainers.nemo_rl.checkpoints import release
    from nemo_rl_sweep.trainers.nemo_rl.folder import claim_folder

    def trial_folder(name: str, owner: TrialIdentity | None) -> Path:
        folder = tmp_path / name
        if owner is not None:
            claim_folder(folder, owner)
        for step in ("step_2", "step_4"):
            (folder / "checkpoints" / step).mkdir(parents=True)
            (folder / "checkpoints" / step / "weights.bin").write_bytes(b"\0" * 1000)
        (folder / "checkpoints" / "notes.txt").write_text("not a checkpoint")
        return folder

    mine = TrialIdentity("s", 1, "sqlite:///x.db")
    owned = trial_folder("owned", mine)
    foreign = trial_folder("foreign", TrialIdentity("other", 1, "sqlite:///x.db"))
    unclaimed = trial_folder("unclaimed", None)
    freed = release([(str(owned), mine), (str(foreign), mine), (str(unclaimed), mine)])
    assert freed == 2000
    assert sorted(p.name for p in (owned / "checkpoints").iterdir()) == ["notes.txt"]
    for untouched in (foreign, unclaimed):
        assert len(list((untouched / "checkpoints").iterdir())) == 3


def test_an_unknown_checkpoints_mode_is_refused_before_launch():
    cfg = {
        "policy": {"x": 1},
        "trainer": {
            "checkout": str(STANDIN),
            "script": "examples/run_grpo.py",
            "command": [sys.executable],
            "checkpoints": "latest",
        },
    }
    with pytest.raises(SweepConfigError) as err:
        check_nemo_rl_trial(cfg)
    assert err.value.key == "trainer.checkpoints" and "keep, best or none" in str(err.value)
