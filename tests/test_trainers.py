"""The trainer registry: ``trainer.name`` picks a trainer that runs, lists and checks a trial.

Trial configs are composed by Hydra from the real ``conf/`` (the tiny GRPO recipe, and NeMo RL's
own ``grpo_math_1B.yaml`` from ../shared/nemo_rl), as the sweeper composes them before launch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.trainers import TRAINER_NAMES, get_trainer
from tests.helpers import NEMO_RL_CONFIGS

REPO = Path(__file__).resolve().parents[1]
CONFIGS = NEMO_RL_CONFIGS
SEARCHPATH = f"hydra.searchpath=[nemorl://{CONFIGS}]"


def compose_trial(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def listed_metrics(trainer: str) -> list[str]:
    return yaml.safe_load((REPO / "conf" / "trainer" / f"{trainer}.yaml").read_text())["metrics"]


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    """A folder laid out like a NeMo RL checkout, as far as the check looks."""
    (tmp_path / "RL" / "examples").mkdir(parents=True)
    (tmp_path / "RL" / "examples" / "run_grpo.py").write_text("")
    return tmp_path / "RL"


def nemo_rl_trial(checkout: Path, *overrides: str):
    base = ["trainer=nemo_rl", "recipe=grpo_math_1B", SEARCHPATH, f"trainer.checkout={checkout}"]
    return compose_trial([*base, *overrides])


def test_importing_the_registry_loads_neither_torch_nor_tensorboard():
    code = (
        "import sys; from nemo_rl_sweep.trainers import TRAINER_NAMES, get_trainer\n"
        "for name in TRAINER_NAMES: get_trainer(name)\n"
        "print(sorted(m for m in ('torch', 'tensorboard') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "[]"


def test_each_name_picks_its_trainer():
    assert TRAINER_NAMES == ("embedded", "nemo_rl")
    for name in TRAINER_NAMES:
        assert get_trainer(name).name == name


@pytest.mark.parametrize("name", ["nemo-rl", "Embedded", "", None])
def test_an_unknown_trainer_name_is_refused_with_the_names_there_are(name):
    with pytest.raises(SweepConfigError) as err:
        get_trainer(name)
    assert err.value.key == "trainer.name"
    assert str(err.value) == (
        f"trainer.name: unknown trainer {name!r}. Fix: use one of embedded, nemo_rl"
    )


def test_a_job_with_an_unknown_trainer_name_is_refused_before_training():
    from nemo_rl_sweep.job import run_training

    with pytest.raises(SweepConfigError) as err:
        run_training(compose_trial(["trainer.name=bogus"]))
    assert err.value.key == "trainer.name"


def test_metrics_are_the_names_the_trainer_config_lists():
    """The embedded trainer lists its metrics; NeMo RL's follow the recipe (test_nemo_rl_recipes)."""
    cfg = compose_trial(["trainer=embedded"])
    assert get_trainer("embedded").metrics(cfg) == listed_metrics("embedded")


def test_metrics_of_a_config_without_a_list_are_unknown():
    recipe = OmegaConf.load(REPO / "conf" / "recipe" / "grpo_tiny.yaml")
    assert get_trainer("embedded").metrics(recipe) is None
    assert get_trainer("embedded").metrics({"trainer": {"name": "embedded"}}) is None


def test_the_embedded_trainer_writes_every_metric_it_lists_and_reports_validations():
    cfg = compose_trial(["grpo.max_num_steps=4", "grpo.val_period=2"])
    trainer = get_trainer("embedded")
    validations: list[int] = []
    metrics = trainer.run(cfg, on_validation=lambda step, values: validations.append(step))
    assert set(trainer.metrics(cfg)) <= set(metrics)
    assert validations == [2, 4]


def test_the_embedded_check_accepts_the_tiny_recipe():
    cfg = compose_trial(["policy.optimizer.kwargs.lr=1e-2"])
    assert get_trainer("embedded").check(cfg, "validation/accuracy", "maximize") is None


def test_the_nemo_rl_check_accepts_a_real_recipe_with_a_checkout(checkout):
    cfg = nemo_rl_trial(checkout)
    assert get_trainer("nemo_rl").check(cfg, "validation/accuracy", "maximize") is None


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["trainer.checkout=null"], "trainer.checkout"),
        (["trainer.checkout=/nonexistent/RL"], "trainer.checkout"),
        (["trainer.script=examples/run_sft.py"], "trainer.script"),
        (["trainer.objective.source=wandb"], "trainer.objective.source"),
        (["trainer.objective.reduce=median"], "trainer.objective.reduce"),
        (
            ["trainer.objective.source=training_info", "checkpointing.enabled=false"],
            "checkpointing.enabled",
        ),
        (
            ["loss_fn.reference_policy_kl_penalty=${policy.no_such_key}"],
            "loss_fn.reference_policy_kl_penalty",
        ),
    ],
)
def test_the_nemo_rl_check_refuses_what_the_runner_would_refuse(checkout, overrides, key):
    cfg = nemo_rl_trial(checkout, *overrides)
    with pytest.raises(SweepConfigError) as err:
        get_trainer("nemo_rl").check(cfg, "validation/accuracy", "maximize")
    assert err.value.key == key, err.value


def test_the_nemo_rl_check_takes_the_sweeps_metrics(checkout):
    """A null ``objective.tag`` becomes the sweep's metric: ``best`` of two objectives is refused."""
    cfg = nemo_rl_trial(checkout, "trainer.objective.reduce=best")
    get_trainer("nemo_rl").check(cfg, "validation/accuracy", "maximize")
    with pytest.raises(SweepConfigError) as err:
        get_trainer("nemo_rl").check(
            cfg, ["validation/accuracy", "train/loss"], ["maximize", "minimize"]
        )
    assert err.value.key == "trainer.objective.reduce"
