"""Eight sweepers at once on one ledger, on each storage a user may pick: SQLite, a journal file, a
real PostgreSQL server and a real MariaDB server (started here, see tests/db_servers.py).

Four random-search sweepers share one study of 100 trials and four grid sweepers share one study of
a 100-point grid, all eight started at once, two jobs each: 200 trials in all. Each study must end
with exactly its trials complete, no grid point run twice, no trial lost, left running or recorded
twice, and no sweeper crashed. The full-size measurement (more sweepers, latencies) is
benchmarks/storage_load_benchmark.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conftest import _in_ci
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
