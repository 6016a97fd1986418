"""A real one-node Slurm cluster for tests, run from one temporary folder.

Why: the sweeper runs trials as Slurm jobs through hydra-submitit-launcher, and the failure modes that
matter (a cancelled job, a job past its time limit, the sweeper dying while jobs run) only show up with
a real ``slurmctld``/``slurmd``. This module installs Debian's Slurm and munge when missing, writes a
``slurm.conf`` for this machine only, starts the daemons, waits until the node is idle, and stops
everything it started, job processes included, afterwards.

Nothing is shared with a system-wide Slurm, munge or MySQL: the munge socket and key, the database,
the state and spool folders, the logs and the TCP ports (picked free at start) all belong to the
cluster folder, so two test sessions on one machine do not collide.

Accounting is real: a private MariaDB server and ``slurmdbd`` run from the cluster folder too. That
costs a few seconds at start, but submitit learns the state of its jobs from ``sacct``; without
accounting a cancelled or timed-out job is never seen as finished and the launcher waits forever, so
tests of dead trials need it. (``sacct --completion`` over a text job-completion log was tried: it
does not understand job arrays, which the submitit launcher submits.)

Command line (for CI scripts and by hand)::

    python tests/slurm_cluster.py install               # apt-get install when missing
    python tests/slurm_cluster.py start [--dir DIR]     # prints `export SLURM_CONF=...`
    python tests/slurm_cluster.py status --dir DIR
    python tests/slurm_cluster.py stop --dir DIR
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PARTITION = "debug"
CLUSTER_NAME = "nemorlsweep"
PACKAGES = ("slurmctld", "slurmd", "slurmdbd", "munge", "mariadb-server")
# daemons in start order; they are stopped in reverse
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
COMMANDS = (*DAEMONS, "mariadb-install-db", "sbatch", "squeue", "sacct", "sacctmgr", "scontrol")
DB_USER, DB_PASS, DB_NAME = "slurm", "slurmtest", "slurm_acct_db"
STATE_FILE = "cluster.json"
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class SlurmClusterError(RuntimeError):
    """The cluster could not be installed, started or reached; the message says which step."""


@dataclass
class SlurmCluster:
    """A cluster folder and the daemons started from it."""

    root: Path
    conf: Path
    partition: str
    node: str
    cpus: int
    real_memory_mb: int
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    install_s: float = 0.0
    start_s: float = 0.0

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for Slurm commands and for processes that submit jobs."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """Run a Slurm client command (``sbatch``, ``squeue``...) against this cluster."""
        try:
            return subprocess.run(
                list(args),
                env=self.env(),
                capture_output=True,
                text=True,
                check=check,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.CalledProcessError as e:
            raise SlurmClusterError(
                f"`{' '.join(args)}` failed ({e.returncode}): {e.stderr.strip()}"
            ) from e

    def log(self, name: str) -> Path:
        """Log file of a daemon (``slurmctld``, ``slurmd``, ``slurmdbd``, ``mariadbd``, ``munged``)."""
        return self.root / "log" / f"{name}.log"

    def save(self) -> None:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}
        (self.root / STATE_FILE).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, root: Path) -> SlurmCluster:
        data = json.loads((Path(root) / STATE_FILE).read_text())
        data["root"], data["conf"] = Path(data["root"]), Path(data["conf"])
        return cls(**data)


# ----------------------------------------------------------------------------------------------
# install


def _which(name: str) -> str | None:
    """Find a binary also in sbin folders, which a non-login PATH may lack."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def _exe(name: str) -> str:
    path = _which(name)
    if path is None:
        raise SlurmClusterError(f"`{name}` not found; run `python {__file__} install` as root")
    return path


def missing_commands() -> list[str]:
    """Daemons and commands of the cluster that are not installed."""
    return [name for name in COMMANDS if _which(name) is None]


def ensure_installed() -> float:
    """``apt-get install`` the packages if any command is missing; return the seconds spent.

    Needs root (CI and the developer machines run as root). Debian's maintainer scripts do not
    start the services where policy-rc.d forbids it, and nothing here relies on them: the cluster
    runs its own daemons.
    """
    if not missing_commands():
        return 0.0
    if os.geteuid() != 0:
        raise SlurmClusterError(
            f"{', '.join(missing_commands())} missing and not root: "
            f"run `apt-get install -y {' '.join(PACKAGES)}` as root"
        )
    if shutil.which("apt-get") is None:
        raise SlurmClusterError("Slurm is not installed and there is no apt-get to install it")
    t0 = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
    ):
        proc = subprocess.run(
            cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1200
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise SlurmClusterError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{tail}")
    still = missing_commands()
    if still:
        raise SlurmClusterError(f"installed {' '.join(PACKAGES)} but {still} still missing")
    return time.monotonic() - t0


# ----------------------------------------------------------------------------------------------
# configuration


def _free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _hardware() -> dict[str, int]:
    """This node's layout as slurmd sees it (``slurmd -C``), so the node never goes INVALID."""
    out = subprocess.run([_exe("slurmd"), "-C"], capture_output=True, text=True, timeout=60).stdout
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    hw = {}
    for token in out.split():
        key, _, value = token.partition("=")
        if key in keys and value.isdigit():
            hw[key] = int(value)
    if "CPUs" not in hw or "RealMemory" not in hw:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        hw = {"CPUs": os.cpu_count() or 1, "RealMemory": int(mem)}
    return hw


def write_config(root: Path, node: str, ports: dict[str, int], hw: dict[str, int]) -> Path:
    """Write slurm.conf, slurmdbd.conf, the database bootstrap SQL and the munge key."""
    for sub in ("state", "spool", "log", "munge", "tmp", "db"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "munge", 0o700)
    key = root / "munge" / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    munge_socket = root / "munge" / "munge.socket"
    auth = ["AuthType=auth/munge", f"AuthInfo=socket={munge_socket}"]

    hw_fields = " ".join(
        f"{k}={hw[k]}"
        for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
        if k in hw
    )
    slurm_conf = [
        f"# one-node test cluster written by {Path(__file__).name}",
        f"ClusterName={CLUSTER_NAME}",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ports['slurmctld']}",
        f"SlurmdPort={ports['slurmd']}",
        *auth,
        "CredType=cred/munge",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        f"TmpFS={root / 'tmp'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        "SwitchType=switch/none",
        "MailProg=/bin/true",
        # accounting through our slurmdbd; no per-process sampling (no cgroups needed)
        "AccountingStorageType=accounting_storage/slurmdbd",
        "AccountingStorageHost=127.0.0.1",
        f"AccountingStoragePort={ports['slurmdbd']}",
        f"AccountingStoragePass={munge_socket}",  # with munge: the munge socket for slurmdbd
        "JobAcctGatherType=jobacct_gather/none",
        # schedule at once on every event; CPUs (not cores) are the unit: two 1-CPU jobs at once
        "SchedulerType=sched/builtin",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        # quick tests: short waits, a node that comes back is usable at once
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",
        "KillWait=2",
        "InactiveLimit=0",
        "MinJobAge=60",
        "MessageTimeout=10",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "UnkillableStepTimeout=30",
        f"NodeName={node} NodeAddr=127.0.0.1 {hw_fields} RealMemory={hw['RealMemory']} "
        "State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
    ]
    conf = root / "slurm.conf"
    conf.write_text("\n".join(slurm_conf) + "\n")

    # slurmdbd reads slurmdbd.conf next to SLURM_CONF; it must be private to SlurmUser
    dbd_conf = root / "slurmdbd.conf"
    dbd_conf.write_text(
        "\n".join(
            [
                *auth,
                f"DbdHost={node}",
                "DbdAddr=127.0.0.1",
                f"DbdPort={ports['slurmdbd']}",
                "SlurmUser=root",
                f"PidFile={root / 'slurmdbd.pid'}",
                f"LogFile={root / 'log' / 'slurmdbd.log'}",
                "DebugLevel=info",
                "StorageType=accounting_storage/mysql",
                "StorageHost=127.0.0.1",
                f"StoragePort={ports['mariadbd']}",
                f"StorageUser={DB_USER}",
                f"StoragePass={DB_PASS}",
                f"StorageLoc={DB_NAME}",
            ]
        )
        + "\n"
    )
    os.chmod(dbd_conf, 0o600)
    (root / "db-init.sql").write_text(
        f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASS}';\n"
        f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'127.0.0.1';\n"
    )
    return conf


# ----------------------------------------------------------------------------------------------
# processes

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the starting process dies (pytest killed)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _spawn(cmd: list[str], out: Path, env: dict[str, str], die_with_parent: bool) -> int:
    """Start a daemon in its own session, in the foreground mode, output to ``out``."""
    with open(out, "ab") as f:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    return proc.pid


def _alive(pid: int | None) -> bool:
    """Whether ``pid`` runs (a zombie child of ours is reaped and counts as dead)."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return f"({path.name} not written)"


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _wait(
    cluster: SlurmCluster, daemon: str, what: str, cond: Callable[[], bool], timeout_s: float
) -> None:
    """Poll ``cond`` until true; fail early, with the daemon's log, if the daemon died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        if not _alive(cluster.pids.get(daemon)):
            raise SlurmClusterError(
                f"{daemon} exited while waiting for {what}; end of its log:\n"
                + _tail(cluster.root / "log" / f"{daemon}.out")
                + "\n"
                + _tail(cluster.log(daemon))
            )
        time.sleep(0.25)
    raise SlurmClusterError(
        f"timed out after {timeout_s:.0f}s waiting for {what}; end of the {daemon} log:\n"
        + _tail(cluster.log(daemon))
    )


def _cluster_pids(conf: Path) -> list[int]:
    """Processes of this cluster: daemons, slurmstepd and job processes.

    They all carry ``SLURM_CONF=<this conf>`` in their environment (the daemons got it from us,
    slurmstepd from slurmd, jobs from the submitting process), which no other process has.
    """
    needle = b"\0SLURM_CONF=" + str(conf).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = b"\0" + f.read() + b"\0"
        except OSError:
            continue
        if needle in environ:
            found.append(int(entry))
    return found


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


# ----------------------------------------------------------------------------------------------
# start / stop / status

# a test ledger of a few jobs: small redo log and no doublewrite keep the folder small and fast
_DB_SIZE = ("--innodb-log-file-size=8M", "--innodb-doublewrite=0")


def start(
    root: Path | str | None = None,
    timeout_s: float = 120.0,
    install: bool = True,
    die_with_parent: bool = False,
) -> SlurmCluster:
    """Install if needed, write the configs, start the daemons and wait for an idle node.

    ``die_with_parent`` ties the daemons to the calling process (for a pytest session: if pytest
    is killed the daemons get SIGTERM). On any failure everything already started is stopped and
    SlurmClusterError says which step failed, with the end of that daemon's log.
    """
    install_s = ensure_installed() if install else 0.0
    if missing_commands():
        raise SlurmClusterError(f"not installed: {', '.join(missing_commands())}")
    t0 = time.monotonic()
    root = Path(root or tempfile.mkdtemp(prefix="slurm-test-")).resolve()
    if len(str(root / "munge" / "munge.socket")) > 100:  # sun_path holds 108 bytes
        root = Path(tempfile.mkdtemp(prefix="slurm-test-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    node = socket.gethostname().split(".")[0]
    ports = dict(zip(("slurmctld", "slurmd", "slurmdbd", "mariadbd"), _free_ports(4), strict=True))
    hw = _hardware()
    cluster = SlurmCluster(
        root=root,
        conf=write_config(root, node, ports, hw),
        partition=PARTITION,
        node=node,
        cpus=hw["CPUs"],
        real_memory_mb=hw["RealMemory"],
        ports=ports,
        install_s=install_s,
    )
    env = cluster.env()
    logs, munge, db = root / "log", root / "munge", root / "db"

    def spawn(name: str, cmd: list[str]) -> None:
        cluster.pids[name] = _spawn(cmd, logs / f"{name}.out", env, die_with_parent)
        cluster.save()

    try:
        spawn(
            "munged",
            [
                _exe("munged"),
                "--foreground",
                "--force",
                f"--socket={munge / 'munge.socket'}",
                f"--key-file={munge / 'munge.key'}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--log-file={cluster.log('munged')}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )
        if not (db / "mysql").exists():
            proc = subprocess.run(
                [
                    _exe("mariadb-install-db"),
                    "--no-defaults",
                    f"--datadir={db}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                    *_DB_SIZE,
                ],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                stdin=subprocess.DEVNULL,
            )
            if proc.returncode != 0:
                raise SlurmClusterError(
                    f"mariadb-install-db failed:\n{(proc.stdout + proc.stderr)[-2000:]}"
                )
        spawn(
            "mariadbd",
            [
                _exe("mariadbd"),
                "--no-defaults",
                f"--datadir={db}",
                f"--socket={root / 'mysqld.sock'}",
                f"--port={ports['mariadbd']}",
                "--bind-address=127.0.0.1",
                "--user=root",
                f"--pid-file={root / 'mariadbd.pid'}",
                f"--log-error={cluster.log('mariadbd')}",
                f"--init-file={root / 'db-init.sql'}",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                *_DB_SIZE,
            ],
        )
        _wait(
            cluster,
            "munged",
            "the munge socket",
            lambda: (munge / "munge.socket").exists(),
            timeout_s,
        )
        _wait(
            cluster,
            "mariadbd",
            "MariaDB to accept connections",
            lambda: (
                "ready for connections" in _tail(cluster.log("mariadbd"), 200)
                and _port_open(ports["mariadbd"])
            ),
            timeout_s,
        )
        spawn("slurmdbd", [_exe("slurmdbd"), "-D"])
        _wait(
            cluster,
            "slurmdbd",
            "slurmdbd to answer `sacctmgr list cluster`",
            lambda: (
                _port_open(ports["slurmdbd"])
                and cluster.run("sacctmgr", "-n", "-P", "list", "cluster", check=False).returncode
                == 0
            ),
            timeout_s,
        )
        listed = cluster.run("sacctmgr", "-n", "-P", "list", "cluster", "format=cluster").stdout
        if CLUSTER_NAME not in listed.split():
            cluster.run("sacctmgr", "-i", "add", "cluster", CLUSTER_NAME)
        spawn("slurmctld", [_exe("slurmctld"), "-D", "-f", str(cluster.conf)])
        _wait(
            cluster,
            "slurmctld",
            "slurmctld to answer `scontrol ping`",
            lambda: cluster.run("scontrol", "ping", check=False).returncode == 0,
            timeout_s,
        )
        spawn("slurmd", [_exe("slurmd"), "-D", "-N", node, "-f", str(cluster.conf)])
        _wait(
            cluster,
            "slurmd",
            "the node to be idle",
            lambda: node_state(cluster) == "idle",
            timeout_s,
        )
    except BaseException:
        stop(cluster)
        raise
    cluster.start_s = time.monotonic() - t0
    cluster.save()
    return cluster


def node_state(cluster: SlurmCluster) -> str:
    """The node's state as sinfo prints it (``idle``, ``mixed``, ``down*``...), or ''."""
    proc = cluster.run("sinfo", "-h", "-N", "-n", cluster.node, "-o", "%T", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def stop(cluster: SlurmCluster, grace_s: float = 10.0) -> list[str]:
    """Cancel all jobs, stop the daemons in reverse start order, kill left-over job processes.

    Returns the names of daemons still alive afterwards (empty when all went away).
    """
    if _alive(cluster.pids.get("slurmctld")):
        cluster.run("scancel", "--partition", cluster.partition, check=False)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            queue = cluster.run("squeue", "-h", "-o", "%i", check=False)
            if queue.returncode != 0 or not queue.stdout.strip():
                break
            time.sleep(0.25)
    for name in reversed(DAEMONS):
        pid = cluster.pids.get(name)
        if not _alive(pid):
            continue
        _kill([pid], signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            _kill([pid], signal.SIGKILL)
    leftovers = [p for p in _cluster_pids(cluster.conf) if _alive(p)]
    if leftovers:
        _kill(leftovers, signal.SIGTERM)
        time.sleep(1.0)
        _kill([p for p in leftovers if _alive(p)], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in [*cluster.pids.values(), *leftovers]):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return [name for name, pid in cluster.pids.items() if _alive(pid)]


def remove_database(cluster: SlurmCluster) -> None:
    """Delete the stopped cluster's MariaDB folder (~100 MB); logs and configs stay for a look."""
    if not _alive(cluster.pids.get("mariadbd")):
        shutil.rmtree(cluster.root / "db", ignore_errors=True)


def status(cluster: SlurmCluster) -> dict[str, object]:
    """Which daemons live, the node state and the queue."""
    info: dict[str, object] = {"root": str(cluster.root), "conf": str(cluster.conf)}
    info["daemons"] = {name: _alive(pid) for name, pid in cluster.pids.items()}
    if _alive(cluster.pids.get("slurmctld")):
        info["node"] = node_state(cluster)
        queue = cluster.run("squeue", "-h", "-o", "%i %T %j", check=False).stdout
        info["queue"] = queue.splitlines()
    return info


# ----------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["install", "start", "stop", "status"])
    parser.add_argument(
        "--dir", type=Path, help="cluster folder (start: default a new temp folder)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per start step")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            print(f"install: {ensure_installed():.1f}s")
            return 0
        if args.command == "start":
            cluster = start(args.dir, timeout_s=args.timeout)
            print(
                f"# started in {cluster.start_s:.1f}s (install {cluster.install_s:.1f}s); "
                f"stop with: python {__file__} stop --dir {cluster.root}",
                file=sys.stderr,
            )
            print(f"export SLURM_CONF={cluster.conf}")
            return 0
        if args.dir is None:
            parser.error(f"{args.command} needs --dir")
        cluster = SlurmCluster.load(args.dir)
        if args.command == "stop":
            alive = stop(cluster)
            print("stopped" + (f"; still alive: {', '.join(alive)}" if alive else ""))
            return 1 if alive else 0
        print(json.dumps(status(cluster), indent=1))
        return 0
    except SlurmClusterError as e:
        print(f"slurm test cluster: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
