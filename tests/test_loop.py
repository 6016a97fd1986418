"""The loop driven by a plain Python launch function: no Hydra, a real SQLite ledger in tmp_path."""

from __future__ import annotations

import _thread
import threading
from concurrent.futures import Future
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.claims import BudgetClaims, Claim
from nemo_rl_sweep.errors import SweepStopped
from nemo_rl_sweep.job import JobOutcome
from nemo_rl_sweep.loop import Sweep
from nemo_rl_sweep.objectives import FailureKind
from nemo_rl_sweep.outputs.progress import ConsoleProgress
from nemo_rl_sweep.samplers.grid import GridSampler
from nemo_rl_sweep.settings import SweepSettings
from nemo_rl_sweep.space import parse_params

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_sweep(tmp_path: Path, outcome, space: dict | None = None, **settings) -> Sweep:
    """A sweep whose launch function answers each job with ``outcome(job)``."""
    launched: list[int] = []

    def launch(jobs):
        launched.extend(job.number for job in jobs)
        return [outcome(job) for job in jobs]

    values = {"metric": "score", "seed": 0, "n_trials": 4, **settings}
    sweep = Sweep(
        parse_params(space or {"x": "interval(0.0, 1.0)"}),
        SweepSettings(**values),
        launch,
        tmp_path / "sweep",
        task_name="loop",
        ledger_dir=tmp_path,
    )
    sweep.launched = launched  # type: ignore[attr-defined]
    return sweep


def test_each_outcome_is_recorded_with_its_state_and_typed_reason(tmp_path):
    answers = {
        0: JobOutcome(value={"score": 0.5, "loss": 1.0}, job_dir="/jobs/0", duration_s=2.0),
        1: JobOutcome(failure=RuntimeError("out of memory")),
        2: JobOutcome(failure=optuna.TrialPruned("pruned at step 3")),
        3: JobOutcome(value={"loss": 1.0}),
        4: JobOutcome(value={"score": float("nan")}),
        5: JobOutcome(value="text"),
    }
    sweep = make_sweep(tmp_path, lambda job: answers[job.number], n_trials=6, max_failure_rate=1)
    result = sweep.run()
    trials = result.study.trials
    assert result.new_trials == list(range(6))
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.FAIL,
    ]
    done = trials[0]
    assert done.value == 0.5
    assert done.user_attrs[ledger.ATTR_METRICS] == {"score": 0.5, "loss": 1.0}
    assert done.user_attrs[ledger.ATTR_JOB_DIR] == "/jobs/0"
    assert done.user_attrs[ledger.ATTR_DURATION] == 2.0
    assert ledger.ATTR_FAIL_KIND not in done.user_attrs
    assert ledger.ATTR_FAIL_KIND not in trials[2].user_attrs
    kinds = {t.number: t.user_attrs.get(ledger.ATTR_FAIL_KIND) for t in trials}
    assert kinds == {
        0: None,
        1: FailureKind.ERROR,
        2: None,
        3: FailureKind.MISSING_METRIC,
        4: FailureKind.NOT_FINITE,
        5: FailureKind.NOT_METRICS,
    }
    assert trials[1].user_attrs[ledger.ATTR_FAIL_REASON].startswith("RuntimeError: out of memory")
    assert "did not report metric 'score'" in trials[3].user_attrs[ledger.ATTR_FAIL_REASON]


def test_too_many_failures_stop_the_sweep(tmp_path):
    sweep = make_sweep(tmp_path, lambda job: JobOutcome(failure="CUDA error"), n_trials=10)
    with pytest.raises(SweepStopped) as err:
        sweep.run()
    assert str(err.value).startswith("stopped: 1 of 1 trials failed (100%)")
    assert "last failure (trial 0): CUDA error" in str(err.value)
    assert sweep.launched == [0]


def test_a_run_where_no_trial_reports_the_objective_stops(tmp_path):
    sweep = make_sweep(
        tmp_path, lambda job: JobOutcome(value={"loss": 1.0}), n_trials=10, max_failure_rate=1
    )
    with pytest.raises(SweepStopped, match="no trial reported the objective"):
        sweep.run()
    assert sweep.launched == [0]


def test_the_budget_is_n_trials_in_batches_of_n_jobs(tmp_path):
    sweep = make_sweep(tmp_path, lambda job: JobOutcome(value=1.0), n_trials=5, n_jobs=2)
    batches: list[int] = []
    launch = sweep.launch
    sweep.launch = lambda jobs: (batches.append(len(jobs)), launch(jobs))[1]
    study = sweep.run().study
    assert batches == [2, 2, 1]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 5


def test_a_second_sweeper_shares_the_budget(tmp_path):
    """Sweeper B runs inside A's first batch; A then finds the budget spent."""
    score = lambda job: JobOutcome(value=1.0)  # noqa: E731
    other = make_sweep(tmp_path, score, n_trials=3)

    def first_launch(job):
        if not other.launched:
            other.run()
        return score(job)

    sweep = make_sweep(tmp_path, first_launch, n_trials=3)
    assert sweep.study_name == other.study_name
    study = sweep.run().study
    assert sweep.launched == [0] and other.launched == [1, 2]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3


def test_a_trial_past_n_trials_is_closed_as_surplus(tmp_path):
    sweep = make_sweep(tmp_path, lambda job: JobOutcome(value=1.0), n_trials=2)
    study = sweep.open()
    claims = BudgetClaims(2)
    first, second = study.ask(), study.ask()  # another sweeper's two trials, still running
    assert claims.room(study, 4) == 0
    late = study.ask()
    assert claims.accept(study, late) is Claim.STOP
    frozen = study.trials[late.number]
    assert frozen.state == TrialState.FAIL and frozen.user_attrs[ledger.ATTR_STALE]
    assert "n_trials were already used up" in frozen.user_attrs[ledger.ATTR_FAIL_REASON]
    assert claims.accept(study, first) is Claim.ACCEPT
    ledger.mark_stale(study, second, "its sweeper died")  # a stale trial frees its place
    assert claims.room(study, 4) == 1


def test_grid_points_run_once_and_a_doubly_enqueued_point_is_surplus(tmp_path):
    sweep = make_sweep(
        tmp_path,
        lambda job: JobOutcome(value=float(job.overrides[0].split("=")[1])),
        space={"x": "choice(1, 2, 3)"},
        strategy="grid",
        n_trials=None,
        n_jobs=2,
    )
    study = sweep.open()
    study.enqueue_trial({"x": 1})  # two sweepers enqueued the same point at once
    study.enqueue_trial({"x": 1})
    study = sweep.run().study
    real = [t for t in study.trials if not t.user_attrs.get(ledger.ATTR_STALE)]
    assert sorted(t.params["x"] for t in real) == [1, 2, 3]
    (surplus,) = [t for t in study.trials if t.user_attrs.get(ledger.ATTR_STALE)]
    assert (
        "another sweeper holds the same grid point" in surplus.user_attrs[ledger.ATTR_FAIL_REASON]
    )
    assert len(sweep.launched) == 3


def test_grid_claims_stop_when_no_point_is_left(tmp_path):
    space = parse_params({"x": "choice(1, 2)"})
    sampler = GridSampler(space.distributions, [{"x": 1}, {"x": 2}])
    study = optuna.create_study(sampler=sampler)
    claims = sampler.claims(None)
    claims.prepare(study)
    assert claims.room(study, 5) == 2
    for _ in range(2):
        trial = study.ask()
        assert claims.accept(study, trial) is Claim.ACCEPT
        study.tell(trial, 1.0)
    assert claims.room(study, 5) == 0
    extra = optuna.create_study().ask()  # a trial with no grid point (plain ask)
    assert claims.accept(extra.study, extra) is Claim.STOP


def test_preview_touches_no_ledger(tmp_path):
    sweep = make_sweep(tmp_path, lambda job: JobOutcome(value=1.0), enqueue=[{"x": 0.25}])
    previewed = sweep.preview(3)
    assert previewed[0] == ["x=0.25"] and len(previewed) == 3
    assert not (tmp_path / ledger.DEFAULT_LEDGER_FILE).exists()
    assert sweep.run().study.trials[0].params == {"x": 0.25}


# ----------------------------------------------------------------------------- asynchronous


class ThreadSlots:
    """``JobSlots`` running each job's ``outcome(job)`` in its own thread."""

    def __init__(self, outcome) -> None:
        self.outcome = outcome
        self.started: list[int] = []
        self.stopped = False

    def start(self, jobs):
        futures = []
        for job in jobs:
            self.started.append(job.number)
            future: Future = Future()

            def run(job=job, future=future):
                future.set_result(self.outcome(job))

            threading.Thread(target=run, daemon=True).start()
            futures.append(future)
        return futures

    def stop(self) -> None:
        self.stopped = True


def make_async_sweep(tmp_path: Path, outcome, **settings) -> tuple[Sweep, ThreadSlots]:
    slots = ThreadSlots(outcome)
    sweep = make_sweep(tmp_path, lambda job: pytest.fail("batch launch in async mode"), **settings)
    sweep.slots = slots
    return sweep, slots


def test_short_trials_keep_starting_while_a_long_one_runs(tmp_path):
    """Trial 0 ends only after four short trials ended: in batches this would never happen."""
    short_done = threading.Semaphore(0)

    def outcome(job):
        if job.number == 0:
            for _ in range(4):
                assert short_done.acquire(timeout=60), "the short trials did not run"
        else:
            short_done.release()
        return JobOutcome(value=float(job.number))

    sweep, slots = make_async_sweep(tmp_path, outcome, n_trials=6, n_jobs=2)
    study = sweep.run().study
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    long = trials[0]
    # trials 1-4 started while trial 0 ran; 1-3 also ended before it (4 ends together with it)
    assert all(
        long.datetime_start <= t.datetime_start <= long.datetime_complete for t in trials[1:5]
    )
    assert all(t.datetime_complete <= long.datetime_complete for t in trials[1:4])
    assert slots.started == list(range(6))
    assert "asynchronous" in sweep.mode_text()


def test_async_budget_is_exact_and_one_slot_repeats_the_batch_sweep(tmp_path):
    score = lambda job: JobOutcome(value=float(job.overrides[0].split("=")[1]))  # noqa: E731
    batch = make_sweep(tmp_path / "batch", score, n_trials=5, n_jobs=1).run().study
    sweep, slots = make_async_sweep(tmp_path / "async", score, n_trials=5, n_jobs=1)
    study = sweep.run().study
    assert [t.params for t in study.trials] == [t.params for t in batch.trials]
    sweep, slots = make_async_sweep(tmp_path / "three", score, n_trials=7, n_jobs=3)
    study = sweep.run().study
    assert len(slots.started) == 7 and len(study.trials) == 7


def test_failure_stop_lets_running_trials_finish_and_starts_no_new_one(tmp_path, capsys):
    """Trial 1 fails while trial 0 runs: no trial starts after it, trial 0 ends and is recorded."""
    recorded = threading.Event()

    class Progress(ConsoleProgress):
        def trial_finished(self, study, trial):
            super().trial_finished(study, trial)
            recorded.set()

    def outcome(job):
        if job.number == 0:
            assert recorded.wait(timeout=60)
            return JobOutcome(value=1.0)
        return JobOutcome(failure="CUDA error")

    sweep, slots = make_async_sweep(tmp_path, outcome, n_trials=10, n_jobs=2)
    sweep.progress = Progress()
    with pytest.raises(SweepStopped, match="stopped: 1 of 1 trials failed"):
        sweep.run()
    assert slots.started == [0, 1]
    states = [t.state for t in sweep.open().get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.FAIL]
    assert "no new trial starts, waiting for the 1 running trial(s)" in capsys.readouterr().out


def test_interrupt_stops_the_running_jobs_and_marks_them_stale(tmp_path):
    """Ctrl-C (``interrupt_main``, as SIGINT arrives) while trials 1 and 2 run: both are stale."""
    never = threading.Event()

    def outcome(job):
        if job.number == 2:
            _thread.interrupt_main()
        if job.number > 0:
            never.wait(timeout=120)
        return JobOutcome(value=1.0)

    sweep, slots = make_async_sweep(tmp_path, outcome, n_trials=5, n_jobs=2)
    with pytest.raises(SweepStopped, match="interrupted: .* run the same command to resume"):
        sweep.run()
    never.set()
    assert slots.stopped and slots.started == [0, 1, 2]
    trials = sweep.open().get_trials()
    # trial 0 took no time next to its ask, so trial 3 may have been asked ahead: stale, never run
    assert [t.state for t in trials[:3]] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert [t.state for t in trials[3:]] in ([], [TrialState.FAIL])
    assert [t.number for t in trials if t.user_attrs.get(ledger.ATTR_STALE)] == list(
        range(1, len(trials))
    )


class EventSlots(ThreadSlots):
    """``ThreadSlots`` that log each start, beside a progress that logs each record."""

    def __init__(self, outcome, events: list[tuple[str, int]]) -> None:
        super().__init__(outcome)
        self.events = events

    def start(self, jobs):
        self.events.extend(("started", job.number) for job in jobs)
        return super().start(jobs)


def make_logged_sweep(
    tmp_path: Path, outcome, **settings
) -> tuple[Sweep, list[tuple[str, int]], list[threading.Event]]:
    """An async sweep that logs starts and records; ``recorded[n]`` is set once trial n is."""
    events: list[tuple[str, int]] = []
    recorded = [threading.Event() for _ in range(settings["n_trials"])]

    class Progress(ConsoleProgress):
        def trial_finished(self, study, trial):
            events.append(("recorded", trial.number))
            super().trial_finished(study, trial)
            recorded[trial.number].set()

    sweep, _ = make_async_sweep(tmp_path, outcome, **settings)
    sweep.slots = EventSlots(outcome, events)
    sweep.progress = Progress()
    return sweep, events, recorded


def wait_for_trials(sweep: Sweep, n: int) -> None:
    """Until the ledger holds ``n`` trials (a job thread watching the sweeper)."""
    for _ in range(1200):
        if len(sweep.open().get_trials(deepcopy=False)) >= n:
            return
        threading.Event().wait(0.05)
    pytest.fail(f"the ledger never held {n} trials")


def test_when_asks_are_slow_next_to_trials_the_next_trial_is_asked_ahead(tmp_path):
    """Trial 0 takes no time next to an ask: while trials 1 and 2 run, trial 3 is asked, and it
    starts the moment trial 1 ends, before trial 1 is recorded."""

    def outcome(job):
        if job.number == 1:
            wait_for_trials(sweep, 4)  # trial 3 asked while 1 and 2 run
        if job.number == 2:
            assert recorded[1].wait(timeout=60)
        return JobOutcome(value=float(job.number))

    sweep, events, recorded = make_logged_sweep(tmp_path, outcome, n_trials=5, n_jobs=2)
    study = sweep.run().study
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 5
    assert events.index(("started", 3)) < events.index(("recorded", 1))
    assert [n for kind, n in events if kind == "started"] == list(range(5))


def test_a_trial_asked_ahead_is_never_run_when_a_failure_stops_the_sweep(tmp_path):
    """Trial 1 fails once trial 3 was asked ahead: trial 3 is stale and never starts; trial 2
    still finishes and is recorded."""

    def outcome(job):
        if job.number == 1:
            wait_for_trials(sweep, 4)
            return JobOutcome(failure="CUDA error")
        if job.number == 2:
            assert recorded[1].wait(timeout=60)
        return JobOutcome(value=float(job.number))

    sweep, events, recorded = make_logged_sweep(
        tmp_path, outcome, n_trials=6, n_jobs=2, max_failure_rate=0.1
    )
    with pytest.raises(SweepStopped, match="stopped: 1 of 2 trials failed"):
        sweep.run()
    assert [n for kind, n in events if kind == "started"] == [0, 1, 2]
    trials = sweep.open().get_trials()
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.FAIL,
    ]
    assert trials[3].user_attrs[ledger.ATTR_STALE]
    assert "not run" in trials[3].user_attrs[ledger.ATTR_FAIL_REASON]


def test_confirmation_runs_fill_the_slots_after_the_search(tmp_path):
    """With confirm on, the second phase (issue 17) runs in the same slots once the search ended."""
    score = lambda job: JobOutcome(value=float(job.overrides[0].split("=")[1]))  # noqa: E731
    sweep, slots = make_async_sweep(
        tmp_path, score, n_trials=6, n_jobs=2, confirm={"top_k": 2, "seeds": 2}
    )
    sweep.set_seed_key(lambda key: {"seed": 7}[key])
    study = sweep.run().study
    trials = study.get_trials()
    assert len(trials) == 10 and slots.started == list(range(10))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    runs = [t for t in trials if t.number >= 6]
    best = sorted(trials[:6], key=lambda t: t.value)[-2:]
    assert {t.params["x"] for t in runs} == {t.params["x"] for t in best}
    assert sorted(t.number for t in runs) == [6, 7, 8, 9]


def test_the_screening_hook_records_an_infeasible_trial_without_launching_it(tmp_path):
    """A screened-out trial is a FAIL of kind infeasible at once: no job, not a failure for
    max_failure_rate (0 here), one of the n_trials. The grid's other points all run."""
    launched: list[list[str]] = []

    def launch(jobs):
        launched.extend(list(job.overrides) for job in jobs)
        return [JobOutcome(value={"score": 1.0}) for _ in jobs]

    def screen(overrides: list[str]) -> str | None:
        return "even-batch: 3 is odd" if "n=3" in overrides else None

    settings = SweepSettings(metric="score", strategy="grid", n_trials=None, max_failure_rate=0.0)
    sweep = Sweep(
        parse_params({"n": "choice(2, 3, 4)"}),
        settings,
        launch,
        tmp_path / "sweep",
        ledger_dir=tmp_path,
        screen=screen,
    )
    result = sweep.run()
    assert launched == [["n=2"], ["n=4"]]
    by_n = {t.params["n"]: t for t in result.study.trials}
    assert [by_n[n].state for n in (2, 3, 4)] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    assert by_n[3].user_attrs[ledger.ATTR_FAIL_KIND] == FailureKind.INFEASIBLE.value
    assert by_n[3].user_attrs[ledger.ATTR_FAIL_REASON] == (
        "infeasible, not launched: even-batch: 3 is odd"
    )
    assert sorted(result.new_trials) == [0, 1, 2]


def test_a_dry_run_preview_shows_only_trials_that_pass_the_screen(tmp_path):
    sweep = Sweep(
        parse_params({"n": "choice(2, 3, 4)"}),
        SweepSettings(metric="score", strategy="grid", n_trials=None),
        lambda jobs: [],
        tmp_path / "sweep",
        ledger_dir=tmp_path,
        screen=lambda overrides: "odd" if "n=3" in overrides else None,
    )
    assert sweep.preview(5) == [["n=2"], ["n=4"]]
    assert not (tmp_path / "nemo_rl_sweep.db").exists()


# ------------------------------------------------------------------- a dead sweeper's Slurm jobs


class AdoptingSlots(ThreadSlots):
    """Slots that can watch again the jobs of a dead sweeper's trials (the ray.sub trial mode)."""

    def __init__(self, outcome) -> None:
        super().__init__(outcome)
        self.adopted: list[int] = []

    def adopt(self, jobs):
        self.adopted.extend(job.number for job in jobs)
        return self.start(jobs)


def orphan_on_slurm(sweep: Sweep) -> int:
    """A RUNNING trial whose sweeper (on this host) died while its Slurm job runs on."""
    from tests.test_ledger import _dead_pid

    study = sweep.open()
    trial = sweep._ask(study, sweep.claims)
    host, boot, _ = ledger.owner_tag().split(":")
    trial.set_user_attr(ledger.ATTR_OWNER, f"{host}:{boot}:{_dead_pid()}")
    trial.set_user_attr(ledger.ATTR_SLURM_JOB, "1234")
    return trial.number


def test_a_dead_sweepers_slurm_trials_are_adopted_not_run_again(tmp_path):
    slots = AdoptingSlots(lambda job: JobOutcome(value=0.5))
    sweep = make_sweep(tmp_path, lambda job: pytest.fail("batch launch"), n_trials=3, n_jobs=2)
    sweep.slots = slots
    orphan = orphan_on_slurm(sweep)
    study = sweep.run().study
    trials = study.get_trials()
    assert len(trials) == 3 and [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert slots.adopted == [orphan] and slots.started.count(orphan) == 1
    assert not trials[orphan].user_attrs.get(ledger.ATTR_STALE)
    assert trials[orphan].user_attrs[ledger.ATTR_OWNER] == ledger.owner_tag()


def test_slots_that_cannot_adopt_leave_the_trial_stale_as_before(tmp_path):
    sweep, slots = make_async_sweep(
        tmp_path, lambda job: JobOutcome(value=0.5), n_trials=3, n_jobs=2
    )
    orphan = orphan_on_slurm(sweep)
    trials = sweep.run().study.get_trials()
    assert trials[orphan].state == TrialState.FAIL
    assert trials[orphan].user_attrs[ledger.ATTR_STALE] is True
    assert orphan not in slots.started and len(slots.started) == 3
