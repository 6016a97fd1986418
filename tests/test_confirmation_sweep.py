"""Confirmation, range edges and importances in real Hydra sweeps: the answer a user reads in
optimization_results.yaml and in the summary, resume after the sweeper died in a confirmation run,
and bad settings refused before the ledger is touched."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from nemo_rl_sweep import confirmation
from tests.helpers import REPO, TOY_APP, error_lines, load_study, results, run_app, sweep_dirs

NOISY_APP = REPO / "tests" / "apps" / "noisy.py"
CONFIRM = ["--multirun", "hydra.sweeper.confirm.top_k=2", "hydra.sweeper.confirm.seeds=2"]
ENV = {"PYTHONPATH": str(REPO)}


def confirmation_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if confirmation.is_confirmation(t)]


def test_a_lucky_best_trial_does_not_hold_up(tmp_path: Path) -> None:
    proc = run_app(NOISY_APP, CONFIRM, tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [sweep] = sweep_dirs(tmp_path)
    res = results(sweep)
    assert res["best_params"] == {"lr": 0.01}
    assert res["best_value"] == pytest.approx(0.7)
    block = res["confirmation"]
    assert block["held_up"] is False
    assert block["seed_key"] == "grpo.seed" and block["seeds"] == [1, 2]
    assert block["runs"] == "4 of 4 done"
    best, lucky = block["configurations"]
    assert best["params"] == {"lr": 0.01} and best["n_runs"] == 3
    assert best["mean"] == pytest.approx(0.7) and best["std"] == pytest.approx(0.0)
    assert lucky["params"] == {"lr": 0.1} and lucky["mean"] == pytest.approx(1.3 / 3)
    study = load_study(sweep)
    assert block["search_best_trial"] == study.trials[2].number
    # the confirmation runs are trials of the same study, ran with the new seed
    runs = confirmation_trials(study)
    assert len(runs) == 4 and len(study.trials) == 7
    for t in runs:
        seed = t.user_attrs[confirmation.ATTR_CONFIRMATION]["seed"]
        assert t.user_attrs["metrics"]["seed"] == seed
        assert f"grpo.seed={seed}" in t.user_attrs["overrides"]
    out = proc.stdout
    assert "Confirmed best (search trial 1): score = 0.7 ± 0 over 3 runs" in out
    assert "did not hold up" in out
    # the same command again: nothing left to run, the same answer
    again = run_app(NOISY_APP, CONFIRM, tmp_path, env=ENV)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(load_study(sweep_dirs(tmp_path)[-1]).trials) == 7


def test_confirmation_runs_resume_after_the_sweeper_died(tmp_path: Path) -> None:
    args = CONFIRM + ["crash_on_seed=2", f"crash_marker={tmp_path / 'crashed'}"]
    first = run_app(NOISY_APP, args, tmp_path, env=ENV)
    assert first.returncode != 0  # the job took its sweeper down, mid-confirmation
    second = run_app(NOISY_APP, args, tmp_path, env=ENV)
    assert second.returncode == 0, second.stdout + second.stderr
    study = load_study(sweep_dirs(tmp_path)[-1])
    runs = confirmation_trials(study)
    complete = [t for t in runs if t.state == optuna.trial.TrialState.COMPLETE]
    keys = [confirmation.trial_run_key(t) for t in complete]
    assert len(keys) == 4 and len(set(keys)) == 4  # each run done once
    assert any(t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("stale") for t in runs)
    assert results(sweep_dirs(tmp_path)[-1])["best_params"] == {"lr": 0.01}


def test_a_multi_objective_sweep_confirms_the_front(tmp_path: Path) -> None:
    # score up, cost (10 * lr) down: every lr is on the search's front; lr 0.1 only by its lucky seed
    args = CONFIRM[:2] + [
        "hydra.sweeper.confirm.seeds=1",
        "hydra.sweeper.confirm.top_k=3",
        "hydra.sweeper.metric=[score,cost]",
        "hydra.sweeper.direction=[maximize,minimize]",
    ]
    proc = run_app(NOISY_APP, args, tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [sweep] = sweep_dirs(tmp_path)
    block = results(sweep)["confirmation"]
    assert block["runs"] == "3 of 3 done" and block["held_up"] is False
    assert block["search_best_trial"] == [0, 1, 2] and block["not_held_up"] == [2]
    means = {c["params"]["lr"]: c["mean"] for c in block["configurations"]}
    assert means[0.1] == {"score": pytest.approx(0.55), "cost": pytest.approx(1.0)}
    assert "Confirmed front: 2 of 3 confirmed members are not dominated" in proc.stdout
    assert "Front members that did not hold up (dominated on their means): trial 2" in proc.stdout


@pytest.mark.parametrize(
    ("app", "args", "words"),
    [
        (NOISY_APP, ["hydra.sweeper.confirm.top_k=0"], "confirm.top_k: must be a positive integer"),
        (NOISY_APP, ["hydra.sweeper.confirm.top_k=4"], "more than the 3 trials"),
        (
            NOISY_APP,
            ["hydra.sweeper.confirm.top_k=2", "hydra.sweeper.confirm.seeds=0"],
            "confirm.seeds: must be a positive integer",
        ),
        (TOY_APP, ["hydra.sweeper.confirm.top_k=2"], "no seed key found in the trial config"),
    ],
)
def test_bad_confirmation_settings_stop_before_the_sweep(
    tmp_path: Path, app: Path, args: list[str], words: str
) -> None:
    proc = run_app(app, ["--multirun", *args], tmp_path, env=ENV)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = error_lines(proc)
    assert words in line and "Fix: " in line
    assert not (tmp_path / "multirun" / "nemo_rl_sweep.db").exists()  # ledger untouched


def test_range_edges_and_both_importances_in_the_answer(tmp_path: Path) -> None:
    # the toy's optimum is x=0.3: searched from 0.5 up, the best x is the range's first value
    args = [
        "--multirun",
        "hydra.sweeper.strategy=grid",
        "hydra.sweeper.n_trials=null",
        "x=range(0.5, 1.0, 0.1)",
        "y=range(1, 4)",
    ]
    proc = run_app(TOY_APP, args, tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [sweep] = sweep_dirs(tmp_path)
    res = results(sweep)
    [edge] = [e for e in res["range_edges"] if e["key"] == "x"]
    assert (edge["side"], edge["widen"], edge["value"]) == ("low", "downward", 0.5)
    assert not [e for e in res["range_edges"] if e["key"] == "y"]  # y=2 is inside 1..3
    assert "x: the best value" in proc.stdout and "widen it downward" in proc.stdout
    assert set(res["importances"]) == {"fanova", "ped_anova"}
    assert "fANOVA" in proc.stdout and "PED-ANOVA" in proc.stdout
    assert (sweep / "plots" / "importances_fanova.png").is_file()
    assert (sweep / "plots" / "importances_fanova.html").is_file()
