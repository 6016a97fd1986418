"""The sweeper's keys are listed once: the Hydra schema and the plugin's parameters follow them."""

from __future__ import annotations

import copy
import dataclasses
import inspect

import pytest
from omegaconf import OmegaConf

from hydra_plugins.nemo_rl_sweeper.config import NemoRLSweeperConf
from hydra_plugins.nemo_rl_sweeper.sweeper import NemoRLSweeper
from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.samplers.grid import GridSampler
from nemo_rl_sweep.settings import SweepSettings, check_settings
from nemo_rl_sweep.space import parse_params

HYDRA_ONLY = {"_target_", "_recursive_"}  # read by Hydra's instantiate, not by the sweeper
JOB_KEYS = {"params", "trial_number"}  # the search space, and each job's ledger trial


def setting_names() -> list[str]:
    return [f.name for f in dataclasses.fields(SweepSettings)]


def test_schema_init_and_settings_list_the_same_keys():
    schema = [f.name for f in dataclasses.fields(NemoRLSweeperConf)]
    init = list(inspect.signature(NemoRLSweeper.__init__).parameters)[1:]  # past self
    assert [k for k in schema if k not in HYDRA_ONLY | JOB_KEYS] == setting_names()
    assert [k for k in init if k not in JOB_KEYS] == setting_names()
    assert set(schema) - HYDRA_ONLY == set(init)


def test_schema_defaults_are_the_settings_defaults():
    schema = OmegaConf.to_container(OmegaConf.structured(NemoRLSweeperConf))
    assert {k: schema[k] for k in setting_names()} == dataclasses.asdict(SweepSettings())


def test_schema_takes_a_list_metric_and_a_sampler_node():
    node = OmegaConf.structured(NemoRLSweeperConf)
    node.metric = ["a", "b"]
    node.sampler = {"_target_": "optuna.samplers.TPESampler", "n_startup_trials": 3}
    node.n_trials = None
    assert OmegaConf.to_container(node.sampler)["n_startup_trials"] == 3
    node.n_trials = "many"  # the schema takes any type: the check refuses it, as one Error line
    with pytest.raises(SweepConfigError, match="must be a positive integer or null, got 'many'"):
        check_settings(
            SweepSettings(n_trials=node.n_trials), parse_params({"x": "interval(0.0, 1.0)"})
        )


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SweepSettings().strategy = "grid"  # type: ignore[misc]


def test_check_does_not_change_the_settings():
    space = parse_params({"x": "interval(0.0, 1.0)", "y": "choice(1, 2)"})
    settings = SweepSettings(metric="score", enqueue=[{"x": "0.5", "y": 2.0}])
    before = copy.deepcopy(settings)
    plan = check_settings(settings, space)
    assert settings == before
    assert plan.enqueue == [{"x": 0.5, "y": 2}]  # normalised in the plan, not in the settings
    assert plan.objectives.names == ("score",)


@pytest.mark.parametrize(
    ("sampler", "strategy"),
    [(None, "random"), ({"_target_": "optuna.samplers.TPESampler"}, "optuna")],
)
def test_no_strategy_resolves_from_the_sampler_key(sampler, strategy):
    settings = SweepSettings(sampler=sampler)
    plan = check_settings(settings, parse_params({"x": "interval(0.0, 1.0)"}))
    assert plan.strategy == strategy
    assert settings.strategy is None


def test_grid_plan_has_its_points_cut_to_n_trials():
    space = parse_params({"x": "choice(1, 2, 3)", "y": "choice(a, b)"})
    plan = check_settings(SweepSettings(strategy="grid", n_trials=4), space)
    assert isinstance(plan.sampler, GridSampler)
    assert len(plan.grid_points) == 4
    assert plan.pruner is None and plan.warm_start is None


@pytest.mark.parametrize(
    ("settings", "key", "words"),
    [
        (dict(strategy="nope"), "hydra.sweeper.strategy", "unknown strategy 'nope'"),
        (dict(n_trials=None), "hydra.sweeper.n_trials", "is null"),
        (dict(n_trials=0), "hydra.sweeper.n_trials", "must be a positive integer, got 0"),
        (dict(n_jobs=True), "hydra.sweeper.n_jobs", "must be a positive integer, got True"),
        (dict(max_failure_rate=2), "hydra.sweeper.max_failure_rate", "must be a number in [0, 1]"),
        (dict(seed="1"), "hydra.sweeper.seed", "must be an integer or null"),
        (dict(strategy="pareto"), "hydra.sweeper.metric", "2 or more objectives"),
        (
            dict(strategy="random", sampler={"_target_": "optuna.samplers.TPESampler"}),
            "hydra.sweeper.sampler",
            "is used by strategy optuna only, the strategy is random",
        ),
        (dict(heartbeat_interval=0), "hydra.sweeper.heartbeat_interval", "positive integer"),
        (dict(grace_period=-5), "hydra.sweeper.grace_period", "positive integer"),
        (
            dict(heartbeat_interval=10, grace_period=10),
            "hydra.sweeper.grace_period",
            "live trials would be failed as stale",
        ),
        (
            dict(heartbeat_interval=None, grace_period=30),
            "hydra.sweeper.grace_period",
            "heartbeat_interval is null",
        ),
        (
            dict(warm_start_from={"study": "x"}),
            "hydra.sweeper.warm_start_from.study",
            "is not a warm-start setting",
        ),
    ],
)
def test_bad_settings_are_refused_with_their_key(settings, key, words):
    with pytest.raises(SweepConfigError) as err:
        check_settings(SweepSettings(**settings), parse_params({"x": "interval(0.0, 1.0)"}))
    assert err.value.key == key
    assert words in str(err.value)


def test_an_empty_space_is_refused():
    with pytest.raises(SweepConfigError, match="the search space is empty"):
        check_settings(SweepSettings(), parse_params({}))


def test_a_null_objective_is_the_trainers_and_a_null_direction_follows_the_metric():
    from nemo_rl_sweep.settings import objective_or_default

    sft = ("validation/val_loss", "minimize")
    assert objective_or_default(None, None) == ("validation/accuracy", "maximize")
    assert objective_or_default(None, None, sft) == sft
    assert objective_or_default(None, "maximize", sft) == ("validation/val_loss", "maximize")
    assert objective_or_default("train/loss", None) == ("train/loss", "minimize")
    assert objective_or_default("my_score", None) == ("my_score", "maximize")
    assert objective_or_default(["validation/val_loss", "train/reward"], None, sft) == (
        ["validation/val_loss", "train/reward"],
        ["minimize", "maximize"],
    )
