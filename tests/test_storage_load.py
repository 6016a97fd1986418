"""Eight sweepers at once on one ledger, on each storage a user may pick: SQLite, a journal file, a
real PostgreSQL server and a real MariaDB server (started here, see tests/db_servers.py).

Four random-search sweepers share one study of 100 trials and four grid sweepers share one study of
a 100-point grid, all eight started at once, two jobs each: 200 trials in all. Each study must end
with exactly its trials complete, no grid point run twice, no trial lost, left running or recorded
twice, and no sweeper crashed. The full-size measurement (more sweepers, latencies) is
benchmarks/storage_load_benchmark.py.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import optuna
import pytest
from optuna.trial import TrialState

from nemo_rl_sweep import ledger
from tests.conftest import _in_ci
from tests.helpers import TOY_APP
from tests.storage_load import Group, run_load

GROUPS = [Group("load-random", "random", 100, 4), Group("load-grid", "grid", 100, 4)]


@pytest.fixture(scope="session")
def database_server() -> Iterator[Callable[[str], object]]:
    """Start a server of a kind on first use (``postgres`` or ``mysql``); all stop at the end.

    Locally a server that cannot start (not root, no apt, no driver) skips with the reason; under
    CI it fails, so the server tests never silently go missing from a CI run.
    """
    from tests import db_servers

    servers: dict[str, db_servers.DatabaseServer] = {}

    def get(kind: str) -> db_servers.DatabaseServer:
        if kind not in servers:
            try:
                servers[kind] = db_servers.start(kind, die_with_parent=True)
            except (db_servers.DatabaseServerError, OSError) as e:
                reason = f"{kind} test server could not start: {e}"
                if _in_ci():
                    pytest.fail(reason + "\n(CI is set: the server tests must run)", pytrace=False)
                pytest.skip(reason)
        return servers[kind]

    yield get
    gone = {kind: db_servers.stop(server) for kind, server in servers.items()}
    assert all(gone.values()), f"database servers still alive after stop: {gone}"


@pytest.fixture(params=["sqlite", "journal", "postgres", "mysql"])
def storage(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    if request.param == "journal":
        return f"journal:{tmp_path / 'ledger.log'}"
    server = request.getfixturevalue("database_server")(request.param)
    return server.new_database("load_" + tmp_path.name[-20:].replace("-", "_").lower())


def test_eight_sweepers_at_once_lose_nothing_and_run_no_grid_point_twice(storage, tmp_path):
    run = run_load(GROUPS, storage, tmp_path)
    assert not run.problems(), "\n".join(run.problems())
    assert len(run.sweepers) == 8
    # every sweeper did some of the work: the load was shared, not run by one while others waited
    owners = {
        t.user_attrs["sweeper"]
        for trials in run.trials.values()
        for t in trials
        if not t.user_attrs.get("stale")
    }
    assert len(owners) >= 6, owners


def test_a_crowded_sqlite_ledger_says_so_and_loses_no_trial(tmp_path):
    """Another program holds the SQLite file's write lock while a trial runs: the sweeper says, with
    the storage's key, to use a server or a journal file, waits, and records every trial."""
    db = tmp_path / "ledger.db"
    url = f"sqlite:///{db}"
    log = tmp_path / "out.txt"
    args = [
        f"hydra.sweeper.storage={url}",
        "hydra.sweeper.study_name=crowded",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.seed=0",
        "sleep=3",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(TOY_APP), "--multirun", *args],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    _wait_until(lambda: _running(url) == 1, proc)
    crowd = sqlite3.connect(db, timeout=60)
    crowd.execute("BEGIN EXCLUSIVE")  # the lock a busy writer holds
    try:
        _wait_until(lambda: "is crowded" in log.read_text(), proc)
    finally:
        crowd.rollback()
        crowd.close()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    warning = next(line for line in log.read_text().splitlines() if "is crowded" in line)
    assert "Warning: hydra.sweeper.storage: the SQLite ledger" in warning
    assert "use a database server" in warning and "journal:" in warning
    trials = optuna.load_study(study_name="crowded", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3


def _running(url: str) -> int:
    try:  # through the ledger module, which takes turns with a sweeper creating the tables
        study = optuna.load_study(study_name="crowded", storage=ledger.open_storage(url))
    except KeyError:
        return 0
    return len(study.get_trials(states=(TrialState.RUNNING,)))


def _wait_until(cond, proc, bound_s: float = 300) -> None:
    """Poll ``cond``; a sweeper that ended, or a bound passed, fails instead of hanging."""
    deadline = time.monotonic() + bound_s
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.2)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_asks_on_a_server_take_turns_through_an_advisory_lock(database_server, kind):
    """While one sweeper asks and claims, another connection cannot take the same lock."""
    import sqlalchemy

    from nemo_rl_sweep import ledger

    url = database_server(kind).new_database("advisory")
    if kind == "postgres":
        try_lock = ("SELECT pg_try_advisory_lock(:k)", {"k": ledger.ASK_LOCK_KEY})
        unlock = ("SELECT pg_advisory_unlock(:k)", {"k": ledger.ASK_LOCK_KEY})
    else:
        try_lock = ("SELECT GET_LOCK(:n, 0)", {"n": ledger.ASK_LOCK_NAME})
        unlock = ("SELECT RELEASE_LOCK(:n)", {"n": ledger.ASK_LOCK_NAME})
    other = sqlalchemy.create_engine(url)
    with other.connect() as conn:
        with ledger.exclusive_ask(url):
            assert not conn.execute(sqlalchemy.text(try_lock[0]), try_lock[1]).scalar()
        assert conn.execute(sqlalchemy.text(try_lock[0]), try_lock[1]).scalar()
        conn.execute(sqlalchemy.text(unlock[0]), unlock[1])
    other.dispose()


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_sweepers_opening_a_new_server_ledger_at_once_all_open_it(database_server, kind):
    """Eight processes create the tables of an empty database at once (PostgreSQL once failed
    three of eight sweepers with "relation already exists"): every one opens the ledger."""
    url = database_server(kind).new_database("fresh")
    code = "import sys; from nemo_rl_sweep.ledger import open_storage; open_storage(sys.argv[1])"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(8)
    ]
    errors = [p.communicate()[1] for p in procs if p.wait() != 0]
    assert not errors, errors[0]
