"""The ledger: every trial of every strategy is a trial of one Optuna study in a storage.

One ledger gives resume after a crash (finished trials are read back, not re-run), several sweepers on
one study (Optuna's storage hands each enqueued trial to one worker), pruning (jobs report to the
same trial), optuna-dashboard and Optuna's plots. The default storage is a SQLite file next to the
sweep folders, so it survives the process and the same command resumes the same study.

Every use of Optuna's private API (a trial's storage id, the study's storage) is in this module, behind
named functions, so an Optuna upgrade that moves them is fixed here. It imports nothing of the sweep
but its errors.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep.errors import SweepConfigError

DEFAULT_LEDGER_FILE = "nemo_rl_sweep.db"
SQLITE_TIMEOUT_S = 120  # how long a SQLite write waits for the file's lock before it fails
SLOW_LEDGER_S = 10.0  # a SQLite step that waits this long says so (long before it would fail)

# user attribute names, shared with the report and the dashboard
ATTR_OVERRIDES = "overrides"
ATTR_JOB_DIR = "job_dir"
ATTR_METRICS = "metrics"
ATTR_FAIL_REASON = "fail_reason"
ATTR_FAIL_KIND = (
    "fail_kind"  # objectives.FailureKind's value: why, for code; the reason is for people
)
ATTR_DURATION = "duration_s"
ATTR_STALE = "stale"
ATTR_OWNER = "sweeper"
ATTR_COPIED_FROM = "copied_from"  # warm start: "<study>#<number>" of the trial copied
ATTR_CONFIRMATION = "confirmation"  # a re-run of a search configuration with a new seed
ATTR_SLURM_JOB = "slurm_job_id"  # the ray.sub trial mode: the Slurm job that runs the trial
ATTR_HEARTBEAT = (
    "nemo_rl_sweep.heartbeat"  # system attr: a journal trial's last heartbeat (epoch s)
)
STUDY_ATTR_STRATEGY = "nemo_rl_sweep.strategy"
STUDY_ATTR_SPACE = "nemo_rl_sweep.search_space"
STUDY_ATTR_FREED_BYTES = "nemo_rl_sweep.checkpoints_freed_bytes"  # trainer.checkpoints=best|none

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def default_storage_url(root: str | os.PathLike[str]) -> str:
    return "sqlite:///" + str((Path(root) / DEFAULT_LEDGER_FILE).resolve())


def absolute_storage_url(url: str, base_dir: str | os.PathLike[str]) -> str:
    """Relative SQLite and journal paths are made absolute, so jobs that change folder find the file."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///") :]
        if rel and rel != ":memory:":
            return "sqlite:///" + str((Path(base_dir) / rel).resolve())
    if url.startswith("journal:"):
        path = Path(url[len("journal:") :])
        return "journal:" + str(path if path.is_absolute() else (Path(base_dir) / path).resolve())
    return url


@dataclass(frozen=True)
class HeartbeatTiming:
    """How often a sweeper says its running trials are alive, and how long silence means dead."""

    interval_s: int
    grace_s: int


def open_storage(
    url: str, heartbeat: HeartbeatTiming | None = None, *, check: bool = False
) -> BaseStorage:
    """An Optuna storage for ``url``: any SQLAlchemy URL, or ``journal:<file>`` for a journal file.

    SQLite gets a long lock timeout because jobs write intermediate values while the sweeper writes
    results; a journal file is the safer choice on a shared cluster file system. With ``heartbeat``
    a database storage (SQLite included) runs Optuna's own heartbeat (``heartbeat_interval``,
    ``grace_period``), timed by the database's clock, so hosts whose clocks differ agree. ``check``
    (the sweeper, before any job): a ledger file must be writable, sound and not held by another
    program.
    """
    if not isinstance(url, str) or not url.strip():
        raise SweepConfigError(
            "hydra.sweeper.storage",
            f"{url!r} is not a storage URL",
            "use sqlite:///path/to/ledger.db, another SQLAlchemy URL, or journal:/path/to/file.log",
        )
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len("journal:") :])
        if not path.parent.is_dir():
            raise SweepConfigError(
                "hydra.sweeper.storage",
                f"folder {path.parent} of the journal file does not exist",
                "create it or point the journal elsewhere",
            )
        try:
            if check:
                check_writable_folder(
                    path.parent, "hydra.sweeper.storage", f"the ledger's folder {path.parent}"
                )
                with open(path, "ab"):  # appending nothing: writable, and left as it was
                    pass
            return JournalStorage(JournalFileBackend(str(path)))
        except SweepConfigError:
            raise
        except OSError as exc:
            raise _unwritable(str(path), exc) from None
        except Exception as exc:  # a journal Optuna cannot replay
            raise _corrupt(str(path), _first_line(exc)) from None
    if "://" not in url:
        raise SweepConfigError(
            "hydra.sweeper.storage",
            f"{url!r} is not a URL",
            "use sqlite:///path/to/ledger.db, another SQLAlchemy URL, or journal:/path/to/file.log",
        )
    path = _file_of(url) if url.startswith("sqlite:///") else None
    if path is not None:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unwritable(path, exc) from None
        if check:
            check_sqlite_file(path)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    if heartbeat is not None:
        kwargs["heartbeat_interval"] = heartbeat.interval_s
        kwargs["grace_period"] = heartbeat.grace_s
    try:
        with _creation_lock(url):
            return _rdb_storage(url, kwargs)
    except Exception as exc:  # SQLAlchemy raises many types; the first line says which
        first = _first_line(exc)
        if "no longer compatible with the table schema" in first or "revision" in first:
            raise SweepConfigError(
                "hydra.sweeper.storage",
                f"the ledger {url!r} was written by another Optuna version than {optuna.__version__}"
                f" ({first})",
                "run the Optuna that wrote it (pip install -U optuna), or use a new storage file; "
                "the ledger was left as it was",
            ) from None
        if _says_disk_full(first):
            raise SweepConfigError(
                "hydra.sweeper.storage",
                f"the disk of {url!r} is full ({first})",
                "free space on it, or point hydra.sweeper.storage elsewhere",
            ) from None
        raise SweepConfigError(
            "hydra.sweeper.storage", f"cannot open {url!r} ({first})", "check the URL and driver"
        ) from None


LOCK_WAIT_ENV = (
    "NEMO_RL_SWEEP_LEDGER_LOCK_WAIT_S"  # how long to wait for a ledger another program holds
)


def check_sqlite_file(path: str) -> None:
    """A SQLite ledger is checked before Optuna opens it, reading only: its folder takes files
    (SQLite's journal, our lock files), the file is a sound database whose write lock we can get
    within ``NEMO_RL_SWEEP_LEDGER_LOCK_WAIT_S`` (default 30 s; our own jobs hold it for
    milliseconds). Otherwise one ``Error:`` line, and the file stays byte for byte as it was."""
    import sqlite3

    folder = Path(path).parent
    check_writable_folder(folder, "hydra.sweeper.storage", f"the ledger's folder {folder}")
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    if not os.access(path, os.W_OK):
        raise _unwritable(path, PermissionError(13, "the file is read-only"))
    wait = float(os.environ.get(LOCK_WAIT_ENV, "30"))
    conn = sqlite3.connect(path, timeout=wait, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")  # the write lock a tell takes; released unused at once
        check = conn.execute("PRAGMA quick_check").fetchone()
        conn.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise SweepConfigError(
                "hydra.sweeper.storage",
                f"the ledger {path} is locked by another program (waited {wait:g} s)",
                "end the program holding it (a sqlite3 shell in a transaction, a backup tool), "
                f"or wait longer with {LOCK_WAIT_ENV}",
            ) from None
        if "readonly" in text or "read-only" in text:
            raise _unwritable(path, PermissionError(30, text)) from None
        raise _corrupt(path, text) from None
    finally:
        conn.close()
    if check and check[0] != "ok":
        raise _corrupt(path, str(check[0]))


def check_writable_folder(folder: str | os.PathLike[str], key: str, what: str) -> None:
    """A folder the sweep will write in takes a file (64 KiB, synced to disk), or one ``Error:``
    line: a read-only or full disk is found before any job starts, not by a job or a ``tell``.
    The probe leaves no trace: its file and any folder it had to create are removed."""
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    probe = folder / f".nemo_rl_sweep_probe.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        full = exc.errno == errno.ENOSPC
        raise SweepConfigError(
            key,
            f"cannot write in {what} ({'the disk is full' if full else exc.strerror})",
            "free space on that disk, or choose a folder on another one"
            if full
            else "make it writable, or choose another folder",
        ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
        for created in missing:  # deepest first
            with contextlib.suppress(OSError):
                created.rmdir()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _unwritable(path: str, exc: OSError) -> SweepConfigError:
    reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return SweepConfigError(
        "hydra.sweeper.storage",
        f"cannot write the ledger {path} ({reason})",
        "make it (and its folder) writable, or point hydra.sweeper.storage at another file",
    )


def _corrupt(path: str, reason: str) -> SweepConfigError:
    return SweepConfigError(
        "hydra.sweeper.storage",
        f"the ledger {path} is damaged ({reason})",
        "restore it from a backup, or point hydra.sweeper.storage at a new file; "
        "it was left as it was",
    )


def _rdb_storage(url: str, kwargs: dict[str, Any], attempts: int = 5) -> BaseStorage:
    """RDBStorage, retried: another process (a dashboard, a job) may be creating the same tables."""
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    """Sweepers started at once on a new ledger would all create its tables (on PostgreSQL the
    losers fail with "relation already exists"); take turns: a file lock beside a new SQLite file,
    the server's advisory lock on a database server."""
    path = _file_of(url)
    if path is None:
        with _server_lock(url):
            yield
        return
    if os.path.exists(path) and os.path.getsize(path) > 0:
        yield
        return
    with _file_lock(path + ".lock"):
        yield


@contextlib.contextmanager
def exclusive_ask(url: str) -> Iterator[None]:
    """Take turns with every other sweeper of this ledger: hand out and claim trials one at a time.

    Optuna's ``study.ask`` takes a waiting (enqueued) trial by reading its state and then writing
    RUNNING; a database server locks the row between the two, SQLite and a journal file do not, so
    two sweepers could both take the same trial. And a claim (a grid point, the budget's last
    trial) is judged on the trials asked before it, so two sweepers judging at once can both
    accept: a grid point run twice. So the asks, and the claims judged right after them, of all
    processes take turns: a file lock beside a SQLite or journal file, an advisory lock of the
    database server (PostgreSQL ``pg_advisory_lock``, MySQL/MariaDB ``GET_LOCK``), which the
    server releases itself if the sweeper dies.
    """
    with warnings.catch_warnings():
        # the sweeper beats for its trials itself (``Heartbeat``), not through Study.optimize
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        path = _file_of(url)
        if path is not None:
            with _file_lock(path + ".ask.lock"):
                yield
        else:
            with _server_lock(url):
                yield


_LOCK_ENGINES: dict[str, Any] = {}
ASK_LOCK_NAME = "nemo_rl_sweep.ask"  # MySQL/MariaDB GET_LOCK name
ASK_LOCK_KEY = int(hashlib.sha1(ASK_LOCK_NAME.encode()).hexdigest()[:15], 16)  # PostgreSQL bigint


@contextlib.contextmanager
def _server_lock(url: str) -> Iterator[None]:
    """A lock of the whole database held by one connection (none for other servers)."""
    dialect = url.split("://", 1)[0].split("+", 1)[0]
    if dialect not in ("postgresql", "mysql", "mariadb"):
        yield
        return
    import sqlalchemy

    engine = _LOCK_ENGINES.get(url)
    if engine is None:
        engine = _LOCK_ENGINES[url] = sqlalchemy.create_engine(url, pool_pre_ping=True)
    with engine.connect() as conn:
        if dialect == "postgresql":
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": ASK_LOCK_KEY})
            release = ("SELECT pg_advisory_unlock(:k)", {"k": ASK_LOCK_KEY})
        else:
            # MariaDB takes no "wait forever" (-1 returns NULL at once): wait a minute at a time
            get = sqlalchemy.text("SELECT GET_LOCK(:n, 60)")
            while conn.execute(get, {"n": ASK_LOCK_NAME}).scalar() != 1:
                pass
            release = ("SELECT RELEASE_LOCK(:n)", {"n": ASK_LOCK_NAME})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text(release[0]), release[1])
            conn.commit()


def unwritable_text(exc: BaseException) -> str | None:
    """What to say when the ledger stops taking writes in the middle of a sweep (its disk filled
    or turned read-only), or None for any other error. What it recorded before stays in it."""
    problem = None
    for link in _exception_chain(exc):
        first = _first_line(link)
        errno_of = link.errno if isinstance(link, OSError) else None
        if _says_disk_full(first) or errno_of == errno.ENOSPC:
            problem = "its disk is full"
        elif "readonly database" in first or errno_of == errno.EROFS:
            problem = "it became read-only"
        if problem is not None:
            break
    if problem is None:
        return None
    return (
        f"hydra.sweeper.storage: the ledger could not be written during the sweep: {problem} "
        f"({first}); every trial it recorded before is kept. Fix: free space on its disk (or make "
        "it writable), then run the same command to resume: the trials that were running are run "
        "again"
    )


def _says_disk_full(text: str) -> bool:
    """SQLite's ("database or disk is full") and the OS's ("No space left on device") words."""
    return "disk is full" in text or "No space left" in text


def is_locked(exc: BaseException) -> bool:
    """SQLite's own word for a write that waited for the file lock in vain, in ``exc`` or in what
    it was raised from: Optuna wraps a failed commit in ``StorageInternalError`` ("An exception is
    raised during the commit ..."), whose cause holds SQLite's words. SQLite also answers "locked"
    at once, without waiting, to a read that tries to become a write while another connection
    holds the lock (its deadlock guard), so such a write fails in milliseconds, not after the
    timeout."""
    return any("database is locked" in str(link) for link in _exception_chain(exc))


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from, outermost first (Optuna wraps SQLAlchemy, which wraps
    sqlite3); at most 10 links, so a cycle of causes cannot loop."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(chain) < 10:
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain


def crowded_text(url: str, what: str, exc: BaseException | None) -> str | None:
    """What to say when a SQLite ledger keeps a sweeper waiting (None for other storages): SQLite
    lets one process write at a time, and many sweepers with their jobs queue for it."""
    if not url.startswith("sqlite"):
        return None
    if exc is None:
        problem = f"a {what} has waited over {SLOW_LEDGER_S:.0f} s for the file's lock"
    else:
        problem = f"a {what} failed after {SQLITE_TIMEOUT_S} s: database is locked"
    return (
        f"hydra.sweeper.storage: the SQLite ledger {url} is crowded ({problem}); SQLite does not "
        "hold this many sweepers and jobs at once. Fix: use a database server "
        "(postgresql+psycopg2://... with pip install '.[postgres]', mysql+pymysql://... with "
        "'.[mysql]') or a journal file (journal:/path/to/ledger.log)"
    )


def _file_of(url: str) -> str | None:
    """The file behind a SQLite or journal URL (None for a server or an in-memory database)."""
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix):
            path = url[len(prefix) :]
            return path if path and path != ":memory:" else None
    return None


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    import fcntl

    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def default_study_name(task_name: str, strategy: str, identity: Mapping[str, Any]) -> str:
    """Same command, same study (so re-running resumes); a changed space or objective, a new one."""
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return f"{task_name}-{strategy}-{digest[:8]}"


def open_study(
    storage: BaseStorage,
    study_name: str,
    directions: Sequence[str],
    metric_names: Sequence[str],
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the study, or load it if it exists, refusing one whose objectives differ."""
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    if study_name in existing:
        study = optuna.load_study(
            study_name=study_name, storage=storage, sampler=sampler, pruner=pruner
        )
        have = [d.name.lower() for d in study.directions]
        names = study.metric_names
        if have != list(directions) or (names is not None and list(names) != list(metric_names)):
            raise SweepConfigError(
                "hydra.sweeper.study_name",
                f"study {study_name!r} already exists with objectives "
                f"{list(names or [])} {have}, not {list(metric_names)} {list(directions)}",
                "pick another study_name, or the same metric and direction as before",
            )
        return study
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        directions=list(directions),
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(metric_names))
    return study


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "-"


def owner_tag() -> str:
    """Who runs a trial: host, boot and pid, so a sweeper that died (or a host that rebooted) shows."""
    return f"{socket.gethostname()}:{_boot_id()}:{os.getpid()}"


def _owner_is_dead(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    boot, _, pid = rest.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another host's sweeper: its own resume or heartbeat decides
    if boot and boot != _boot_id():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fail_stale_trials(study: optuna.Study, heartbeat: Heartbeat | None = None) -> list[FrozenTrial]:
    """Mark RUNNING trials whose sweeper is gone as failed (and stale, so they are re-run).

    A trial belongs to the sweeper that asked for it (host and pid). On this host a sweeper is gone
    when its process is; on any host, with heartbeats on, when it has been silent for longer than
    the grace period. Trials of a live sweeper, here or on another host, are left alone: they are
    another sweeper's work in progress; so are this sweeper's own (``heartbeat``'s).
    """
    silent = heartbeat.silent_trial_ids() if heartbeat is not None else set()
    stale = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(ATTR_OWNER)
        if owner and _owner_is_dead(owner):
            reason = "its sweeper stopped while the trial was running (a grid point runs again)"
        elif trial._trial_id in silent and not trial.user_attrs.get(ATTR_SLURM_JOB):
            # a silent sweeper's Slurm job may still run: only a sweeper that can watch it takes
            # it over (orphaned_slurm_trials), none fails it from afar
            reason = (
                f"its sweeper ({owner or 'unknown'}) sent no heartbeat for over "
                f"{heartbeat.timing.grace_s} s while the trial was running (a grid point runs "
                "again)"
            )
        else:
            continue
        if mark_stale(study, trial, reason):
            stale.append(trial)
    return stale


def orphaned_slurm_trials(
    study: optuna.Study, silent: Collection[int] = frozenset()
) -> list[FrozenTrial]:
    """RUNNING trials whose sweeper died while their own Slurm job (ray.sub trial mode) may still
    run: a new sweeper takes them over (``take_over``) and watches the job again instead of
    marking them stale, so no GPU-hour already spent is spent twice. Decided on the trial's
    Slurm job id and the rules of ``fail_stale_trials``: a dead owner on this host, or (``silent``,
    trial ids from ``Heartbeat.silent_trial_ids``) a heartbeat silent past the grace period."""
    return [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if trial.user_attrs.get(ATTR_SLURM_JOB)
        and trial.user_attrs.get(ATTR_OWNER)
        and (trial._trial_id in silent or _owner_is_dead(str(trial.user_attrs[ATTR_OWNER])))
    ]


def take_over(study: optuna.Study, trial: FrozenTrial) -> optuna.Trial:
    """Make this process the owner of a RUNNING trial; its live handle, to record its end."""
    live = optuna.Trial(study, trial._trial_id)
    live.set_user_attr(ATTR_OWNER, owner_tag())
    return live


def trial_of(study: optuna.Study, number: int) -> optuna.Trial:
    """The live handle of trial ``number`` of ``study``."""
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, int(number))
    return optuna.Trial(study, trial_id)


class Heartbeat:
    """A sweeper's pulse for the trials it runs, so a sweeper on another host can tell it died.

    A background thread records a heartbeat for each running trial every ``interval_s``. Database
    storages (SQLite included) use Optuna's heartbeat table, timed by the database's clock; Optuna
    5.1's journal storage has no heartbeat, so there the time of this host goes into a trial system
    attribute. ``silent_trial_ids`` are the RUNNING trials of other sweepers silent for longer
    than ``grace_s``; trials that never had a heartbeat (older sweepers) are never among them.
    """

    def __init__(self, study: optuna.Study, timing: HeartbeatTiming) -> None:
        from optuna.storages._heartbeat import is_heartbeat_enabled

        self.study = study
        self.timing = timing
        self._storage = study._storage
        self._optuna = is_heartbeat_enabled(self._storage)
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name="ledger-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def add(self, trial: optuna.Trial | FrozenTrial) -> None:
        """Beat for ``trial`` from now on (one beat at once: a trial is never without one)."""
        with self._lock:
            self._ids.add(trial._trial_id)
        self._beat([trial._trial_id])

    def discard(self, trial: optuna.Trial | FrozenTrial) -> None:
        with self._lock:
            self._ids.discard(trial._trial_id)

    def silent_trial_ids(self) -> set[int]:
        if self._optuna:
            silent = set(self._storage._get_stale_trial_ids(self.study._study_id))
        else:
            now = time.time()
            silent = {
                t._trial_id
                for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if now - t.system_attrs.get(ATTR_HEARTBEAT, now) > self.timing.grace_s
            }
        with self._lock:
            return silent - self._ids

    def _run(self) -> None:
        while not self._stop.wait(self.timing.interval_s):
            with self._lock:
                ids = sorted(self._ids)
            self._beat(ids)

    def _beat(self, trial_ids: Sequence[int]) -> None:
        for trial_id in trial_ids:
            try:
                if self._optuna:
                    self._storage.record_heartbeat(trial_id)
                else:
                    self._storage.set_trial_system_attr(trial_id, ATTR_HEARTBEAT, time.time())
            except Exception as exc:  # a trial that just finished, a locked or unreachable ledger
                if not isinstance(exc, optuna.exceptions.UpdateFinishedTrialError):
                    warnings.warn(
                        f"heartbeat of trial id {trial_id} not recorded: {exc}", stacklevel=1
                    )


def mark_stale(study: optuna.Study, trial: optuna.Trial | FrozenTrial, reason: str) -> bool:
    """Fail a trial that did not run to its end through no fault of its own (its sweeper died, the
    sweep was interrupted, another sweeper had claimed its work): it counts toward neither n_trials
    nor the failure rate, and its grid point is run again. False if the trial had already finished."""
    storage = study._storage
    trial_id = trial._trial_id
    try:
        storage.set_trial_user_attr(trial_id, ATTR_STALE, True)
        storage.set_trial_user_attr(trial_id, ATTR_FAIL_REASON, reason)
        return storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Finished or running trials count toward n_trials; stale failures were never really run."""
    if trial.state == TrialState.WAITING or trial.user_attrs.get(ATTR_COPIED_FROM):
        return False  # copies of an earlier study's trials (warm start) were not run here
    if trial.user_attrs.get(ATTR_CONFIRMATION):
        return False  # re-runs of the best configurations after the search, beyond n_trials
    return not (trial.state == TrialState.FAIL and trial.user_attrs.get(ATTR_STALE))


def trial_system_attrs(study: optuna.Study, trial: optuna.Trial) -> dict[str, Any]:
    """A live trial's system attributes as stored now (``fixed_params`` of an enqueued trial...)."""
    return study._storage.get_trial_system_attrs(trial._trial_id)


def set_trial_system_attr(
    study: optuna.Study, trial: optuna.Trial | FrozenTrial, key: str, value: Any
) -> None:
    """Store a system attribute on a trial (Optuna's public setter is deprecated)."""
    study._storage.set_trial_system_attr(trial._trial_id, key, value)


def open_trial(storage_url: str, study_name: str, trial_number: int) -> optuna.Trial:
    """The live trial of a job, so the job can report intermediate values and ask to be pruned.

    Its study carries Optuna's default pruner; the caller sets the sweep's own.
    """
    storage = open_storage(storage_url)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, int(trial_number))
    return optuna.Trial(study, trial_id)
