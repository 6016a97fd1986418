"""Confirmation of the top configurations over new seeds: the settings check, the seed key, the plan,
its resume, and the answer, on real Optuna studies in real SQLite files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.study import StudyDirection

from nemo_rl_sweep import confirmation as conf
from nemo_rl_sweep import ledger
from nemo_rl_sweep.errors import SweepConfigError
from tests.helpers import NEMO_RL_CONFIGS, REPO

optuna.logging.set_verbosity(optuna.logging.WARNING)
MAX = [StudyDirection.MAXIMIZE]
DIST = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}


def sqlite_study(tmp_path: Path, directions: list[str] | None = None) -> optuna.Study:
    return optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'ledger.db'}",
        study_name="s",
        directions=directions or ["maximize"],
    )


def add(study: optuna.Study, lr: float, value: float | list[float], **attrs: Any) -> int:
    """A complete trial run the way the loop runs one: ask, suggest, tell."""
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True) if "lr" not in trial.params else None
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    study.tell(trial, value)
    return trial.number


def run_pending(study: optuna.Study, values: dict[tuple[float, int], float | list[float]]) -> None:
    """Run every waiting trial (the enqueued confirmation runs) with the value of (lr, seed)."""
    while any(t.state == optuna.trial.TrialState.WAITING for t in study.get_trials()):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        seed = int(conf.seed_override(trial)[0].split("=")[1])
        study.tell(trial, values[(lr, seed)])


def nested_lookup(cfg: dict[str, Any]):
    def lookup(key: str) -> Any:
        node: Any = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(key)
            node = node[part]
        return node

    return lookup


# ------------------------------------------------------------------------------------ settings


def test_off_unless_top_k_is_set() -> None:
    assert conf.check_confirm(None, 20) is None
    assert conf.check_confirm({"top_k": None, "seeds": 3}, 20) is None
    assert conf.check_confirm({"top_k": 3}, 20) == conf.ConfirmSettings(3, 3, None)
    assert conf.check_confirm({"top_k": 2, "seeds": 5, "seed_key": "x.seed"}, None) == (
        conf.ConfirmSettings(2, 5, "x.seed")
    )


@pytest.mark.parametrize(
    ("confirm", "key", "words"),
    [
        ({"top_k": 0}, "hydra.sweeper.confirm.top_k", "must be a positive integer, got 0"),
        ({"top_k": 21}, "hydra.sweeper.confirm.top_k", "more than the 20 trials"),
        ({"top_k": True}, "hydra.sweeper.confirm.top_k", "positive integer"),
        ({"top_k": 3, "seeds": 0}, "hydra.sweeper.confirm.seeds", "got 0"),
        ({"top_k": 3, "seed": 1}, "hydra.sweeper.confirm.seed", "not a confirmation setting"),
        ({"top_k": 3, "seed_key": ""}, "hydra.sweeper.confirm.seed_key", "config key or null"),
    ],
)
def test_bad_settings_name_the_key_and_the_fix(confirm: dict, key: str, words: str) -> None:
    with pytest.raises(SweepConfigError) as err:
        conf.check_confirm(confirm, 20)
    assert err.value.key == key
    assert words in str(err.value)
    assert "Fix: " in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------ seed key


def test_seed_key_of_the_embedded_recipe() -> None:
    recipe = yaml.safe_load((REPO / "conf" / "recipe" / "grpo_tiny.yaml").read_text())
    settings = conf.ConfirmSettings(3, 3)
    assert conf.find_seed_key(nested_lookup(recipe), settings) == ("grpo.seed", 42)


@pytest.mark.parametrize(
    ("recipe", "key"),
    [("grpo_math_1B.yaml", "grpo.seed"), ("sft.yaml", "sft.seed"), ("dpo.yaml", "dpo.seed")],
)
def test_seed_key_of_nemo_rl_recipes(recipe: str, key: str) -> None:
    path = NEMO_RL_CONFIGS / recipe
    assert path.is_file(), (
        f"NeMo RL's configs belong at {NEMO_RL_CONFIGS} (../shared from the repo)"
    )
    cfg = yaml.safe_load(path.read_text())
    found, value = conf.find_seed_key(nested_lookup(cfg), conf.ConfirmSettings(2, 2))
    assert found == key and value == cfg[key.split(".")[0]]["seed"]


def test_no_seed_key_is_one_error_line() -> None:
    with pytest.raises(SweepConfigError) as err:
        conf.find_seed_key(nested_lookup({"x": 1}), conf.ConfirmSettings(3, 3))
    assert err.value.key == "hydra.sweeper.confirm"
    assert "no seed key found in the trial config" in str(err.value)
    assert "grpo.seed" in str(err.value) and "seed_key" in err.value.fix
    with pytest.raises(SweepConfigError, match="my.seed is not a key of the trial config"):
        conf.find_seed_key(nested_lookup({"x": 1}), conf.ConfirmSettings(3, 3, "my.seed"))


def test_a_swept_or_non_integer_seed_key_is_refused() -> None:
    lookup = nested_lookup({"grpo": {"seed": 42}, "sft": {"seed": "abc"}})
    with pytest.raises(SweepConfigError, match="grpo.seed: is swept"):
        conf.find_seed_key(lookup, conf.ConfirmSettings(3, 3), swept=["grpo.seed"])
    with pytest.raises(SweepConfigError, match="must be an integer seed"):
        conf.find_seed_key(lookup, conf.ConfirmSettings(3, 3, "sft.seed"))
    assert conf.find_seed_key(lookup, conf.ConfirmSettings(3, 3, "grpo.seed")) == ("grpo.seed", 42)


# --------------------------------------------------------------------------------- plan, resume


def test_top_k_distinct_configurations_with_new_seeds(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path)
    study.enqueue_trial({"lr": 0.01})
    add(study, 0.01, 0.9)  # the best configuration, twice in the search
    study.enqueue_trial({"lr": 0.01})
    add(study, 0.01, 0.85)
    for lr, value in ((0.001, 0.5), (0.003, 0.8), (0.03, 0.7)):
        study.enqueue_trial({"lr": lr})
        add(study, lr, value)
    record = conf.record_settings(study, conf.ConfirmSettings(3, 2), "grpo.seed", 42)
    assert record["seed_values"] == [43, 44]
    runs = conf.plan(study.trials, study.directions, record)
    assert [(r.params["lr"], r.seed, r.of) for r in runs] == [
        (0.01, 43, 0),
        (0.01, 44, 0),
        (0.003, 43, 3),
        (0.003, 44, 3),
        (0.03, 43, 4),
        (0.03, 44, 4),
    ]


def test_confirmation_runs_are_marked_and_resume(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path)
    for lr, value in ((0.001, 0.5), (0.003, 0.8), (0.03, 0.7)):
        study.enqueue_trial({"lr": lr})
        add(study, lr, value)
    record = conf.record_settings(study, conf.ConfirmSettings(2, 2), "grpo.seed", 7)
    runs = conf.plan(study.trials, study.directions, record)
    conf.enqueue(study, conf.pending(study.trials, runs))
    assert conf.pending(study.trials, runs) == []  # waiting trials hold their runs

    # the sweeper runs two, then dies with the third running
    for _ in range(2):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        assert conf.seed_override(trial) in (["grpo.seed=8"], ["grpo.seed=9"])
        study.tell(trial, 0.6)
    running = study.ask()
    running.suggest_float("lr", 1e-4, 1e-1, log=True)
    ledger.mark_stale(study, running, "its sweeper stopped")

    # the same command again: a new process, the same ledger
    again = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'ledger.db'}")
    trials = again.get_trials()
    marked = [t for t in trials if conf.is_confirmation(t)]
    assert len(marked) == 4
    assert all(
        set(t.user_attrs[conf.ATTR_CONFIRMATION]) == {"seed_key", "seed", "of", "params"}
        for t in marked
    )
    record = again.user_attrs[conf.STUDY_ATTR_CONFIRM]
    left = conf.pending(trials, conf.plan(trials, again.directions, record))
    # the waiting run is still held; the stale one is free again, so the resumed sweep re-runs it
    assert not conf.holds_run(again.trials[running.number])
    assert [conf.run_key(r.params, r.seed) for r in left] == [
        conf.trial_run_key(again.trials[running.number])
    ]
    # the search's trials are not confirmation runs; the plan is the same in the new process
    assert conf.plan(trials, again.directions, record) == runs


def test_a_confirmation_run_is_never_pruned(tmp_path: Path) -> None:
    from nemo_rl_sweep.job import TrialLink
    from nemo_rl_sweep.pruning import record_pruner

    study = sqlite_study(tmp_path)
    record_pruner(study, {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 1})
    for value in (0.8, 0.9):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.report(value, 10)
        study.tell(trial, value)
    conf.enqueue(study, [conf.ConfirmRun({"lr": 0.01}, "grpo.seed", 1, 0)])
    confirming = study.ask()
    searching = study.ask()
    for trial in (confirming, searching):
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    storage = f"sqlite:///{tmp_path / 'ledger.db'}"
    report = TrialLink(storage, "s", confirming.number, "score").reporter()
    report(10, {"score": 0.1})  # far below the median: a search trial would stop here
    with pytest.raises(optuna.TrialPruned):
        TrialLink(storage, "s", searching.number, "score").reporter()(10, {"score": 0.1})


def test_two_sweepers_enqueueing_the_same_run_keep_the_first(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path)
    add(study, 0.01, 0.5)
    run = conf.ConfirmRun({"lr": 0.01}, "grpo.seed", 1, 0)
    conf.enqueue(study, [run])
    conf.enqueue(study, [run])
    first, second = study.ask(), study.ask()
    trials = study.get_trials()
    assert not conf.held_before(trials, trials[first.number])
    assert conf.held_before(trials, trials[second.number])


# -------------------------------------------------------------------------------------- answer


def test_a_lucky_trial_does_not_hold_up(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path)
    for lr, value in ((0.001, 0.3), (0.003, 0.8), (0.03, 0.95)):  # 0.03 was lucky
        study.enqueue_trial({"lr": lr})
        add(study, lr, value)
    record = conf.record_settings(study, conf.ConfirmSettings(2, 3), "grpo.seed", 0)
    conf.enqueue(study, conf.plan(study.trials, study.directions, record))
    run_pending(
        study,
        {
            (0.03, 1): 0.2,
            (0.03, 2): 0.3,
            (0.03, 3): 0.25,
            (0.003, 1): 0.75,
            (0.003, 2): 0.8,
            (0.003, 3): 0.85,
        },
    )
    answer = conf.study_answer(study)
    assert answer is not None
    best = answer.best[0]
    assert best.params == {"lr": 0.003} and best.search_trial == 1
    assert best.n_runs == 4 and best.mean[0] == pytest.approx(0.8)
    assert best.std[0] == pytest.approx(0.0408248, rel=1e-4)
    assert not answer.held_up and answer.dropped == (2,) and answer.search_best == (2,)
    assert (answer.runs_done, answer.runs_planned) == (6, 6)
    out = answer.as_dict(["validation/accuracy"])
    assert out["held_up"] is False and out["search_best_trial"] == 2
    assert out["configurations"][0]["params"] == {"lr": 0.003}
    assert out["configurations"][0]["n_runs"] == 4
    yaml.safe_dump(out)  # plain values only
    text = "\n".join(conf.summary_lines(answer, ["validation/accuracy"]))
    assert (
        "Confirmed best (search trial 1): validation/accuracy = 0.8 ± 0.04082 over 4 runs" in text
    )
    assert "The search's best trial 2 did not hold up" in text


def test_the_best_trial_holds_up(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path, ["minimize"])
    for lr, value in ((0.001, 3.0), (0.003, 1.0)):
        study.enqueue_trial({"lr": lr})
        add(study, lr, value)
    record = conf.record_settings(study, conf.ConfirmSettings(2, 1), "sft.seed", 5)
    conf.enqueue(study, conf.plan(study.trials, study.directions, record))
    run_pending(study, {(0.003, 6): 1.2, (0.001, 6): 2.5})
    answer = conf.study_answer(study)
    assert answer.held_up and answer.best[0].params == {"lr": 0.003}
    assert "held up" in conf.summary_lines(answer, ["validation/val_loss"])[-1]


def test_no_answer_without_confirmation(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path)
    add(study, 0.01, 0.5)
    assert conf.study_answer(study) is None


def test_a_multi_objective_sweep_confirms_the_front(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path, ["maximize", "minimize"])
    points = {0.001: [0.5, 1.0], 0.003: [0.7, 2.0], 0.01: [0.9, 3.0], 0.03: [0.6, 3.5]}
    for lr, values in points.items():
        study.enqueue_trial({"lr": lr})
        add(study, lr, values)
    record = conf.record_settings(study, conf.ConfirmSettings(3, 2), "grpo.seed", 0)
    runs = conf.plan(study.trials, study.directions, record)
    assert sorted({r.params["lr"] for r in runs}) == [0.001, 0.003, 0.01]  # 0.03 is dominated
    conf.enqueue(study, runs)
    values = {(0.001, s): [0.5, 1.0] for s in (1, 2)}
    values |= {(0.01, s): [0.9, 3.0] for s in (1, 2)}
    values |= {(0.003, s): [0.4, 2.5] for s in (1, 2)}  # the middle member was lucky
    run_pending(study, values)
    answer = conf.study_answer(study)
    assert {c.params["lr"] for c in answer.best} == {0.001, 0.01}
    assert answer.dropped == (1,) and not answer.held_up
    out = answer.as_dict(["validation/accuracy", "train/tokens_generated"])
    assert set(out["configurations"][0]["mean"]) == {
        "validation/accuracy",
        "train/tokens_generated",
    }
    text = conf.summary_lines(answer, ["validation/accuracy", "train/tokens_generated"])
    assert text[-1].endswith("trial 1")


def test_the_front_is_capped_at_top_k(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path, ["maximize", "minimize"])
    for i, lr in enumerate((0.001, 0.002, 0.004, 0.008, 0.016)):
        study.enqueue_trial({"lr": lr})
        add(study, lr, [float(i), float(i)])
    chosen = conf.candidates(study.trials, study.directions, 3)
    assert [t.params["lr"] for t in chosen] == [0.001, 0.004, 0.016]  # both ends and the middle
