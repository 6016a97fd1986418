"""The files a sweep leaves (optimization_results.yaml, trials.csv, pareto.csv, pareto_front.png) and
the shared formatting helpers, on real Optuna studies (in memory and in SQLite)."""

from __future__ import annotations

import csv
import datetime
from pathlib import Path

import matplotlib.image
import numpy as np
import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from nemo_rl_sweep import ledger
from nemo_rl_sweep.outputs import format as fmt
from nemo_rl_sweep.outputs.results import (
    PARETO_CSV,
    RESULTS_FILE,
    TRIALS_FILE,
    front_hypervolume,
    pareto_solutions,
    write_pareto_results,
    write_results,
)
from nemo_rl_sweep.outputs.summary import format_front_table

optuna.logging.set_verbosity(optuna.logging.WARNING)

LR = FloatDistribution(1e-6, 1e-3, log=True)
BATCH = IntDistribution(8, 64)


def _read_csv(path: Path) -> list[list[str]]:
    with path.open() as f:
        return list(csv.reader(f))


def _study(storage: str, directions: list[str], names: list[str]) -> optuna.Study:
    study = optuna.create_study(study_name="s", storage=storage, directions=directions)
    study.set_metric_names(names)
    return study


def _tell(study, params, state, values=None, metrics=None, **attrs):
    """One trial through ask/tell, with the user attributes the sweeper records."""
    trial = study.ask({k: LR if k == "lr" else BATCH for k in params})
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if metrics is not None:
        trial.set_user_attr(ledger.ATTR_METRICS, metrics)
    return study.tell(trial, values, state=state)


# ------------------------------------------------------------------------- one objective


def test_single_objective_files_from_a_sqlite_study(tmp_path: Path) -> None:
    study = _study(f"sqlite:///{tmp_path / 'ledger.db'}", ["maximize"], ["score"])
    study.set_user_attr(ledger.STUDY_ATTR_STRATEGY, "random")
    _tell(
        study,
        ["lr", "batch"],
        TrialState.COMPLETE,
        0.5,
        metrics={"score": 0.5, "loss": 1.25},
        overrides=["lr=0.0001", "batch=16"],
        job_dir="/sweep/0",
        duration_s=12.34567,
    )
    best = _tell(
        study,
        ["lr", "batch"],
        TrialState.COMPLETE,
        0.75,
        metrics={"score": 0.75, "loss": 0.5, "tokens": 100},
        overrides=["lr=0.0002", "batch=32"],
        job_dir="/sweep/1",
        duration_s=3.0,
    )
    _tell(study, ["lr"], TrialState.FAIL, fail_reason="CUDA out of memory", job_dir="/sweep/2")
    _tell(study, ["lr", "batch"], TrialState.PRUNED)

    summary = write_results(study, tmp_path / "sweep", "sqlite:///ledger.db")
    assert yaml.safe_load((tmp_path / "sweep" / RESULTS_FILE).read_text()) == summary
    # the best trial's random draws may sit at a range's end, which the file then says
    edges = summary.pop("range_edges", [])
    assert {e["key"] for e in edges} <= {"lr", "batch"}
    assert all(e["value"] == best.params[e["key"]] for e in edges)
    assert summary == {
        "name": "nemo_rl",
        "study_name": "s",
        "storage": "sqlite:///ledger.db",
        "strategy": "random",
        "metric": "score",
        "direction": "maximize",
        "trials": {"complete": 2, "pruned": 1, "fail": 1},
        "best_params": best.params,
        "best_value": 0.75,
        "best_trial": 1,
        "best_metrics": {"score": 0.75, "loss": 0.5, "tokens": 100},
        "best_overrides": ["lr=0.0002", "batch=32"],
        "best_job_dir": "/sweep/1",
    }
    assert list(summary) == [  # the order a person reads the file in
        "name",
        "study_name",
        "storage",
        "strategy",
        "metric",
        "direction",
        "trials",
        "best_params",
        "best_value",
        "best_trial",
        "best_metrics",
        "best_overrides",
        "best_job_dir",
    ]
    assert not (tmp_path / "sweep" / PARETO_CSV).exists()

    rows = _read_csv(tmp_path / "sweep" / TRIALS_FILE)
    assert rows[0] == [
        "number",
        "state",
        "score",
        "param:lr",
        "param:batch",
        "metric:loss",
        "metric:tokens",
        "duration_s",
        "job_dir",
        "fail_reason",
    ]
    assert rows[1][:3] == ["0", "COMPLETE", "0.5"]
    assert rows[1][5:] == ["1.25", "", "12.346", "/sweep/0", ""]
    assert rows[2][5:] == ["0.5", "100", "3.0", "/sweep/1", ""]
    assert rows[3][:3] == ["2", "FAIL", ""] and rows[3][4] == ""  # no batch drawn
    assert rows[3][-2:] == ["/sweep/2", "CUDA out of memory"]
    assert rows[4][:3] == ["3", "PRUNED", ""]
    assert float(rows[4][7]) >= 0  # no measured duration: the ledger's start-to-end time
    # a second write (the next batch) replaces both files and leaves no temporary file behind
    write_results(study, tmp_path / "sweep", "sqlite:///ledger.db")
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == [RESULTS_FILE, TRIALS_FILE]


def test_no_completed_trial_has_no_best(tmp_path: Path) -> None:
    study = _study("sqlite:///" + str(tmp_path / "l.db"), ["minimize"], ["loss"])
    _tell(study, ["lr"], TrialState.FAIL, fail_reason="boom")
    summary = write_results(study, tmp_path, "sqlite:///l.db")
    assert summary["trials"] == {"fail": 1}
    assert summary["strategy"] is None
    assert summary["best_params"] is None and summary["best_value"] is None
    assert "best_trial" not in summary
    header, row = _read_csv(tmp_path / TRIALS_FILE)
    assert header == ["number", "state", "loss", "param:lr", "duration_s", "job_dir", "fail_reason"]
    assert row[:3] == ["0", "FAIL", ""] and row[-2:] == ["", "boom"]


# ------------------------------------------------------------------------ several objectives


def test_multi_objective_files_hold_the_front(tmp_path: Path) -> None:
    study = _study("sqlite:///" + str(tmp_path / "l.db"), ["maximize", "minimize"], ["acc", "cost"])
    study.set_user_attr(ledger.STUDY_ATTR_STRATEGY, "pareto")
    points = [(0.5, 1.0), (0.7, 2.0), (0.6, 3.0), (0.9, 5.0)]  # trial 2 is dominated by 1
    told = [
        _tell(study, ["lr"], TrialState.COMPLETE, list(p), overrides=[f"x={i}"])
        for i, p in enumerate(points)
    ]
    _tell(study, ["lr"], TrialState.FAIL, fail_reason="nan loss")
    _tell(study, ["lr"], TrialState.PRUNED)

    sweep = tmp_path / "sweep"
    summary = write_results(study, sweep, "sqlite:///l.db")
    assert yaml.safe_load((sweep / RESULTS_FILE).read_text()) == summary
    assert summary["metric"] == ["acc", "cost"]
    assert summary["direction"] == ["maximize", "minimize"]
    assert summary["trials"] == {"complete": 4, "pruned": 1, "fail": 1}
    assert "best_params" not in summary
    assert summary["solutions"] == [
        {
            "number": n,
            "params": told[n].params,
            "values": {"acc": points[n][0], "cost": points[n][1]},
            "overrides": [f"x={n}"],
        }
        for n in (3, 1, 0)  # best accuracy first
    ]
    assert _read_csv(sweep / PARETO_CSV) == [["number", "acc", "cost", "lr"]] + [
        [str(n), str(points[n][0]), str(points[n][1]), str(told[n].params["lr"])] for n in (3, 1, 0)
    ]
    assert _read_csv(sweep / TRIALS_FILE)[0][:4] == ["number", "state", "acc", "cost"]
    img = matplotlib.image.imread(sweep / "pareto_front.png")
    assert img[..., :3].std() > 0.01


def test_multi_objective_without_a_completed_trial(tmp_path: Path) -> None:
    study = _study("sqlite:///" + str(tmp_path / "l.db"), ["minimize", "minimize"], ["a", "b"])
    _tell(study, ["lr"], TrialState.FAIL)
    summary = write_results(study, tmp_path, "sqlite:///l.db")
    assert summary["solutions"] == []
    assert _read_csv(tmp_path / PARETO_CSV) == [["number", "a", "b"]]
    assert (tmp_path / "pareto_front.png").stat().st_size > 1000


def test_result_writers(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["validation/accuracy", "timing/train/total_step_time"])
    dist = {"policy.optimizer.kwargs.lr": FloatDistribution(1e-6, 1e-3)}
    rows = [(1e-5, 0.50, 1.0), (3e-5, 0.70, 2.0), (1e-4, 0.60, 3.0), (3e-4, 0.90, 5.0)]
    for lr, acc, st in rows:
        study.add_trial(
            create_trial(
                params={"policy.optimizer.kwargs.lr": lr},
                distributions=dist,
                values=[acc, st],
                user_attrs={"overrides": [f"policy.optimizer.kwargs.lr={lr}"]},
            )
        )
    study.add_trial(create_trial(state=TrialState.FAIL))

    sols = write_pareto_results(study, tmp_path / "sweep")
    assert [s["number"] for s in sols] == [3, 1, 0]  # best accuracy first; trial 2 is dominated
    assert sols[0]["params"] == {"policy.optimizer.kwargs.lr": 3e-4}
    assert sols[0]["values"] == {"validation/accuracy": 0.9, "timing/train/total_step_time": 5.0}
    assert sols[0]["overrides"] == ["policy.optimizer.kwargs.lr=0.0003"]
    assert pareto_solutions(study) == sols
    # default reference: (0.5 - 0.04, 5 + 0.4); the staircase, column by column from the right
    hv, ref = front_hypervolume(study)
    np.testing.assert_allclose(ref, [0.46, 5.4])
    assert hv == pytest.approx(0.2 * 0.4 + 0.2 * 3.4 + 0.04 * 4.4)
    assert front_hypervolume(study, [0.0, 10.0])[0] == pytest.approx(0.2 * 5 + 0.2 * 8 + 0.5 * 9)

    table_rows = _read_csv(tmp_path / "sweep" / "pareto.csv")
    assert table_rows[0] == [
        "number",
        "validation/accuracy",
        "timing/train/total_step_time",
        "policy.optimizer.kwargs.lr",
    ]
    assert [r[0] for r in table_rows[1:]] == ["3", "1", "0"]
    assert float(table_rows[2][1]) == 0.7 and float(table_rows[2][2]) == 2.0
    assert float(table_rows[2][3]) == 3e-5

    img = matplotlib.image.imread(tmp_path / "sweep" / "pareto_front.png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01  # something is drawn, not a blank canvas

    text = format_front_table(study)
    assert "Pareto front: 3 of 4 completed trials" in text
    assert "validation/accuracy (max)" in text and "0.0003" in text
    lines = text.splitlines()
    assert lines[1].startswith("trial  validation/accuracy (max)  ")
    assert set(lines[2].replace("  ", "")) == {"-"}
    assert lines[3].startswith("3      0.9 ")


def test_result_writers_on_three_objectives_and_empty_study(tmp_path):
    study = optuna.create_study(directions=["minimize"] * 3)
    rng = np.random.default_rng(0)
    for _ in range(10):
        study.add_trial(create_trial(params={}, distributions={}, values=rng.random(3).tolist()))
    sols = write_pareto_results(study, tmp_path / "a")
    assert len(sols) >= 1
    assert set(sols[0]["values"]) == {"objective_0", "objective_1", "objective_2"}
    assert (tmp_path / "a" / "pareto_front.png").stat().st_size > 1000

    empty = optuna.create_study(directions=["minimize"] * 2)
    assert write_pareto_results(empty, tmp_path / "b") == []
    assert front_hypervolume(empty) is None
    assert (tmp_path / "b" / "pareto.csv").read_text().strip() == "number,objective_0,objective_1"
    assert format_front_table(empty) == "Pareto front: no completed trials."


# -------------------------------------------------------------------------------- formatting


def test_names_and_parameter_order() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert fmt.metric_names(study) == ["objective_0", "objective_1"]
    study.set_metric_names(["acc", "cost"])
    assert fmt.metric_names(study) == ["acc", "cost"]
    assert fmt.direction_names(study) == ["maximize", "minimize"]
    assert fmt.objectives_text(study) == "acc (maximize), cost (minimize)"
    kinds = CategoricalDistribution(["a", "b"])
    trials = [
        create_trial(
            params={"b": 8}, distributions={"b": BATCH}, value=None, state=TrialState.FAIL
        ),
        create_trial(params={"k": "a", "b": 16}, distributions={"k": kinds, "b": BATCH}, value=1.0),
        create_trial(params={"lr": 1e-4}, distributions={"lr": LR}, value=2.0),
    ]
    assert fmt.param_names(trials) == ["b", "k", "lr"]
    assert fmt.short_names(["a.lr", "b.lr", "x.y.z"]) == {
        "a.lr": "a.lr",
        "b.lr": "b.lr",
        "x.y.z": "z",
    }


def test_numbers_durations_and_text() -> None:
    assert fmt.format_number(0.123456789) == "0.1235"
    assert fmt.format_number(0.123456789, 6) == "0.123457"
    assert fmt.format_number(np.float32(0.5)) == "0.5"
    assert [fmt.format_number(v) for v in (3, True, "x", float("inf"), np.int64(7))] == [
        "3",
        "True",
        "x",
        "inf",
        "7",
    ]
    assert fmt.format_params({"policy.lr": 1e-4, "batch": 32}) == "lr=0.0001, batch=32"
    assert [fmt.format_duration(s) for s in (None, 0.04, 42, 185, 7500, 97200)] == [
        "?",
        "0.0s",
        "42s",
        "3m05s",
        "2h05m",
        "1d03h",
    ]
    assert fmt.clean_text("x" * 20, 10) == "xxxxxxx..."
    start = datetime.datetime(2024, 1, 1, 12, 0, 0)
    timed = create_trial(value=1.0)
    timed.datetime_start, timed.datetime_complete = start, start + datetime.timedelta(seconds=90)
    assert fmt.trial_duration(timed) == 90.0
    timed.set_user_attr(ledger.ATTR_DURATION, 12.5)
    assert fmt.trial_duration(timed) == 12.5  # the job's own measure wins
    assert fmt.trial_duration(create_trial(state=TrialState.RUNNING)) is None


def test_table_aligns_numbers_and_can_underline_its_headers() -> None:
    rows = [["1", "x", "0.5"], ["10", "long", "-"]]
    assert fmt.table(["n", "name", "v"], rows) == [
        "   n  name    v",
        "   1  x     0.5",
        "  10  long    -",
    ]
    assert fmt.table(
        ["n", "name", "v"], rows, indent="", align_numbers=False, rule=True, trim=False
    ) == [
        "n   name  v  ",
        "--  ----  ---",
        "1   x     0.5",
        "10  long  -  ",
    ]
    assert fmt.table(None, []) == []
