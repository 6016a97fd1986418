"""The sweep loop: keep ``n_jobs`` trials running, tell the ledger what came back, until the claims stop.

It knows nothing of Hydra and names no strategy: the settings check (``nemo_rl_sweep.settings``)
builds the sampler, the sampler's claims (``claims``) decide which asked trials may run, and the
caller says how jobs run. Two ways, one per kind of launcher:

- ``slots`` (a ``JobSlots``): start jobs now, get a ``Future`` per job. The loop keeps ``n_jobs``
  trials running: when one ends (complete, pruned, failed) it is told to the ledger and the next
  trial is asked at once, with the trials still running in the study as RUNNING (the bayes and pareto
  samplers condition on them). No slot idles while the slowest trial of a batch runs. When asks
  are slow next to the trials (``ask_ahead``), the next trial is asked while every slot runs and
  starts the moment one frees; the result files are rewritten while no ended trial waits.
- ``launch`` (a batch function, the fallback for a launcher that can only run batches): ask
  ``n_jobs`` trials, run them, wait for all, repeat. The first lines of the sweep say which mode runs.

Every ledger write (ask, tell, attributes) happens on the calling thread; the futures only carry
``JobOutcome``s back. Everything a user has spent is in the ledger as soon as it exists: each trial
is recorded as it ends and the result files are rewritten after every record (in async mode as
soon as no ended trial waits to be recorded), so a crash loses at most the trials that were running. ``max_failure_rate`` is judged as trials end; when it stops the
sweep no new trial starts, the running ones finish and are recorded, then the sweep stops. Ctrl-C or
SIGTERM ends the running jobs (``JobSlots.stop``) and marks their trials stale (a trial asked
ahead too; one asked ahead when ``max_failure_rate`` stops the sweep is marked stale, never run).

Reproducibility: with one slot (or in batch mode) a fixed ``seed`` gives the same trials in the same
order as before. With several slots the asks depend on the order in which trials end, which the
launcher and the machine decide, and on whether a trial was asked ahead (which depends on how long
asks and trials take), so parallel async sweeps are reproducible only up to that order.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep import confirmation, ledger
from nemo_rl_sweep.ask_ahead import AskPace
from nemo_rl_sweep.claims import BudgetClaims, Claim, Claims
from nemo_rl_sweep.errors import SweepConfigError, SweepStopped
from nemo_rl_sweep.job import JobOutcome, TrialJob
from nemo_rl_sweep.objectives import (
    FailureKind,
    Objectives,
    TrialFailure,
    TrialTimeout,
    signal_reason,
)
from nemo_rl_sweep.outputs.progress import ConsoleProgress
from nemo_rl_sweep.pruning import record_pruner
from nemo_rl_sweep.screening import Screen
from nemo_rl_sweep.settings import SweepPlan, SweepSettings, check_settings, heartbeat_timing
from nemo_rl_sweep.space import SearchSpace, trial_overrides
from nemo_rl_sweep.warm_start import seed_from_study

Launch = Callable[[Sequence[TrialJob]], Sequence[JobOutcome]]
_POLL_S = 5.0  # how often the wait for a trial's end wakes up (Ctrl-C is seen at once anyway)
_WRITE_EVERY_S = (
    10.0  # async: the result files trail the ledger by at most this (trials of minutes+: 0)
)


class JobSlots(Protocol):
    """A launcher that starts jobs without waiting for them: what makes a sweep asynchronous."""

    def start(self, jobs: Sequence[TrialJob]) -> Sequence[Future[JobOutcome]]:
        """Start ``jobs`` now (all at once, e.g. one Slurm job array); one future per job, in order."""

    def stop(self) -> None:
        """End every job still running (Ctrl-C, SIGTERM); their futures are abandoned."""

    # optional: ``adopt(jobs) -> futures | None``, to watch again the jobs of trials whose
    # sweeper died while the jobs live on (the ray.sub trial mode's Slurm jobs)


@dataclass
class SweepResult:
    study: optuna.Study
    storage_url: str
    sweep_dir: Path
    new_trials: list[int]


class Sweep:
    """One sweep over ``space``; ``run()`` returns when the budget is spent or the sweep must stop."""

    def __init__(
        self,
        space: SearchSpace,
        settings: SweepSettings,
        launch: Launch,
        sweep_dir: str | Path,
        *,
        task_name: str = "sweep",
        ledger_dir: str | Path | None = None,
        progress: ConsoleProgress | None = None,
        slots: JobSlots | None = None,
        batch_reason: str = "the launcher runs batches only",
        screen: Screen | None = None,
    ) -> None:
        self.space = space
        self.screen = screen
        self.settings = settings
        self.launch = launch
        self.slots = slots
        self.batch_reason = batch_reason
        self.sweep_dir = Path(sweep_dir)
        self.progress = progress or ConsoleProgress()
        self.plan: SweepPlan = check_settings(settings, space)
        self.sampler = self.plan.sampler
        self.claims = _claims_of(self.sampler, settings.n_trials)
        base = Path(ledger_dir) if ledger_dir is not None else self.sweep_dir.parent
        self.storage_url = (
            ledger.absolute_storage_url(settings.storage, Path.cwd())
            if settings.storage
            else ledger.default_storage_url(base)
        )
        identity = {
            "space": space.describe(),
            "metric": list(self.objectives.names),
            "direction": list(self.objectives.directions),
            "strategy": self.plan.strategy,
            "seed": settings.seed,
        }
        self.study_name = settings.study_name or ledger.default_study_name(
            task_name, self.plan.strategy, identity
        )
        self.study: optuna.Study | None = None
        self.heartbeat: ledger.Heartbeat | None = None
        self._stale_checked = 0.0  # time.monotonic() of the last look for dead sweepers' trials
        self.ledger_times: dict[str, list[float]] = {}  # "ask" / "tell" -> seconds of each
        self._warned_crowded = False
        self.new_trials: list[int] = []
        self.seed_key: tuple[str, int] | None = None  # (key, the search's seed): set_seed_key

    @property
    def objectives(self) -> Objectives:
        return self.plan.objectives

    def set_seed_key(self, lookup: Callable[[str], Any]) -> None:
        """Find the trainer's seed key in a trial config (``lookup(key)``, KeyError if absent),
        when the sweep confirms its answer; a bad or missing key is refused here, before the run."""
        if self.plan.confirm is not None:
            self.seed_key = confirmation.find_seed_key(
                lookup, self.plan.confirm, list(self.space.params)
            )

    # ---------------------------------------------------------------------------------- public

    def preview(self, n: int = 5) -> list[list[str]]:
        """The overrides of the first trials this sweep would launch, without touching the ledger."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # copies: Optuna samplers keep per-study state and RNG draws the real sweep must not lose
        sampler = copy.deepcopy(self.sampler)
        study = optuna.create_study(directions=list(self.objectives.directions), sampler=sampler)
        claims = _claims_of(sampler, self.settings.n_trials)
        self._enqueue_initial(study, claims)
        total = (
            len(self.plan.grid_points)
            if self.plan.grid_points is not None
            else self.settings.n_trials
        )
        out = []
        for _ in range(min(n, total or n)):
            trial = self._ask(study, claims)
            if trial is None:
                break
            out.append(trial_overrides(self.space, trial.params))
            study.tell(trial, state=TrialState.FAIL)
        return out

    def open(self) -> optuna.Study:
        """Open (or create) the study, refusing a storage or a study that does not fit this sweep."""
        if self.study is None:
            self.study = ledger.open_study(
                ledger.open_storage(self.storage_url, heartbeat_timing(self.settings), check=True),
                self.study_name,
                self.objectives.directions,
                self.objectives.names,
                sampler=self.sampler,
                pruner=self.plan.pruner,
            )
        return self.study

    def run(self) -> SweepResult:
        study = self.open()
        study.set_user_attr(ledger.STUDY_ATTR_STRATEGY, self.plan.strategy)
        study.set_user_attr(ledger.STUDY_ATTR_SPACE, self.space.describe())
        record_pruner(study, self.plan.pruner_node)  # the jobs rebuild it from the ledger
        if self.plan.warm_start is not None:
            seed_from_study(
                study,
                self.plan.warm_start,
                self.space,
                own_storage_url=self.storage_url,
                message=self.progress.message,
            )
        timing = heartbeat_timing(self.settings)
        self.heartbeat = ledger.Heartbeat(study, timing) if timing is not None else None
        adopted = self._adopt(study)
        self._fail_stale(study)
        done = [t for t in study.get_trials(deepcopy=False) if t.state in ledger.FINISHED]
        if done:
            self.progress.message(
                f"resuming study {self.study_name!r}: {len(done)} finished trial(s) kept"
            )
        self._enqueue_initial(study, self.claims)
        self.progress.message(f"strategy {self.plan.strategy}, ledger {self.storage_url}")
        self.progress.message(self.mode_text())
        self.progress.sweep_started(study, self.settings.n_trials)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        with sigterm_as_interrupt():  # to the end: a repeated Ctrl-C cannot cut the last writes
            try:
                with self.heartbeat or contextlib.nullcontext():
                    self._run_phase(study, self.claims, adopted)
                    if self.plan.confirm is not None:
                        self._run_phase(study, self._confirmation_claims(study))
            finally:
                self._write_results(study, final=True)
                self.progress.sweep_finished(study)
                self.progress.message(self.ledger_text())
        return SweepResult(study, self.storage_url, self.sweep_dir, list(self.new_trials))

    def ledger_text(self) -> str:
        """The sweep's last line: how long the ledger took to hand out and to record a trial, so a
        crowded ledger shows (the numbers of docs/benchmarks.md's storage table)."""
        parts = []
        for what in ("ask", "tell"):
            times = sorted(self.ledger_times.get(what, []))
            if times:
                median = times[len(times) // 2]
                parts.append(f"{len(times)} {what}s, median {median:.3f} s, max {times[-1]:.3f} s")
        return f"ledger {self.storage_url}: " + ("; ".join(parts) or "not used")

    def mode_text(self) -> str:
        """One of the sweep's first lines: how its trials share the ``n_jobs`` slots."""
        n = self.settings.n_jobs
        if n == 1:
            return "n_jobs=1: one trial at a time"
        if self.slots is not None:
            return (
                f"n_jobs={n}: asynchronous, a new trial starts as soon as one of {n} slot(s) frees"
            )
        return f"n_jobs={n}: batches of {n}, each waits for its slowest trial ({self.batch_reason})"

    # ------------------------------------------------------------------------------ the modes

    def _adopt(self, study: optuna.Study) -> dict[Future[JobOutcome], optuna.Trial]:
        """Trials of a sweeper that died, whose jobs the slots can watch again: taken over (not
        failed, not re-run; they count toward n_trials as before) and recorded as they end."""
        adopt = getattr(self.slots, "adopt", None)
        if adopt is None:
            return {}
        silent = self.heartbeat.silent_trial_ids() if self.heartbeat is not None else set()
        orphans = ledger.orphaned_slurm_trials(study, silent)
        if not orphans:
            return {}
        jobs = [
            TrialJob(t.number, list(t.user_attrs.get(ledger.ATTR_OVERRIDES, []))) for t in orphans
        ]
        futures = adopt(jobs)
        if futures is None:  # these slots cannot watch Slurm jobs: the trials go stale as usual
            return {}
        live = [ledger.take_over(study, t) for t in orphans]
        for trial in live:
            if self.heartbeat is not None:
                self.heartbeat.add(trial)
        self.progress.message(
            f"{len(orphans)} trial(s) of a sweeper that stopped still have their Slurm job; "
            "watching them again: " + ", ".join(str(t.number) for t in orphans)
        )
        return dict(zip(futures, live, strict=True))

    def _run_phase(
        self,
        study: optuna.Study,
        claims: Claims,
        adopted: dict[Future[JobOutcome], optuna.Trial] | None = None,
    ) -> None:
        """Run trials until ``claims`` leave no room: in ``n_jobs`` slots, or in batches."""
        if self.slots is not None:
            self._run_async(study, claims, self.slots, adopted or {})
        else:
            self._run_batches(study, claims)

    def _run_batches(self, study: optuna.Study, claims: Claims) -> None:
        """Ask, launch and tell in batches of ``n_jobs``."""
        while (batch_size := claims.room(study, self.settings.n_jobs)) > 0:
            self._fail_stale(study, every_grace=True)
            try:
                raise_if_interrupted()
                with deferred_interrupt():
                    trials = self._ask_up_to(study, claims, batch_size)
            except KeyboardInterrupt:
                self._interrupted(study, [])
            if not trials:
                break
            self._run_batch(study, trials)
            self._write_results(study)
            self._check_failures(study)
        try:
            raise_if_interrupted()
        except KeyboardInterrupt:
            self._interrupted(study, [])

    def _run_async(
        self,
        study: optuna.Study,
        claims: Claims,
        slots: JobSlots,
        adopted: dict[Future[JobOutcome], optuna.Trial],
    ) -> None:
        """Fill the free slots, wait for the first trial to end, record it, fill again.

        Work that need not delay a start (rewriting the result files, asking one trial ahead when
        asks are slow next to trials: ``ask_ahead``) is done only while no ended trial waits. A
        trial asked ahead starts before the trial whose slot it takes is recorded, unless that one
        failed (a failure may stop the sweep: then no new trial starts). The ``adopted`` trials of
        a sweeper that died hold their slots until they end.
        """
        state = _SlotState()
        now = time.monotonic()
        for future, trial in adopted.items():
            self.progress.trial_started(
                trial.number, trial.user_attrs.get(ledger.ATTR_OVERRIDES, [])
            )
            state.running[future], state.started[future] = trial, now
            state.unrecorded[trial.number] = trial
        pace = AskPace()
        stopped: SweepStopped | None = None
        unwritten, written = False, -_WRITE_EVERY_S  # written: when the files were last rewritten
        may_ask_ahead = self.settings.n_jobs > 1  # one slot: each trial waits for the last result
        try:
            while True:
                free = self.settings.n_jobs - len(state.running)
                if stopped is None and free > 0:
                    self._fail_stale(study, every_grace=True)
                    with deferred_interrupt():  # asked trials reach `unrecorded` before a Ctrl-C
                        trials, state.ahead = state.ahead[:free], state.ahead[free:]
                        trials += self._timed_asks(study, claims, free - len(trials), pace, state)
                        self._launch(slots, state, trials)
                if not state.running:
                    break
                if not any(future.done() for future in state.running):  # spare time
                    if unwritten and time.monotonic() >= written + _WRITE_EVERY_S:
                        self._write_results(study)
                        unwritten, written = False, time.monotonic()
                        continue
                    if stopped is None and may_ask_ahead and not state.ahead and pace.ask_ahead():
                        state.ahead = self._timed_asks(study, claims, 1, pace, state)
                        may_ask_ahead = bool(state.ahead)  # no room left: the budget is spent
                        continue
                done = _first_done(state.running, written + _WRITE_EVERY_S if unwritten else None)
                if not done:  # the files are due
                    continue
                now = time.monotonic()
                if stopped is None and state.ahead and all(self._ended_well(f) for f in done):
                    trials, state.ahead = state.ahead[: len(done)], state.ahead[len(done) :]
                    self._launch(slots, state, trials)
                for future in sorted(done, key=lambda f: state.running[f].number):
                    pace.trial_ended(now - state.started.pop(future))
                    trial = state.running.pop(future)
                    self._record(study, trial, _outcome_of(future))
                    del state.unrecorded[trial.number]
                unwritten = True
                if stopped is None:
                    stopped = self._failure_stop(study, len(state.running))
                    if stopped is not None:
                        for trial in state.ahead:
                            ledger.mark_stale(study, trial, "not run: the sweep stopped first")
                            del state.unrecorded[trial.number]
                        state.ahead = []
        except KeyboardInterrupt:
            _SEEN.set()  # no second Ctrl-C while the jobs are stopped
            slots.stop()
            self._interrupted(study, list(state.unrecorded.values()))
        except Exception:  # the ledger cannot be written (a full disk...): no job runs unwatched;
            slots.stop()  # its trial stays RUNNING, so the next run finds it stale and re-runs it
            raise
        if stopped is not None:
            raise stopped

    def _launch(self, slots: JobSlots, state: _SlotState, trials: list[optuna.Trial]) -> None:
        if not trials:
            return
        now = time.monotonic()
        for future, trial in self._start(slots, trials).items():
            state.running[future], state.started[future] = trial, now

    def _ended_well(self, future: Future[JobOutcome]) -> bool:
        """The trial completed or was pruned: its record cannot stop the sweep."""
        try:
            judge(self.objectives, _outcome_of(future))
        except TrialFailure as failure:
            return failure.kind is FailureKind.PRUNED
        return True

    def _timed_asks(
        self, study: optuna.Study, claims: Claims, n: int, pace: AskPace, state: _SlotState
    ) -> list[optuna.Trial]:
        """Up to ``n`` trials the claims allow, each ask's time told to ``pace``."""
        if n <= 0:
            return []
        start = time.monotonic()
        trials = self._ask_up_to(study, claims, claims.room(study, n))
        if trials:
            pace.asked((time.monotonic() - start) / len(trials))
            state.unrecorded.update((t.number, t) for t in trials)
        return trials

    def _start(
        self, slots: JobSlots, trials: list[optuna.Trial]
    ) -> dict[Future[JobOutcome], optuna.Trial]:
        futures = list(slots.start(self._jobs(trials)))
        if len(futures) != len(trials):
            raise RuntimeError(f"the launcher started {len(futures)} of {len(trials)} jobs")
        return dict(zip(futures, trials))

    def _fail_stale(self, study: optuna.Study, *, every_grace: bool = False) -> None:
        """Fail the RUNNING trials of sweepers that died (this host: their process is gone; any
        host: their heartbeat is older than the grace period), so their work is run again. While
        the sweep runs, looked for once per grace period."""
        if every_grace:
            if self.heartbeat is None:
                return
            if time.monotonic() - self._stale_checked < self.heartbeat.timing.grace_s:
                return
        self._stale_checked = time.monotonic()
        stale = ledger.fail_stale_trials(study, self.heartbeat)
        if stale:
            self.progress.message(
                f"{len(stale)} trial(s) of a sweeper that stopped were marked failed: "
                + ", ".join(
                    f"{t.number} ({t.user_attrs.get(ledger.ATTR_OWNER, '?')})" for t in stale
                )
            )

    def _failure_stop(self, study: optuna.Study, n_running: int) -> SweepStopped | None:
        """The reason to stop (too many failures), said at once; running trials still finish."""
        try:
            self._check_failures(study)
        except SweepStopped as exc:
            if n_running:
                self.progress.message(
                    f"{exc}; no new trial starts, waiting for the {n_running} running trial(s) "
                    "to finish"
                )
            return exc
        return None

    def _confirmation_claims(self, study: optuna.Study) -> Claims:
        """The runs that re-check the best configurations with new seeds, as trials of the study."""
        confirm = self.plan.confirm
        assert confirm is not None
        if self.seed_key is None:
            raise SweepConfigError(
                "hydra.sweeper.confirm",
                "the trainer's seed key is not known",
                "call Sweep.set_seed_key with a trial config's lookup before run()",
            )
        key, base = self.seed_key
        record = confirmation.record_settings(study, confirm, key, base)
        runs = confirmation.plan(study.get_trials(deepcopy=False), study.directions, record)
        todo = confirmation.pending(study.get_trials(deepcopy=False), runs)
        if todo:
            self.progress.message(
                f"confirmation: {len(todo)} run(s) of the top {confirm.top_k} configuration(s) "
                f"with {key} = {', '.join(map(str, record['seed_values']))}"
            )
        return confirmation.ConfirmationClaims(runs)

    def _overrides(self, trial: optuna.Trial) -> list[str]:
        """A trial's Hydra overrides: its parameters, and a confirmation run's new seed."""
        return trial_overrides(self.space, trial.params) + confirmation.seed_override(trial)

    # --------------------------------------------------------------------------------- helpers

    def _ask_up_to(self, study: optuna.Study, claims: Claims, n: int) -> list[optuna.Trial]:
        trials = []
        for _ in range(n):
            trial = self._ask(study, claims)
            if trial is None:
                break
            trials.append(trial)
        return trials

    def _jobs(self, trials: list[optuna.Trial]) -> list[TrialJob]:
        jobs = [TrialJob(t.number, self._overrides(t)) for t in trials]
        for job in jobs:
            self.progress.trial_started(job.number, job.overrides)
        return jobs

    def _interrupted(self, study: optuna.Study, trials: Sequence[optuna.Trial]) -> NoReturn:
        """Ctrl-C or SIGTERM: the running trials are stale (they count nowhere), say how to resume.
        A trial asked just as the signal came (not yet in the caller's hands) is found by its
        owner, this process."""
        _SEEN.set()
        me = ledger.owner_tag()
        mine = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.user_attrs.get(ledger.ATTR_OWNER) == me
        ]
        seen: set[int] = set()
        for trial in [*trials, *mine]:
            if trial.number not in seen:
                seen.add(trial.number)
                self._beat_off(trial)
                ledger.mark_stale(study, trial, "the sweep was interrupted (Ctrl-C) while it ran")
        raise SweepStopped(
            "interrupted: finished trials are in the ledger; run the same command to resume "
            f"(study {self.study_name!r} in {self.storage_url})"
        ) from None

    def _enqueue_initial(self, study: optuna.Study, claims: Claims) -> None:
        """The warm-start entries and the claims' own (the grid's points), enqueued by one sweeper
        at a time, so sweepers started together do not each enqueue the same points."""
        shared = study is self.study
        with ledger.exclusive_ask(self.storage_url) if shared else contextlib.nullcontext():
            for params in self.plan.enqueue:
                study.enqueue_trial(dict(params), skip_if_exists=True)
            claims.prepare(study)

    def _ask(self, study: optuna.Study, claims: Claims) -> optuna.Trial | None:
        """A new trial with every parameter sampled, or None when the claims allow no more."""
        while claims.room(study, 1) > 0:
            shared = study is self.study  # not the in-memory study of a preview
            with (
                self._timed("ask") if shared else contextlib.nullcontext(),
                ledger.exclusive_ask(self.storage_url) if shared else contextlib.nullcontext(),
            ):
                trial = study.ask()
                claim = claims.accept(study, trial)
            if claim is Claim.RETRY:
                continue
            if claim is Claim.STOP:
                return None
            for name, dist in self.space.distributions.items():
                suggest(trial, name, dist)
            trial.set_user_attr(ledger.ATTR_OWNER, ledger.owner_tag())
            if shared and self.heartbeat is not None:
                self.heartbeat.add(trial)
            trial.set_user_attr(ledger.ATTR_OVERRIDES, self._overrides(trial))
            if self._screened_out(study, trial, report=shared):
                continue
            return trial
        return None

    def _screened_out(self, study: optuna.Study, trial: optuna.Trial, *, report: bool) -> bool:
        """The screening hook: a trial whose config breaks a rule of its trainer is recorded at
        once as a failed, infeasible trial and never launched (no GPU time, and not counted by
        max_failure_rate; it does count toward n_trials, which keeps the asking finite)."""
        if self.screen is None:
            return False
        rule = self.screen(trial_overrides(self.space, trial.params))
        if rule is None:
            return False
        trial.set_user_attr(ledger.ATTR_FAIL_REASON, f"infeasible, not launched: {rule}")
        trial.set_user_attr(ledger.ATTR_FAIL_KIND, FailureKind.INFEASIBLE.value)
        self._beat_off(trial)
        study.tell(trial, state=TrialState.FAIL)
        if report:
            self.new_trials.append(trial.number)
            self.progress.message(f"trial {trial.number} skipped, infeasible: {rule}")
        return True

    def _run_batch(self, study: optuna.Study, trials: list[optuna.Trial]) -> None:
        jobs = self._jobs(trials)
        try:
            outcomes = list(self.launch(jobs))
        except KeyboardInterrupt:
            self._interrupted(study, trials)
        if len(outcomes) != len(trials):
            raise RuntimeError(
                f"the launcher returned {len(outcomes)} results for {len(trials)} jobs"
            )
        for trial, outcome in zip(trials, outcomes):
            self._record(study, trial, outcome)

    def _beat_off(self, trial: optuna.Trial) -> None:
        if self.heartbeat is not None:
            self.heartbeat.discard(trial)

    def _record(self, study: optuna.Study, trial: optuna.Trial, outcome: JobOutcome) -> None:
        self._beat_off(trial)
        self.new_trials.append(trial.number)
        frozen = self._ledger_write("tell", lambda: self._tell(study, trial, outcome))
        self.progress.trial_finished(study, frozen)

    def _ledger_write(self, what: str, write: Callable[[], Any], attempts: int = 3) -> Any:
        """A ledger write, timed, retried while a SQLite file stays locked; if it never frees, the
        sweep stops with one line that says to use a server or a journal file (the running
        trials are then found stale and re-run by the next sweeper)."""
        for attempt in range(attempts):
            try:
                with self._timed(what):
                    return write()
            except Exception as exc:
                if not ledger.is_locked(exc):
                    raise
                if attempt == attempts - 1:
                    raise SweepStopped(
                        "Error: " + str(ledger.crowded_text(self.storage_url, what, exc))
                    ) from None
                self._warn_crowded(what)
                # a write SQLite refused at once (see ledger.is_locked) must not spend its
                # attempts in milliseconds: give the other writer time to finish
                time.sleep(ledger.SLOW_LEDGER_S / 4 * (attempt + 1))
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _timed(self, what: str) -> Iterator[None]:
        """Time a ledger step; on SQLite, say it at once when one keeps waiting for the lock."""
        timer = None
        if ledger.crowded_text(self.storage_url, what, None) is not None:
            timer = threading.Timer(ledger.SLOW_LEDGER_S, self._warn_crowded, args=(what,))
            timer.daemon = True
            timer.start()
        start = time.monotonic()
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()
            self.ledger_times.setdefault(what, []).append(time.monotonic() - start)

    def _warn_crowded(self, what: str) -> None:
        if not self._warned_crowded:
            self._warned_crowded = True
            self.progress.message(
                "Warning: " + str(ledger.crowded_text(self.storage_url, what, None))
            )

    def _tell(self, study: optuna.Study, trial: optuna.Trial, outcome: JobOutcome) -> FrozenTrial:
        if outcome.job_dir:
            trial.set_user_attr(ledger.ATTR_JOB_DIR, str(outcome.job_dir))
        if outcome.duration_s is not None:
            trial.set_user_attr(ledger.ATTR_DURATION, float(outcome.duration_s))
        try:
            values, metrics = judge(self.objectives, outcome)
        except TrialFailure as failure:
            if failure.kind is FailureKind.PRUNED:
                frozen = study.tell(trial, state=TrialState.PRUNED)
            else:
                trial.set_user_attr(ledger.ATTR_FAIL_REASON, str(failure))
                trial.set_user_attr(ledger.ATTR_FAIL_KIND, failure.kind.value)
                frozen = study.tell(trial, state=TrialState.FAIL)
        else:
            trial.set_user_attr(ledger.ATTR_METRICS, metrics)
            frozen = study.tell(trial, values)
        return frozen

    def _check_failures(self, study: optuna.Study) -> None:
        """Stop when every trial of this run missed the objective, or too many trials failed."""
        finished = [
            t
            for t in study.get_trials(deepcopy=False, states=ledger.FINISHED)
            if ledger.counts_toward_budget(t)
            and t.user_attrs.get(ledger.ATTR_FAIL_KIND) != FailureKind.INFEASIBLE.value
        ]
        failed = [t for t in finished if t.state == TrialState.FAIL]
        if not failed:
            return
        new = set(self.new_trials)
        mine = [t for t in finished if t.number in new]
        missing = [
            t
            for t in mine
            if t.user_attrs.get(ledger.ATTR_FAIL_KIND) == FailureKind.MISSING_METRIC.value
        ]
        if mine and len(missing) == len(mine):
            raise SweepStopped(
                f"stopped: no trial reported the objective; {missing[-1].user_attrs[ledger.ATTR_FAIL_REASON]}. "
                "Fix: set hydra.sweeper.metric to a metric the job reports"
            )
        rate = len(failed) / len(finished)
        if rate > self.settings.max_failure_rate:
            last = failed[-1]
            raise SweepStopped(
                f"stopped: {len(failed)} of {len(finished)} trials failed ({rate:.0%}), more than "
                f"max_failure_rate={self.settings.max_failure_rate}; last failure (trial "
                f"{last.number}): {last.user_attrs.get(ledger.ATTR_FAIL_REASON, 'unknown')}"
            )

    def _write_results(self, study: optuna.Study, *, final: bool = False) -> None:
        from nemo_rl_sweep.outputs.results import write_results

        try:
            write_results(study, self.sweep_dir, self.storage_url, final=final)
        except OSError as exc:  # a full disk: the old files stay whole, the ledger has every trial
            self.progress.message(
                f"could not rewrite the result files in {self.sweep_dir} ({exc.strerror or exc}); "
                "the previous ones are whole, every trial is in the ledger, and the files are "
                "written again after the next trial"
            )


@dataclass
class _SlotState:
    """The trials of an asynchronous phase: running (with their start times), asked ahead, and
    every trial asked and not yet recorded (what Ctrl-C marks stale, wherever it lands)."""

    running: dict[Future[JobOutcome], optuna.Trial] = field(default_factory=dict)
    started: dict[Future[JobOutcome], float] = field(default_factory=dict)
    ahead: list[optuna.Trial] = field(default_factory=list)
    unrecorded: dict[int, optuna.Trial] = field(default_factory=dict)


def _first_done(
    running: dict[Future[JobOutcome], optuna.Trial], until: float | None
) -> set[Future[JobOutcome]]:
    """The futures that have ended, waiting for the first; none if ``until`` (``time.monotonic``)
    passes first."""
    while True:
        raise_if_interrupted()  # a Ctrl-C whose exception Python swallowed
        timeout = _POLL_S if until is None else max(0.0, min(_POLL_S, until - time.monotonic()))
        done, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
        if done or (until is not None and time.monotonic() >= until):
            return done


def _claims_of(sampler: optuna.samplers.BaseSampler, n_trials: int | None) -> Claims:
    """The sampler's own claims if it has them, else at most ``n_trials`` trials."""
    own = getattr(sampler, "claims", None)
    if own is not None:
        return own(n_trials)
    assert n_trials is not None  # check_settings refuses a null n_trials for such strategies
    return BudgetClaims(n_trials)


def _outcome_of(future: Future[JobOutcome]) -> JobOutcome:
    """A job whose handle itself broke (not the trial) is a failed trial, never a failed sweep."""
    error = future.exception()
    return future.result() if error is None else JobOutcome(failure=error)


def judge(objectives: Objectives, outcome: JobOutcome) -> tuple[list[float], dict[str, float]]:
    """The objective values and metrics of one job; ``TrialFailure`` (with its kind) if none."""
    failure = outcome.failure
    if failure is not None:
        if is_pruned(failure):
            raise TrialFailure(FailureKind.PRUNED, describe_error(failure))
        if isinstance(failure, TrialTimeout) or type(failure).__name__ == "TrialTimeout":
            raise TrialFailure(FailureKind.TIMEOUT, str(failure))
        killed = signal_reason(failure)
        if killed is not None:
            raise TrialFailure(FailureKind.KILLED, killed)
        raise TrialFailure(FailureKind.ERROR, describe_error(failure))
    return objectives.read(outcome.value)


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """``trial.suggest_*`` for any distribution, through Optuna's public API."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise TypeError(f"unsupported distribution {dist!r}")


def is_pruned(error: BaseException | str) -> bool:
    """A job stopped by the pruner; the exception may arrive pickled or only as text."""
    if isinstance(error, optuna.TrialPruned):
        return True
    return type(error).__name__ == "TrialPruned" or (
        isinstance(error, str) and "TrialPruned" in error.splitlines()[0] if error else False
    )


def describe_error(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error.strip() or "the job failed"
    text = str(error).strip()
    if not text and error.__cause__ is not None:
        text = str(error.__cause__).strip()
    head = f"{type(error).__name__}: {text}" if text else type(error).__name__
    tb = "".join(traceback.format_tb(error.__traceback__)[-1:]).strip()
    return head if not tb else f"{head} [{tb.splitlines()[0].strip()}]"


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Ctrl-C or SIGTERM during the block raises ``KeyboardInterrupt`` when it ends, not inside:
    a trial asked in the ledger is always in the loop's hands when the sweep is interrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def later(signum: int, frame: Any) -> None:
        caught.append(signum)
        _INTERRUPTED.set()

    with _stop_signals_to(later):
        yield
    if caught:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _stop_signals_to(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM go to ``handler`` during the block."""
    import signal

    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (scancel of the sweeper's own job, a shutdown) stops the sweep as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        if _SEEN.is_set() and _INTERRUPTED.is_set():
            return  # the loop is already stopping for this Ctrl-C (or its resend): let it finish
        if not _INTERRUPTED.is_set():
            # Python drops an exception raised inside a weakref callback or a __del__ (SQLAlchemy
            # and the GC run many): the signal is sent again until the loop has seen it
            _INTERRUPTED.set()
            threading.Thread(target=_resend_until_seen, daemon=True).start()
        raise KeyboardInterrupt

    _INTERRUPTED.clear()
    _SEEN.clear()
    try:
        with _stop_signals_to(interrupt):
            yield
    finally:
        _SEEN.set()


_INTERRUPTED = threading.Event()  # Ctrl-C or SIGTERM came during sigterm_as_interrupt
_SEEN = threading.Event()  # the loop has acted on it (or the sweep is over)


def _resend_until_seen(attempts: int = 20, every_s: float = 0.5) -> None:
    import os
    import signal

    for _ in range(attempts):
        if _SEEN.wait(every_s):
            return
        os.kill(os.getpid(), signal.SIGINT)


def raise_if_interrupted() -> None:
    """At the loop's safe points: a Ctrl-C whose ``KeyboardInterrupt`` was lost still stops it."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt
