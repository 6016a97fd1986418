"""The ray.sub trial mode without Slurm: the submission a trial gets (multi-node recipes included),
what sinfo's answers and Slurm's final states mean, and the refusals made before Slurm is asked.

The runs on the real Slurm test cluster are in tests/test_slurm_raysub.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.trainers.nemo_rl import raysub
from nemo_rl_sweep.trainers.nemo_rl.config import load_recipe
from tests.helpers import NEMO_RL_CONFIGS, TRAIN_APP, error_lines, run_app

REPO = Path(__file__).resolve().parents[1]
STANDIN = REPO / "tests" / "apps" / "nemo_rl_standin"
RAY_SUB = REPO / "tests" / "apps" / "raysub_standin" / "ray.sub"
GRPO_2N8G = "recipes/llm/grpo-llama3.1-8b-instruct-2n8g-megatron-fp8-e2e"
DPO_4N8G = "recipes/llm/dpo-llama3.1-8b-instruct-4n8g-megatron.v2"


def settings(**extra: object) -> raysub.RaySubSettings:
    node = {"ray_sub": str(RAY_SUB), "container": "/img/nemo_rl.sqsh", **extra}
    return raysub.RaySubSettings.from_cfg(node, None)


@pytest.mark.parametrize(("recipe", "nodes"), [(GRPO_2N8G, 2), (DPO_4N8G, 4)])
def test_a_multi_node_recipe_asks_its_nodes_and_gpus(recipe, nodes):
    cfg = load_recipe(NEMO_RL_CONFIGS / f"{recipe}.yaml")
    num_nodes, gpus = int(cfg.cluster.num_nodes), int(cfg.cluster.gpus_per_node)
    assert (num_nodes, gpus) == (nodes, 8)
    mine = settings(
        account="acct",
        partition="batch",
        qos="high",
        time="2:00:00",
        sbatch_args=["--constraint=h100"],
    )
    offer = raysub.partition_offer("3|gpu:h100:8(S:0-1)\n2|gpu:h100:8(S:0-1)\n")
    gres = raysub.check_capacity(offer, "batch", num_nodes, gpus, mine.gres)
    argv = raysub.sbatch_argv(mine, raysub.job_name("grpo-bayes", 7), num_nodes, gpus, gres)
    assert argv == [
        "sbatch",
        "--parsable",
        "--job-name=grpo-bayes-trial7",
        f"--nodes={nodes}",
        "--requeue",
        "--gres=gpu:8",
        "--account=acct",
        "--partition=batch",
        "--qos=high",
        "--time=2:00:00",
        "--constraint=h100",
        str(RAY_SUB),
    ]
    command = raysub.driver_command(
        Path("/opt/RL"), ["uv", "run", "python"], "examples/run_grpo.py", Path("/t/config.yaml"), []
    )
    env = raysub.submit_env(mine, command, gpus, {"PATH": "/bin"})
    assert env["COMMAND"] == (
        "cd /opt/RL && uv run python examples/run_grpo.py --config /t/config.yaml"
    )
    assert (env["CONTAINER"], env["MOUNTS"], env["GPUS_PER_NODE"]) == ("/img/nemo_rl.sqsh", "", "8")


def test_a_partition_too_small_or_without_those_gpus_is_refused():
    offer = raysub.partition_offer("1|gpu:8\n")
    with pytest.raises(SweepConfigError, match="needs 4 nodes but partition p has 1") as err:
        raysub.check_capacity(offer, "p", 4, 8, "auto")
    assert err.value.key == "cluster.num_nodes"
    with pytest.raises(SweepConfigError, match="offers gpu:4") as err:
        raysub.check_capacity(raysub.partition_offer("4|gpu:a100:4\n"), "p", 2, 8, "auto")
    assert err.value.key == "cluster.gpus_per_node"
    # a partition without gpu GRES (as the test cluster): no --gres, as ray.sub's maybe_gres_arg
    assert raysub.check_capacity(raysub.partition_offer("2|(null)\n"), "p", 2, 8, "auto") is False
    assert raysub.check_capacity(raysub.partition_offer("2|gpu:8\n"), "p", 2, 8, "never") is False


def test_slurm_states_become_reasons_and_only_lost_nodes_are_retried(tmp_path):
    log = tmp_path / "ray-driver.log"
    assert raysub.ending("5", "COMPLETED", "0:0", log, "").ok
    timeout = raysub.ending("5", "TIMEOUT", "0:0", log, "")
    assert not timeout.ok and not timeout.retry and "time limit" in timeout.reason
    assert "running out of memory" in raysub.ending("5", "OUT_OF_MEMORY", "0:125", log, "").reason
    cancelled = raysub.ending("5", "CANCELLED by 0", "0:15", log, "")
    assert "was cancelled (CANCELLED by 0)" in cancelled.reason and not cancelled.retry
    assert raysub.ending("5", "NODE_FAIL", "0:0", log, "").retry
    assert raysub.ending("5", "PREEMPTED", "0:0", log, "").retry
    failed = raysub.ending("5", "FAILED", "1:0", log, "Traceback\nValueError: boom")
    assert "exit code 1:0" in failed.reason and failed.reason.endswith("ValueError: boom")


def test_the_driver_log_of_the_latest_start_is_read(tmp_path):
    assert raysub.log_files(tmp_path, "12") == (tmp_path / "slurm-12.out", None)
    for folder in ("12-logs", "12-1-logs", "12-2-logs", "120-logs"):
        (tmp_path / folder).mkdir()
    assert raysub.log_files(tmp_path, "12")[1] == tmp_path / "12-2-logs" / "ray-driver.log"


def test_bare_metal_and_bad_settings():
    assert raysub.submit_env(settings(container="none"), "c", 1, {})["CONTAINER"] == ""
    with pytest.raises(SweepConfigError, match="use auto, always or never"):
        settings(gres="sometimes")
    with pytest.raises(SweepConfigError, match="no trainer.checkout"):
        raysub.RaySubSettings.from_cfg({"container": "x"}, None)
    default = raysub.RaySubSettings.from_cfg(OmegaConf.create({"container": "x"}), STANDIN)
    assert default.ray_sub == STANDIN / "ray.sub"


def raysub_dry_run(tmp_path: Path, *extra: str):
    args = [
        "--multirun",
        "hpo=random",
        "trainer=nemo_rl",
        f"hydra.searchpath=[nemorl://{NEMO_RL_CONFIGS}]",
        f"trainer.checkout={STANDIN}",
        f"trainer.command=[{sys.executable}]",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'ledger.db'}",
        "hydra/launcher=slurm_raysub",
        f"hydra.launcher.ray_sub={RAY_SUB}",
        "hydra.launcher.container=/img/nemo_rl.sqsh",
        "hydra.sweeper.dry_run=true",
        *extra,
    ]
    return run_app(TRAIN_APP, args, cwd=tmp_path)


def test_a_dry_run_shows_the_submission_of_a_two_node_recipe(tmp_path):
    proc = raysub_dry_run(
        tmp_path,
        f"recipe={GRPO_2N8G}",
        "hydra.launcher.account=acct",
        "hydra.launcher.partition=batch",
        "hydra.launcher.mounts=/lustre:/lustre",
        "hydra.launcher.sbatch_args=['--constraint=h100']",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    at = lines.index(
        "[dry run] each trial is one sbatch of ray.sub, from its trial folder (Slurm not asked):"
    )
    assert lines[at + 1].startswith(
        f"  COMMAND='cd {STANDIN} && {sys.executable} examples/run_grpo.py"
    )
    assert "CONTAINER=/img/nemo_rl.sqsh MOUNTS=/lustre:/lustre GPUS_PER_NODE=8" in lines[at + 1]
    assert lines[at + 2] == (
        "  sbatch --parsable '--job-name=<study>-trial<N>' --nodes=2 --requeue --gres=gpu:8 "
        f"--account=acct --partition=batch --time=4:00:00 --constraint=h100 {RAY_SUB}"
    )
    assert not (tmp_path / "ledger.db").exists()


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            ["hydra.launcher.ray_sub=/no/such/ray.sub"],
            "Error: hydra.launcher.ray_sub: /no/such/ray.sub does not exist. Fix: point it at "
            "NeMo RL's ray.sub (null: <trainer.checkout>/ray.sub)",
        ),
        (
            ["hydra.launcher.container=null"],
            "Error: hydra.launcher.container: no container image for ray.sub's CONTAINER. Fix: "
            "set hydra.launcher.container=/path/to/nemo_rl.sqsh (or export CONTAINER), or "
            "container=none for a ray.sub that runs without pyxis",
        ),
    ],
)
def test_no_ray_sub_or_no_container_is_refused_before_anything(tmp_path, extra, line):
    proc = raysub_dry_run(tmp_path, "recipe=grpo_math_1B", *extra)
    assert proc.returncode == 2
    assert error_lines(proc) == [line]
    assert not (tmp_path / "ledger.db").exists()


def test_a_job_slurm_forgot_is_judged_by_ray_subs_exit_line(tmp_path):
    """Without accounting, ray.sub's own last line says how the job ended."""
    from hydra_plugins.nemo_rl_sweeper.raysub_jobs import _from_log

    out = tmp_path / "slurm-3.out"
    assert _from_log(out)[0].startswith("LOST")
    out.write_text("[NRL_PHASE][t][+5s] ray.sub exiting (exit_code=0)\n")
    assert _from_log(out)[:2] == ("COMPLETED", "0:0")
    out.write_text("[NRL_PHASE][t][+5s] ray.sub exiting (exit_code=2)\n")
    assert _from_log(out)[:2] == ("FAILED", "2:0")
