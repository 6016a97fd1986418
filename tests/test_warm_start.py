"""Warm start: enqueued known configurations, and seeding a sweep with an earlier study's trials."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.job import JobOutcome
from nemo_rl_sweep.loop import Sweep
from nemo_rl_sweep.settings import SweepSettings
from nemo_rl_sweep.space import parse_params
from nemo_rl_sweep.warm_start import check_enqueue, check_source, expand_recipe_entries
from tests.helpers import run_app

REPO = Path(__file__).resolve().parents[1]
CURVE_APP = REPO / "tests" / "apps" / "optuna_dropin" / "curve.py"
SPACE = {
    "lr": "tag(log, interval(1e-4, 1e-1))",
    "gens": "choice(4, 8, 16)",
    "steps": "range(10, 50, 10)",
    "temp": "interval(0.5, 1.5)",
}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def score(p: dict) -> float:
    lr = float(p.get("lr", 0.01))
    return -abs(lr - 0.01) - 0.01 * int(p["gens"]) + 0.001 * int(p["steps"])


def sweep(tmp_path: Path, space: dict, ran: list | None = None, **settings) -> Sweep:
    def launch(jobs):
        out = []
        for job in jobs:
            p = dict(o.split("=", 1) for o in job.overrides)
            if ran is not None:
                ran.append(p)
            out.append(JobOutcome(value={"score": score(p)}))
        return out

    values = {"metric": "score", "seed": 0, **settings}
    return Sweep(
        parse_params(space),
        SweepSettings(**values),
        launch,
        tmp_path / "sweep",
        task_name="ws",
        ledger_dir=tmp_path,
    )


# --------------------------------------------------------------------------------------- enqueue


def test_enqueued_trials_run_first_with_their_values(tmp_path):
    ran: list = []
    s = sweep(
        tmp_path,
        SPACE,
        ran,
        n_trials=4,
        enqueue=[
            {"lr": 3e-3, "gens": 8, "steps": 20, "temp": 1.0},  # the recipe's defaults
            {"lr": "1e-2", "gens": 16.0},  # YAML 1.1 string, 16.0 for choice 16; rest sampled
        ],
    )
    study = s.run().study
    first, second = study.trials[0], study.trials[1]
    assert first.params == {"lr": 3e-3, "gens": 8, "steps": 20, "temp": 1.0}
    assert second.params["lr"] == 1e-2 and second.params["gens"] == 16
    assert type(second.params["gens"]) is int
    assert ran[0] == {"lr": "0.003", "gens": "8", "steps": "20", "temp": "1.0"}
    assert len(study.trials) == 4 and all(t.state == TrialState.COMPLETE for t in study.trials)


def test_enqueue_values_are_normalised_to_the_space():
    space = parse_params(SPACE)
    out = check_enqueue([{"+steps": 30.0, "gens": 4, "lr": 0.1}], space, n_trials=5)
    assert out == [{"steps": 30, "gens": 4, "lr": 0.1}]
    assert type(out[0]["steps"]) is int


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        (
            {"lr": 0.01, "momentum": 0.9},
            "hydra.sweeper.enqueue[1].momentum",
            "not a key of the search space",
        ),
        (
            {"lr": 0.5},
            "hydra.sweeper.enqueue[1].lr",
            "value 0.5 is outside the range of tag(log, interval(0.0001, 0.1))",
        ),
        (
            {"gens": 6},
            "hydra.sweeper.enqueue[1].gens",
            "value 6 is not one of the choices of choice(4, 8, 16)",
        ),
        ({"steps": 50}, "hydra.sweeper.enqueue[1].steps", "outside the range"),  # stop excluded
        ({"steps": 25}, "hydra.sweeper.enqueue[1].steps", "not on the range's step 10"),
        ({"steps": 20.5}, "hydra.sweeper.enqueue[1].steps", "is not a whole number"),
        ({"temp": "hot"}, "hydra.sweeper.enqueue[1].temp", "is not a number"),
        ({"temp": True}, "hydra.sweeper.enqueue[1].temp", "is not a number"),
        ({"seed": 3}, "hydra.sweeper.enqueue[1].seed", "is fixed to 7 in this sweep"),
        ([0.01], "hydra.sweeper.enqueue[1]", "must be a {key: value} dict"),
    ],
)
def test_bad_enqueue_entries_name_the_key_and_the_fix(entry, key, words):
    space = parse_params({**SPACE, "seed": "7"})
    with pytest.raises(SweepConfigError) as err:
        check_enqueue([{"lr": 0.01}, entry], space, n_trials=10)
    assert err.value.key == key
    assert words in str(err.value)
    assert "\n" not in str(err.value) and "Fix: " in str(err.value)


def test_more_enqueued_trials_than_the_budget_is_refused():
    with pytest.raises(SweepConfigError, match=r"queues 3 trials but hydra.sweeper.n_trials is 2"):
        check_enqueue([{"lr": 0.01}] * 3, parse_params(SPACE), n_trials=2)


def test_bad_enqueue_stops_a_hydra_sweep_before_any_job(tmp_path):
    proc = run_app(
        CURVE_APP,
        [
            "--multirun",
            "hydra.sweeper.enqueue=[{x: 0.5}, {x: 1.5}]",
        ],
        tmp_path,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [
        "Error: hydra.sweeper.enqueue[1].x: value 1.5 is outside the range of interval(0.0, 1.0). "
        "Fix: enqueue a value inside the search space, or widen the space"
    ]
    assert not list(tmp_path.glob("multirun/*/*/0"))
    assert not (tmp_path / "multirun" / ledger.DEFAULT_LEDGER_FILE).exists()


def test_recipe_entry_enqueues_the_configs_own_values():
    space = parse_params({**SPACE, "+extra": "choice(1, 2)"})
    config = {"lr": 0.003, "gens": 8, "steps": 20, "temp": 1.0}

    def lookup(key):
        return config[key]  # KeyError for +extra: the config has no such key

    entries = expand_recipe_entries(["recipe", {"lr": 0.01}], space, lookup)
    assert entries == [config, {"lr": 0.01}]
    assert check_enqueue(entries, space, n_trials=2)[0] == config


def test_enqueue_recipe_in_a_hydra_sweep_runs_the_config_defaults_first(tmp_path):
    proc = run_app(
        CURVE_APP,
        [
            "--multirun",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.enqueue=[recipe]",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    storage = "sqlite:///" + str(tmp_path / "multirun" / ledger.DEFAULT_LEDGER_FILE)
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert trials[0].params == {"x": 0.5}  # x: 0.5 in tests/apps/optuna_dropin/conf/curve.yaml
    assert trials[0].user_attrs["overrides"] == ["x=0.5"]
    assert trials[1].params["x"] != 0.5 and len(trials) == 2


# ------------------------------------------------------------------------------ earlier studies


def earlier_study(tmp_path: Path, n: int = 8) -> optuna.Study:
    return sweep(tmp_path, SPACE, n_trials=n, study_name="last_month").run().study


def test_seeding_copies_the_finished_trials_that_fit_the_new_space(tmp_path):
    old = earlier_study(tmp_path)
    narrow = {**SPACE, "lr": "tag(log, interval(1e-3, 1e-1))", "gens": "choice(4, 8)"}
    fits = [t for t in old.trials if 1e-3 <= t.params["lr"] <= 1e-1 and t.params["gens"] in (4, 8)]
    assert 0 < len(fits) < len(old.trials)  # the test means something only if some are left out

    ran: list = []
    s = sweep(
        tmp_path,
        narrow,
        ran,
        n_trials=3,
        study_name="this_month",
        warm_start_from={"study_name": "last_month"},  # storage null: the same ledger
    )
    study = s.run().study
    copied = [t for t in study.trials if t.user_attrs.get(ledger.ATTR_COPIED_FROM)]
    assert [t.user_attrs[ledger.ATTR_COPIED_FROM] for t in copied] == [
        f"last_month#{t.number}" for t in fits
    ]
    for new, src in zip(copied, fits):
        assert new.state == TrialState.COMPLETE
        assert new.params == src.params and new.values == src.values
        assert new.user_attrs[ledger.ATTR_METRICS] == src.user_attrs[ledger.ATTR_METRICS]
        assert new.distributions["gens"] == optuna.distributions.CategoricalDistribution([4, 8])
    # copies do not count toward n_trials: three new trials ran
    assert len(ran) == 3
    assert len(study.trials) == len(fits) + 3

    # a resumed (or repeated) sweep does not copy them again
    more = (
        sweep(
            tmp_path,
            narrow,
            n_trials=5,
            study_name="this_month",
            warm_start_from={"study_name": "last_month"},
        )
        .run()
        .study
    )
    assert len([t for t in more.trials if t.user_attrs.get(ledger.ATTR_COPIED_FROM)]) == len(fits)
    assert len(more.trials) == len(fits) + 5


def test_seeding_from_another_storage_and_the_model_uses_the_copies(tmp_path):
    old = earlier_study(tmp_path / "old", n=10)
    tpe = {"_target_": "optuna.samplers.TPESampler", "n_startup_trials": 10}
    source = {
        "study_name": "last_month",
        "storage": "sqlite:///" + str(tmp_path / "old" / ledger.DEFAULT_LEDGER_FILE),
    }
    warm = (
        sweep(
            tmp_path / "new",
            SPACE,
            n_trials=2,
            study_name="next",
            sampler=tpe,
            warm_start_from=source,
        )
        .run()
        .study
    )
    cold = sweep(tmp_path / "cold", SPACE, n_trials=2, study_name="next", sampler=tpe).run().study
    assert len(warm.trials) == 12
    assert warm.best_value >= old.best_value  # the earlier best is known from the start
    # same sampler, same seed: only the copies can change what TPE proposes first
    assert warm.trials[10].params != cold.trials[0].params


def test_grid_skips_points_an_earlier_study_already_ran(tmp_path):
    grid = {"gens": "choice(4, 8, 16)", "steps": "range(10, 30, 10)"}
    first = sweep(tmp_path, grid, strategy="grid", n_trials=3, study_name="part1").run().study
    ran: list = []
    second = (
        sweep(
            tmp_path,
            grid,
            ran,
            strategy="grid",
            n_trials=None,
            study_name="part2",
            warm_start_from={"study_name": "part1"},
        )
        .run()
        .study
    )
    done_before = {(t.params["gens"], t.params["steps"]) for t in first.trials}
    now = {(int(p["gens"]), int(p["steps"])) for p in ran}
    assert len(done_before) == 3 and len(now) == 3
    assert done_before.isdisjoint(now)
    assert len(second.trials) == 6


@pytest.mark.parametrize(
    ("node", "key", "words"),
    [
        ({"study_name": "nope"}, "hydra.sweeper.warm_start_from.study_name", "no study 'nope'"),
        ({"study_name": "ws_own"}, "hydra.sweeper.warm_start_from.study_name", "own study"),
    ],
)
def test_bad_sources_are_refused_before_any_job(tmp_path, node, key, words):
    earlier_study(tmp_path, n=2)
    ran: list = []
    s = sweep(tmp_path, SPACE, ran, n_trials=2, study_name="ws_own", warm_start_from=node)
    with pytest.raises(SweepConfigError) as err:
        s.run()
    assert err.value.key == key and words in str(err.value)
    if "no study" in words:
        assert "use one of: last_month" in str(err.value)
    assert ran == []


def test_source_with_other_objectives_is_refused(tmp_path):
    earlier_study(tmp_path, n=2)
    s = sweep(
        tmp_path,
        SPACE,
        n_trials=2,
        study_name="min",
        direction="minimize",
        warm_start_from={"study_name": "last_month"},
    )
    with pytest.raises(SweepConfigError, match="optimised \\['score'\\] \\['maximize'\\]"):
        s.run()


@pytest.mark.parametrize(
    ("node", "key"),
    [
        ("last_month", "hydra.sweeper.warm_start_from"),
        ({"study": "x"}, "hydra.sweeper.warm_start_from.study"),
        ({"study_name": ""}, "hydra.sweeper.warm_start_from.study_name"),
        ({"study_name": "a", "storage": 3}, "hydra.sweeper.warm_start_from.storage"),
    ],
)
def test_malformed_warm_start_settings(node, key):
    with pytest.raises(SweepConfigError) as err:
        check_source(node)
    assert err.value.key == key
