"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# ------------------------------------------------------------------------------------------------
# BEGIN slurm_cluster fixture (tests/slurm_cluster.py; owned by the Slurm test-cluster work, issue 6)
#
# A real one-node Slurm cluster, started once per session. Locally it is skipped, with the reason,
# when it cannot start (not root, no apt, a daemon refuses to run); under CI (env CI set) that is a
# failure instead, so the Slurm tests never silently go missing from a CI run.


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Start the cluster, point ``SLURM_CONF`` at it for the tests and their subprocesses.

    Yields a ``tests.slurm_cluster.SlurmCluster`` (``.conf``, ``.partition``, ``.node``, ``.cpus``,
    ``.run(*cmd)``, ``.log(daemon)``); everything is stopped at the end of the session.
    """
    from tests import slurm_cluster as sc

    try:
        cluster = sc.start(tmp_path_factory.mktemp("slurm"), die_with_parent=True)
    except (sc.SlurmClusterError, OSError) as e:
        reason = f"Slurm test cluster could not start: {e}"
        if _in_ci():
            pytest.fail(reason + "\n(CI is set: the Slurm tests must run here)", pytrace=False)
        pytest.skip(reason)
    print(
        f"\nSlurm test cluster up in {cluster.start_s:.1f}s (install {cluster.install_s:.1f}s), "
        f"folder {cluster.root}"
    )
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        alive = sc.stop(cluster)
        sc.remove_database(cluster)
        assert not alive, f"Slurm daemons still alive after stop: {alive}"


# END slurm_cluster fixture
# ------------------------------------------------------------------------------------------------
