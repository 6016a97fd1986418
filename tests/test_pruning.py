"""Pruning: every strategy, the basic and joblib launchers, the embedded trainer, and bad pruners.

A job reports each validation to its own ledger trial and stops itself when the sweep's pruner says so
(``nemo_rl_sweep.job.TrialLink.reporter``); the trial is then PRUNED with its last value. The Hydra
tests run ``tests/apps/optuna_dropin/curve.py`` as a real multirun; the strategy tests drive the
Hydra-free ``Sweep`` with a launch function that runs the same kind of job in-process.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.job import JobOutcome, TrialLink, run_training
from nemo_rl_sweep.loop import Sweep
from nemo_rl_sweep.pruning import STUDY_ATTR_PRUNER, check_pruner
from nemo_rl_sweep.settings import SweepSettings
from nemo_rl_sweep.space import parse_params
from tests.helpers import run_app

REPO = Path(__file__).resolve().parents[1]
CURVE_APP = REPO / "tests" / "apps" / "optuna_dropin" / "curve.py"
RECIPE = REPO / "conf" / "recipe" / "grpo_tiny.yaml"
MEDIAN = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 3, "n_warmup_steps": 0}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def quality(x: float) -> float:
    return 1.0 - (x - 0.3) ** 2


def curve_launch(holder: dict, steps: int = 6, ran: dict | None = None):
    """A launch function whose jobs train a 'curve' of ``steps`` validations, reporting each."""

    def launch(jobs):
        sweep = holder["sweep"]
        outcomes = []
        for job in jobs:
            x = float(dict(o.split("=", 1) for o in job.overrides)["x"])
            report = TrialLink(sweep.storage_url, sweep.study_name, job.number, "score").reporter()
            score, step = 0.0, 0
            try:
                for step in range(1, steps + 1):
                    score = quality(x) * step / steps
                    report(step, {"score": score})
                outcomes.append(JobOutcome(value={"score": score}))
            except optuna.TrialPruned as exc:
                outcomes.append(JobOutcome(failure=exc))
            if ran is not None:
                ran[job.number] = step
        return outcomes

    return launch


def run_curve_sweep(tmp_path: Path, params: dict, steps: int = 6, **settings) -> tuple:
    holder: dict = {}
    ran: dict[int, int] = {}
    values = {"metric": "score", "direction": "maximize", "seed": 0, **settings}
    sweep = Sweep(
        parse_params(params),
        SweepSettings(**values),
        curve_launch(holder, steps, ran),
        tmp_path / "sweep",
        task_name="curve",
        ledger_dir=tmp_path,
    )
    holder["sweep"] = sweep
    return sweep.run(), ran


def check_pruned_trials(study: optuna.Study, ran: dict[int, int] | None, steps: int) -> list:
    """Pruned trials stopped early and keep their last reported value; complete ones ran to the end."""
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    for t in pruned:
        assert t.last_step is not None and t.last_step < steps
        assert t.value == t.intermediate_values[t.last_step]
        assert sorted(t.intermediate_values) == list(range(1, t.last_step + 1))
        if ran is not None:
            assert ran[t.number] == t.last_step  # the job really stopped there
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert sorted(t.intermediate_values) == list(range(1, steps + 1))
        assert t.value == pytest.approx(t.intermediate_values[steps])
    return pruned


# ------------------------------------------------------------------------------- every strategy


def _bayes_available() -> bool:
    try:
        import nemo_rl_sweep.samplers.bayes  # noqa: F401
    except ImportError:
        return False
    return True


STRATEGIES = [
    ("random", {"x": "interval(0.0, 1.0)"}, 12),
    ("optuna", {"x": "interval(0.0, 1.0)"}, 12),
    ("grid", {"x": "choice(0.9, 0.7, 0.5, 0.3, 0.1, 1.0, 0.0)"}, None),
]
if _bayes_available():
    STRATEGIES.append(("bayes", {"x": "interval(0.0, 1.0)"}, 12))


@pytest.mark.parametrize(("strategy", "params", "n_trials"), STRATEGIES, ids=lambda v: str(v))
def test_pruning_works_with_every_strategy(tmp_path, strategy, params, n_trials):
    result, ran = run_curve_sweep(
        tmp_path, params, strategy=strategy, n_trials=n_trials, pruner=MEDIAN
    )
    study = result.study
    pruned = check_pruned_trials(study, ran, steps=6)
    assert pruned, f"{strategy}: the median pruner stopped nothing"
    assert study.user_attrs[STUDY_ATTR_PRUNER] == MEDIAN
    best = study.best_trial
    assert best.state == TrialState.COMPLETE
    for t in pruned:  # median pruning stops only runs below the median: never the best one
        assert quality(t.params["x"]) < quality(best.params["x"])
    if strategy == "grid":  # each point once, pruned points are not proposed again
        xs = [t.params["x"] for t in study.trials]
        assert sorted(xs) == sorted([0.9, 0.7, 0.5, 0.3, 0.1, 1.0, 0.0])
        assert {t.params["x"] for t in pruned} == {1.0, 0.0}
    else:
        assert len(study.trials) == n_trials


def test_without_pruner_jobs_are_never_pruned(tmp_path):
    """Optuna's load_study defaults to a MedianPruner; a sweep without a pruner must not prune."""
    result, ran = run_curve_sweep(
        tmp_path,
        {"x": "interval(0.0, 1.0)"},
        n_trials=6,
        enqueue=[{"x": 0.3}, {"x": 0.35}, {"x": 0.4}, {"x": 1.0}, {"x": 0.0}, {"x": 0.95}],
    )
    states = [t.state for t in result.study.trials]
    assert states == [TrialState.COMPLETE] * 6
    assert all(ran[n] == 6 for n in ran)
    # the intermediate values are still in the ledger, for plots
    assert all(len(t.intermediate_values) == 6 for t in result.study.trials)


# ------------------------------------------------------------------------ Hydra launchers


def run_curve_app(cwd: Path, args: list[str]) -> subprocess.CompletedProcess:
    return run_app(CURVE_APP, ["--multirun", *args], cwd)


def ledger_study(cwd: Path) -> optuna.Study:
    storage = "sqlite:///" + str(cwd / "multirun" / ledger.DEFAULT_LEDGER_FILE)
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def steps_run(trial: optuna.trial.FrozenTrial) -> int:
    return len((Path(trial.user_attrs["job_dir"]) / "steps.txt").read_text().split())


ENQUEUE = "hydra.sweeper.enqueue=[{x: 0.5}, {x: 0.3}, {x: 0.95}, {x: 1.0}]"


@pytest.mark.parametrize(
    ("launcher", "pruner"),
    [
        (
            "basic",
            "{_target_: optuna.pruners.SuccessiveHalvingPruner, min_resource: 1, reduction_factor: 2}",
        ),
        # two slots, asynchronous: x=0.95 starts as soon as the first trial ended, so one
        # finished trial is all the median pruner may have seen by then
        ("joblib", "{_target_: optuna.pruners.MedianPruner, n_startup_trials: 1}"),
    ],
)
def test_hydra_jobs_prune_themselves(tmp_path, launcher, pruner):
    """The job talks to the ledger, so pruning needs nothing from the launcher."""
    args = [ENQUEUE, f"hydra.sweeper.pruner={pruner}"]
    if launcher == "joblib":
        args += ["hydra/launcher=joblib", "hydra.sweeper.n_jobs=2"]
    proc = run_curve_app(tmp_path, args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = ledger_study(tmp_path)
    by_x = {t.params["x"]: t for t in study.trials}
    assert by_x[0.3].state == TrialState.COMPLETE  # the best at every step: never pruned
    if launcher == "joblib":
        # x=0.5 runs beside x=0.3: if the machine lets x=0.3 finish before x=0.5's first
        # validation, x=0.5 is (rightly) pruned against it; either order is a correct sweep
        assert by_x[0.5].state in (TrialState.COMPLETE, TrialState.PRUNED)
    else:
        assert by_x[0.5].state == TrialState.COMPLETE
    # the first trial to end is complete (a pruned one needs a complete one before it), so both
    # later trials, worse at every step, are pruned in either launcher
    assert by_x[0.95].state == by_x[1.0].state == TrialState.PRUNED
    for t in study.trials:
        assert steps_run(t) == (t.last_step if t.state == TrialState.PRUNED else 6)
    check_pruned_trials(study, None, steps=6)
    assert "pruned at step" in proc.stdout


# ---------------------------------------------------------------------- the embedded trainer


def test_embedded_trainer_trials_are_pruned_at_a_validation(tmp_path):
    """The real job path (``job.run_training``) on the embedded GRPO trainer, without Hydra."""
    base = OmegaConf.load(RECIPE)
    base.grpo.max_num_steps = 40
    base.grpo.val_period = 10
    base.trainer = {"name": "embedded"}
    holder: dict = {}

    def launch(jobs):
        sweep = holder["sweep"]
        outcomes = []
        for job in jobs:
            cfg = copy.deepcopy(base)
            for override in job.overrides:
                key, value = override.split("=", 1)
                OmegaConf.update(cfg, key, float(value))
            link = TrialLink(sweep.storage_url, sweep.study_name, job.number, "validation/accuracy")
            try:
                outcomes.append(JobOutcome(value=run_training(cfg, link)))
            except optuna.TrialPruned as exc:
                outcomes.append(JobOutcome(failure=exc))
        return outcomes

    # two learning rates that learn in 40 steps (accuracy 0.03 at step 10), two too small to learn
    # anything (0.02 at every validation): the median pruner stops those at their first validation
    settings = SweepSettings(
        n_trials=4,
        seed=0,
        enqueue=[{"policy.optimizer.kwargs.lr": lr} for lr in (1e-2, 3e-3, 1e-4, 1.2e-4)],
        pruner={"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 2},
    )
    sweep = Sweep(
        parse_params({"policy.optimizer.kwargs.lr": "tag(log, interval(1e-4, 1e-1))"}),
        settings,
        launch,
        tmp_path / "sweep",
        ledger_dir=tmp_path,
    )
    holder["sweep"] = sweep
    study = sweep.run().study
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED] * 2
    for t in study.trials:
        assert set(t.intermediate_values) <= {10, 20, 30, 40}
    for t in study.trials[2:]:
        assert t.last_step == 10  # stopped at the first validation
        assert t.value == t.intermediate_values[10]
    assert study.best_value > max(t.value for t in study.trials[2:])


def test_train_py_prunes_with_the_median_preset(tmp_path):
    """The real app (train.py, embedded trainer) under the basic launcher, pruner from conf/pruner."""
    lrs = [0.01, 0.003, 0.0001, 0.00012]  # two that learn, two that cannot
    enqueue = ", ".join(f"{{policy.optimizer.kwargs.lr: {lr}}}" for lr in lrs)
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "--multirun",
            "hydra/sweeper=nemo_rl",
            "policy.optimizer.kwargs.lr=tag(log,interval(1e-4,1e-1))",
            "grpo.max_num_steps=30",
            "hydra.sweeper.n_trials=4",
            f"hydra.sweeper.enqueue=[{enqueue}]",
            "+pruner=median",
            "hydra.sweeper.pruner.n_startup_trials=2",
            "hydra.sweeper.pruner.n_warmup_steps=0",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = ledger_study(tmp_path)
    assert study.user_attrs[STUDY_ATTR_PRUNER]["_target_"] == "optuna.pruners.MedianPruner"
    trials = study.trials
    assert [t.params["policy.optimizer.kwargs.lr"] for t in trials] == lrs
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED] * 2
    for t in trials[:2]:
        assert sorted(t.intermediate_values) == [10, 20, 30]
        assert t.value == t.user_attrs["metrics"]["validation/accuracy"]
    for t in trials[2:]:
        assert t.intermediate_values.keys() == {10}
        assert t.value == t.intermediate_values[10]
        assert Path(t.user_attrs["job_dir"]).is_dir()


# ---------------------------------------------------------------------------------- bad input


def test_pruner_with_several_objectives_is_one_clear_error():
    with pytest.raises(SweepConfigError) as err:
        check_pruner(MEDIAN, ["validation/accuracy", "train/tokens_generated"])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("hydra.sweeper.pruner: Optuna prunes on one objective")
    assert "hydra.sweeper.pruner=null" in message
    # no pruning at all is fine with several objectives
    assert check_pruner({"_target_": "optuna.pruners.NopPruner"}, ["a", "b"]) is not None
    assert check_pruner(None, ["a", "b"]) is None


@pytest.mark.parametrize(
    ("node", "key", "words"),
    [
        (
            {"_target_": "optuna.pruners.MedainPruner"},
            "hydra.sweeper.pruner._target_",
            "cannot import",
        ),
        ({"_target_": "optuna.samplers.TPESampler"}, "hydra.sweeper.pruner._target_", "is not a"),
        (
            {"_target_": "optuna.pruners.MedianPruner", "warmup": 3},
            "hydra.sweeper.pruner.warmup",
            "is not an argument",
        ),
        (
            {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": -1},
            "hydra.sweeper.pruner",
            "refused its arguments",
        ),
        ("median", "hydra.sweeper.pruner", "node or null"),
    ],
)
def test_bad_pruners_are_refused(node, key, words):
    with pytest.raises(SweepConfigError) as err:
        check_pruner(node, ["score"])
    assert err.value.key == key
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_pruner_stops_a_hydra_sweep_before_any_job(tmp_path):
    proc = run_curve_app(
        tmp_path,
        [
            "hydra.sweeper.metric=[score,cost]",
            "hydra.sweeper.direction=[maximize,minimize]",
            "hydra.sweeper.pruner={_target_: optuna.pruners.MedianPruner}",
        ],
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [
        "Error: hydra.sweeper.pruner: Optuna prunes on one objective, this sweep has 2 "
        "(score, cost). Fix: set hydra.sweeper.pruner=null, or sweep a single metric"
    ]
    assert not list(tmp_path.glob("multirun/*/*/0"))
