"""fANOVA beside PED-ANOVA on real Optuna studies: the parameter that moves the objective ranks
first by both; confirmation runs are left out; too little to go on gives nothing."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from nemo_rl_sweep import confirmation
from nemo_rl_sweep.outputs import importances

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_study(tmp_path: Path, n: int, directions: list[str] | None = None) -> optuna.Study:
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'ledger.db'}",
        directions=directions or ["maximize"],
        sampler=optuna.samplers.RandomSampler(seed=0),
    )

    def objective(trial: optuna.Trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        kl = trial.suggest_float("kl", 0.0, 0.1)
        trial.suggest_categorical("kind", ["k1", "k3"])
        value = -((math.log10(lr) + 2.5) ** 2) + 0.01 * kl
        return value if len(study.directions) == 1 else (value, kl)

    study.optimize(objective, n_trials=n)
    return study


def test_both_methods_rank_the_parameter_that_matters_first(tmp_path: Path) -> None:
    study = make_study(tmp_path, 30)
    values, errors = importances.importances(study)
    assert errors == {}
    assert set(values) == {"fanova", "ped_anova"}
    for method in ("fanova", "ped_anova"):
        assert next(iter(values[method])) == "lr", (method, values[method])
        assert set(values[method]) == {"lr", "kl", "kind"}
    assert values["fanova"]["lr"] > 0.8
    lines = importances.summary_lines(study)
    assert lines[0].startswith("Parameter importances")
    assert "fANOVA" in lines[1] and "PED-ANOVA" in lines[1]
    assert lines[2].split()[0] == "lr"


def test_several_objectives_use_the_first(tmp_path: Path) -> None:
    study = make_study(tmp_path, 30, ["maximize", "maximize"])
    values, _ = importances.importances(study)
    assert next(iter(values["fanova"])) == "lr"


def test_confirmation_runs_are_left_out(tmp_path: Path) -> None:
    study = make_study(tmp_path, 6)
    best = study.best_trial
    for seed in range(40):  # many repeats of one configuration would swamp the search's trials
        trial = study.ask(fixed_distributions=best.distributions)
        trial.set_user_attr(confirmation.ATTR_CONFIRMATION, {"seed": seed})
        study.tell(trial, best.value + seed)
    assert len(importances.search_study(study).trials) == 6


@pytest.mark.parametrize("n", [0, 1])
def test_too_few_trials_give_nothing(tmp_path: Path, n: int) -> None:
    study = make_study(tmp_path, n)
    assert importances.importances(study) == ({}, {})
    assert importances.summary_lines(study) == []
