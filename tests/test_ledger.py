"""The ledger on a real SQLite storage: URLs, opening studies, stale and budget bookkeeping."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.errors import SweepConfigError

optuna.logging.set_verbosity(optuna.logging.WARNING)


def new_study(tmp_path: Path, name: str = "s") -> optuna.Study:
    storage = ledger.open_storage(ledger.default_storage_url(tmp_path))
    return ledger.open_study(storage, name, ["maximize"], ["score"])


def test_storage_urls_are_made_absolute(tmp_path):
    assert ledger.default_storage_url(tmp_path) == "sqlite:///" + str(
        (tmp_path / ledger.DEFAULT_LEDGER_FILE).resolve()
    )
    assert ledger.absolute_storage_url("sqlite:///a/b.db", tmp_path) == "sqlite:///" + str(
        (tmp_path / "a" / "b.db").resolve()
    )
    assert ledger.absolute_storage_url("sqlite:////abs/b.db", tmp_path) == "sqlite:////abs/b.db"
    assert ledger.absolute_storage_url("sqlite:///:memory:", tmp_path) == "sqlite:///:memory:"
    assert ledger.absolute_storage_url("journal:j.log", tmp_path) == "journal:" + str(
        (tmp_path / "j.log").resolve()
    )
    assert ledger.absolute_storage_url("postgresql://h/db", tmp_path) == "postgresql://h/db"


@pytest.mark.parametrize("url", ["", "not-a-url", "journal:/no/such/folder/j.log"])
def test_bad_storage_urls_are_refused(url):
    with pytest.raises(SweepConfigError) as err:
        ledger.open_storage(url)
    assert err.value.key == "hydra.sweeper.storage"


def test_open_study_resumes_the_same_objectives_and_refuses_others(tmp_path):
    study = new_study(tmp_path)
    study.enqueue_trial({"x": 1.0})
    again = new_study(tmp_path)
    assert again.metric_names == ["score"] and len(again.trials) == 1
    storage = ledger.open_storage(ledger.default_storage_url(tmp_path))
    with pytest.raises(SweepConfigError) as err:
        ledger.open_study(storage, "s", ["minimize"], ["score"])
    assert err.value.key == "hydra.sweeper.study_name"
    assert "already exists with objectives ['score'] ['maximize']" in str(err.value)
    with pytest.raises(SweepConfigError):
        ledger.open_study(storage, "s", ["maximize"], ["loss"])


def test_mark_stale_fails_a_running_trial_once(tmp_path):
    study = new_study(tmp_path)
    trial = study.ask()
    assert ledger.mark_stale(study, trial, "interrupted")
    frozen = study.trials[0]
    assert frozen.state == TrialState.FAIL
    assert frozen.user_attrs[ledger.ATTR_STALE] is True
    assert frozen.user_attrs[ledger.ATTR_FAIL_REASON] == "interrupted"
    assert not ledger.mark_stale(study, frozen, "again")  # already finished


def test_counts_toward_budget(tmp_path):
    study = new_study(tmp_path)
    study.enqueue_trial({})  # WAITING: not yet claimed
    done = study.ask()
    study.tell(done, 1.0)
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    running = study.ask()
    stale = study.ask()
    ledger.mark_stale(study, stale, "not run")
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=[0.5], user_attrs={ledger.ATTR_COPIED_FROM: "old#0"}
        )
    )
    counted = {t.number: ledger.counts_toward_budget(t) for t in study.trials}
    by_number = {done.number: True, failed.number: True, running.number: True}
    by_number |= {stale.number: False, len(study.trials) - 1: False}
    for number, expected in by_number.items():
        assert counted[number] is expected, number
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert all(not ledger.counts_toward_budget(t) for t in waiting)


def test_stale_trials_are_those_of_a_dead_sweeper_on_this_host(tmp_path):
    study = new_study(tmp_path)
    alive = study.ask()
    alive.set_user_attr(ledger.ATTR_OWNER, ledger.owner_tag())
    dead = study.ask()
    host, boot, _ = ledger.owner_tag().split(":")
    dead.set_user_attr(ledger.ATTR_OWNER, f"{host}:{boot}:{_dead_pid()}")
    elsewhere = study.ask()
    elsewhere.set_user_attr(ledger.ATTR_OWNER, f"not-{socket.gethostname()}:x:1")
    stale = ledger.fail_stale_trials(study)
    assert [t.number for t in stale] == [dead.number]
    states = {t.number: t.state for t in study.trials}
    assert states[alive.number] == states[elsewhere.number] == TrialState.RUNNING
    assert states[dead.number] == TrialState.FAIL
    assert "its sweeper stopped" in study.trials[dead.number].user_attrs[ledger.ATTR_FAIL_REASON]


def test_open_trial_reaches_the_live_trial(tmp_path):
    study = new_study(tmp_path)
    trial = study.ask()
    live = ledger.open_trial(ledger.default_storage_url(tmp_path), "s", trial.number)
    live.report(0.5, 1)
    assert study.trials[trial.number].intermediate_values == {1: 0.5}


def test_system_attrs_of_an_enqueued_trial(tmp_path):
    study = new_study(tmp_path)
    study.enqueue_trial({"x": 2})
    trial = study.ask()
    assert ledger.trial_system_attrs(study, trial)["fixed_params"] == {"x": 2}
    ledger.set_trial_system_attr(study, trial, "k", "v")
    assert study.trials[0].system_attrs["k"] == "v"


def _dead_pid() -> int:
    pid = os.getpid() + 100000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_asks_of_several_processes_take_turns_on_file_storages(tmp_path):
    """SQLite and journal files cannot lock a WAITING trial's row, so asks hold a file lock."""
    import fcntl

    url = ledger.default_storage_url(tmp_path)
    with ledger.exclusive_ask(url):
        lock_file = tmp_path / (ledger.DEFAULT_LEDGER_FILE + ".ask.lock")
        with open(lock_file, "a") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process's ask would wait
    with open(lock_file, "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released after the ask
    with ledger.exclusive_ask("oracle://db/ledger"):  # no lock known for this server: none taken
        pass
    # PostgreSQL and MariaDB take an advisory lock: tests/test_storage_load.py, on real servers


def test_a_commit_refused_for_the_lock_is_known_as_locked_through_optunas_wrapper(tmp_path):
    """Optuna wraps a failed commit in StorageInternalError, whose own text never says "locked":
    the sweeper must still see SQLite's lock (and warn and retry) instead of dying."""
    import sqlite3

    db = tmp_path / "ledger.db"
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{db}", engine_kwargs={"connect_args": {"timeout": 0.2}}
    )
    study = optuna.create_study(storage=storage, study_name="locked")
    other = sqlite3.connect(db)
    other.execute("BEGIN EXCLUSIVE")  # the lock a busy writer holds
    try:
        with pytest.raises(optuna.exceptions.StorageInternalError) as refused:
            study.set_user_attr("a", 1)
    finally:
        other.rollback()
        other.close()
    assert "locked" not in str(refused.value)
    assert ledger.is_locked(refused.value)
    assert not ledger.is_locked(ValueError("some other failure"))
    study.set_user_attr("a", 1)  # the lock freed: the same write goes through
    assert study.user_attrs == {"a": 1}
