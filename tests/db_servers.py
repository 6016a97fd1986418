"""Real PostgreSQL and MariaDB servers for ledger tests, each run from its own temporary folder.

Why: users share one study between sweepers through a database server, and what a server does under
many sweepers at once (row locks, deadlocks, connection limits) shows only with a real one. As the
Slurm test cluster (``tests/slurm_cluster.py``), this installs Debian's packages when missing, makes a
private data folder (``initdb`` / ``mariadb-install-db``), starts the server on a free TCP port of
127.0.0.1, and stops it afterwards. Nothing is shared with a system-wide server.

PostgreSQL refuses to run as root, so when run as root its folder belongs to the ``postgres`` user the
Debian package creates, and the server runs as that user.

Command line (by hand)::

    python tests/db_servers.py start postgres      # prints the URL of a fresh database
    python tests/db_servers.py stop --dir DIR
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.slurm_cluster import _alive, _die_with_parent, _free_ports, _port_open, _tail

KINDS = ("postgres", "mysql")
PACKAGES = {"postgres": ("postgresql",), "mysql": ("mariadb-server",)}
DB_USER, DB_PASS = "sweep", "sweeptest"
STATE_FILE = "server.json"


class DatabaseServerError(RuntimeError):
    """The server could not be installed, started or reached; the message says which step."""


@dataclass
class DatabaseServer:
    """A running server: its kind, folder, port and pid."""

    kind: str
    root: Path
    port: int
    pid: int = 0
    start_s: float = 0.0
    install_s: float = 0.0
    databases: list[str] = field(default_factory=list)

    def url(self, database: str) -> str:
        """A SQLAlchemy URL of ``database`` on this server (created by ``new_database``)."""
        if self.kind == "postgres":
            return f"postgresql+psycopg2://{DB_USER}:{DB_PASS}@127.0.0.1:{self.port}/{database}"
        return f"mysql+pymysql://{DB_USER}:{DB_PASS}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        """Create an empty database and return its URL: each test gets its own ledger."""
        if self.kind == "postgres":
            import psycopg2

            conn = psycopg2.connect(
                host="127.0.0.1", port=self.port, user=DB_USER, password=DB_PASS, dbname="postgres"
            )
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
                cur.execute(f'CREATE DATABASE "{name}"')
            conn.close()
        else:
            import pymysql

            conn = pymysql.connect(
                host="127.0.0.1", port=self.port, user=DB_USER, password=DB_PASS, autocommit=True
            )
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                cur.execute(f"CREATE DATABASE `{name}`")
            conn.close()
        self.databases.append(name)
        return self.url(name)

    def log(self) -> Path:
        return self.root / "server.log"

    def save(self) -> None:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}
        (self.root / STATE_FILE).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, root: Path) -> DatabaseServer:
        data = json.loads((Path(root) / STATE_FILE).read_text())
        data["root"] = Path(data["root"])
        return cls(**data)


# ----------------------------------------------------------------------------------------------
# install


def _postgres_bin(name: str) -> str | None:
    """Debian keeps PostgreSQL's server programs in /usr/lib/postgresql/<version>/bin."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _mysql_bin(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))


def _programs(kind: str) -> dict[str, str | None]:
    if kind == "postgres":
        return {name: _postgres_bin(name) for name in ("initdb", "postgres")}
    return {name: _mysql_bin(name) for name in ("mariadb-install-db", "mariadbd")}


def _driver_missing(kind: str) -> str | None:
    module, extra = ("psycopg2", "postgres") if kind == "postgres" else ("pymysql", "mysql")
    try:
        __import__(module)
    except ImportError:
        return f"the driver {module} is not installed: pip install -e '.[{extra}]'"
    return None


def ensure_installed(kind: str) -> float:
    """``apt-get install`` the server when a program is missing (needs root); the seconds spent."""
    if all(_programs(kind).values()):
        return 0.0
    missing = [name for name, path in _programs(kind).items() if path is None]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DatabaseServerError(
            f"{', '.join(missing)} missing: run `apt-get install -y {' '.join(PACKAGES[kind])}` "
            "as root"
        )
    t0 = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES[kind]],
    ):
        proc = subprocess.run(
            cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1200
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise DatabaseServerError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{tail}")
    if not all(_programs(kind).values()):
        raise DatabaseServerError(f"installed {PACKAGES[kind]} but {_programs(kind)} incomplete")
    return time.monotonic() - t0


# ----------------------------------------------------------------------------------------------
# start / stop


def _run(cmd: list[str], what: str, user: str | None = None, timeout: float = 120) -> None:
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        user=user,
    )
    if proc.returncode != 0:
        raise DatabaseServerError(f"{what} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")


def _spawn(cmd: list[str], log: Path, user: str | None, die_with_parent: bool) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    return proc.pid


def _server_user(kind: str) -> str | None:
    """PostgreSQL will not run as root: as root, run it as Debian's ``postgres`` user."""
    if kind != "postgres" or os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as e:
        raise DatabaseServerError("running as root and there is no `postgres` user") from e
    return "postgres"


def start(
    kind: str,
    root: Path | str | None = None,
    timeout_s: float = 120.0,
    die_with_parent: bool = False,
) -> DatabaseServer:
    """Install if needed, make a data folder, start the server, wait until it takes connections."""
    if kind not in KINDS:
        raise DatabaseServerError(f"unknown server kind {kind!r}; one of {KINDS}")
    install_s = ensure_installed(kind)
    missing_driver = _driver_missing(kind)
    if missing_driver:
        raise DatabaseServerError(missing_driver)
    t0 = time.monotonic()
    # not under pytest's 0700 temp folders: the postgres user must reach its data folder
    root = Path(root or tempfile.mkdtemp(prefix=f"{kind}-test-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    user = _server_user(kind)
    if user is not None:
        shutil.chown(root, user=user)
    server = DatabaseServer(kind, root, _free_ports(1)[0], install_s=install_s)
    data = root / "data"
    progs = _programs(kind)
    try:
        if kind == "postgres":
            pwfile = root / "pw"
            pwfile.write_text(DB_PASS + "\n")
            if user is not None:
                shutil.chown(pwfile, user=user)
            _run(
                [
                    str(progs["initdb"]),
                    "-D",
                    str(data),
                    "-U",
                    DB_USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ],
                "initdb",
                user=user,
            )
            cmd = [
                str(progs["postgres"]),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-k",
                str(root),
                "-c",
                "max_connections=200",
                "-c",
                "fsync=off",
            ]
        else:
            (root / "init.sql").write_text(
                f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASS}';\n"
                f"GRANT ALL ON *.* TO '{DB_USER}'@'127.0.0.1';\n"
            )
            _run(
                [
                    str(progs["mariadb-install-db"]),
                    "--no-defaults",
                    f"--datadir={data}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                    "--innodb-log-file-size=8M",
                ],
                "mariadb-install-db",
            )
            cmd = [
                str(progs["mariadbd"]),
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={root / 'mysqld.sock'}",
                f"--port={server.port}",
                "--bind-address=127.0.0.1",
                "--user=root",
                f"--pid-file={root / 'mariadbd.pid'}",
                f"--init-file={root / 'init.sql'}",
                "--skip-log-bin",
                "--max-connections=200",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=8M",
                "--innodb-flush-log-at-trx-commit=0",
            ]
        server.pid = _spawn(cmd, server.log(), user, die_with_parent)
        server.save()
        deadline = time.monotonic() + timeout_s
        while not _ready(server):
            if not _alive(server.pid):
                raise DatabaseServerError(f"{kind} exited; end of its log:\n{_tail(server.log())}")
            if time.monotonic() > deadline:
                raise DatabaseServerError(
                    f"{kind} not ready after {timeout_s:.0f}s:\n{_tail(server.log())}"
                )
            time.sleep(0.25)
    except BaseException:
        stop(server)
        raise
    server.start_s = time.monotonic() - t0
    server.save()
    return server


def _ready(server: DatabaseServer) -> bool:
    """The server takes a login (an open port alone is not enough: MariaDB runs its init file)."""
    if not _port_open(server.port):
        return False
    try:
        server.new_database("ready_check")
    except Exception:  # the drivers raise their own types while the server starts
        return False
    return True


def stop(server: DatabaseServer, grace_s: float = 20.0) -> bool:
    """Stop the server (SIGTERM, then SIGKILL) and remove its data; True when it is gone."""
    if _alive(server.pid):
        # PostgreSQL's SIGTERM waits for its clients to leave; SIGINT is its fast shutdown
        os.kill(server.pid, signal.SIGINT if server.kind == "postgres" else signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while _alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(server.pid):
            os.kill(server.pid, signal.SIGKILL)
            time.sleep(0.5)
    gone = not _alive(server.pid)
    if gone:
        shutil.rmtree(server.root / "data", ignore_errors=True)
    return gone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("kind", nargs="?", choices=KINDS)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            if args.kind is None:
                parser.error("start needs a kind")
            server = start(args.kind, args.dir)
            print(server.new_database("sweeps"))
            print(f"# stop with: python {__file__} stop --dir {server.root}", file=sys.stderr)
            return 0
        if args.dir is None:
            parser.error("stop needs --dir")
        return 0 if stop(DatabaseServer.load(args.dir)) else 1
    except DatabaseServerError as e:
        print(f"database test server: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
