"""Storage and disk faults (issue 15): each is one ``Error:`` line before any job, and nothing recorded
is lost.

Real faults, made as root: a read-only bind mount, a tmpfs filled to its last byte, a ``sqlite3``
shell holding an exclusive lock, bytes overwritten in the ledger, a ledger whose schema version a
newer Optuna wrote, over a real SQLite ledger that already holds a finished trial; after the refusal
the ledger is byte-identical and its trial still there. Most run the toy app in a subprocess; a few
call what the sweeper calls to open its ledger, which spares the Hydra start-up.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.ledger import ATTR_OVERRIDES, open_storage
from nemo_rl_sweep.outputs.results import TRIALS_FILE, write_results
from tests.helpers import TOY_APP, error_lines, run_app


@pytest.fixture(autouse=True)
def _root() -> None:
    assert os.geteuid() == 0, "these tests mount file systems: run them as root (as CI does)"


@contextlib.contextmanager
def mounted(*args: str, target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


@contextlib.contextmanager
def read_only_view(source: Path, target: Path) -> Iterator[Path]:
    """``source`` seen through a read-only bind mount: not writable, even by root."""
    with mounted("--bind", str(source), target=target):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True)
        yield target


def fill(folder: Path) -> None:
    """Write into ``folder`` until its disk has not one byte left."""
    for name, block in (("filler", 4096), ("filler2", 1)):
        with contextlib.suppress(OSError), open(folder / name, "wb", buffering=0) as fh:
            while True:
                fh.write(b"\0" * block)


def earlier_ledger(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ledger.db"
    study = optuna.create_study(storage=f"sqlite:///{path}", study_name="spent")
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    return path


def still_there(path: Path) -> None:
    study = optuna.load_study(study_name="spent", storage=f"sqlite:///{path}")
    assert [t.value for t in study.get_trials()] == [0.5]


def refused(cwd: Path, ledger: Path, *args: str, env: dict | None = None) -> str:
    """Run the toy sweep on ``ledger``; it must be refused with one line, the ledger untouched."""
    before = ledger.read_bytes()
    proc = run_app(
        TOY_APP,
        [
            "--multirun",
            f"hydra.sweeper.storage=sqlite:///{ledger}",
            "hydra.sweeper.n_trials=2",
            *args,
        ],
        cwd,
        env=env,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (line,) = error_lines(proc)
    assert ledger.read_bytes() == before
    assert not list(cwd.rglob("metrics.json")), "a job ran"
    return line


def test_a_read_only_ledger_is_refused(tmp_path):
    ledger = earlier_ledger(tmp_path / "ledger")
    with read_only_view(tmp_path / "ledger", tmp_path / "ro") as view:
        line = refused(tmp_path, view / "ledger.db")
    assert "hydra.sweeper.storage: cannot write in the ledger's folder" in line
    assert "Read-only file system" in line
    still_there(ledger)


def test_a_ledger_locked_by_another_program_is_refused(tmp_path):
    ledger = earlier_ledger(tmp_path)
    shell = subprocess.Popen(
        ["sqlite3", str(ledger)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        shell.stdin.write("BEGIN EXCLUSIVE;\nSELECT count(*) FROM trials;\n")
        shell.stdin.flush()
        assert shell.stdout.readline().strip() == "1"  # the lock is held from here
        line = refused(tmp_path, ledger, env={"NEMO_RL_SWEEP_LEDGER_LOCK_WAIT_S": "1"})
    finally:
        shell.communicate("ROLLBACK;\n.quit\n")
    assert "is locked by another program (waited 1 s)" in line
    still_there(ledger)


def refused_in_process(ledger: Path) -> str:
    """What the sweeper calls to open its ledger (``Sweep.open``), without the Hydra start-up."""
    before = ledger.read_bytes()
    with pytest.raises(SweepConfigError) as err:
        open_storage(f"sqlite:///{ledger}", check=True)
    assert ledger.read_bytes() == before
    return f"Error: {err.value}"


@pytest.mark.parametrize("where", ["header", "middle"])
def test_a_damaged_ledger_is_refused_and_left_as_it_was(tmp_path, where):
    ledger = earlier_ledger(tmp_path)
    data = bytearray(ledger.read_bytes())
    start = 0 if where == "header" else len(data) // 2
    data[start : start + 4096] = os.urandom(4096)
    ledger.write_bytes(bytes(data))
    line = refused(tmp_path, ledger) if where == "header" else refused_in_process(ledger)
    assert f"the ledger {ledger} is damaged" in line
    assert "restore it from a backup" in line


def test_a_ledger_of_a_newer_optuna_is_refused(tmp_path):
    ledger = earlier_ledger(tmp_path)
    with contextlib.closing(sqlite3.connect(ledger)) as db, db:
        db.execute("UPDATE alembic_version SET version_num = 'v99.0.0.a'")
    line = refused_in_process(ledger)
    assert "was written by another Optuna version than" in line
    assert "the ledger was left as it was" in line


def test_a_ledger_on_a_full_disk_is_refused(tmp_path):
    with mounted("-t", "tmpfs", "-o", "size=1m", "tmpfs", target=tmp_path / "disk") as disk:
        ledger = earlier_ledger(disk)
        fill(disk)
        line = refused_in_process(ledger)
        assert "cannot write in the ledger's folder" in line and "the disk is full" in line
        still_there(ledger)


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_sweep_folder_on_a_full_or_read_only_disk_is_refused(tmp_path, fault):
    ledger = earlier_ledger(tmp_path / "ledger")
    with mounted("-t", "tmpfs", "-o", "size=1m", "tmpfs", target=tmp_path / "disk") as disk:
        if fault == "full":
            fill(disk)
            line = refused(tmp_path, ledger, f"hydra.sweep.dir={disk}/sweep")
        else:
            with read_only_view(disk, tmp_path / "ro") as view:
                line = refused(tmp_path, ledger, f"hydra.sweep.dir={view}/sweep")
    assert line.startswith("Error: hydra.sweep.dir: cannot write in the sweep folder")
    assert ("the disk is full" if fault == "full" else "Read-only file system") in line
    still_there(ledger)


def test_results_files_are_replaced_whole_when_the_disk_fills(tmp_path):
    """A write that cannot finish leaves the previous trials.csv and results, and no temp file."""
    study = optuna.create_study(study_name="s")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.tell(study.ask(dist), 0.5)
    with mounted("-t", "tmpfs", "-o", "size=256k", "tmpfs", target=tmp_path / "disk") as disk:
        write_results(study, disk, "sqlite:///elsewhere.db")
        before = {p.name: p.read_bytes() for p in disk.iterdir()}
        for _ in range(300):  # enough rows that the new trials.csv cannot fit
            trial = study.ask(dist)
            trial.set_user_attr("fail_reason", "x" * 2000)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        fill(disk)
        with pytest.raises(OSError):
            write_results(study, disk, "sqlite:///elsewhere.db")
        after = {p.name: p.read_bytes() for p in disk.iterdir() if not p.name.startswith("filler")}
    assert after == before  # no half-written file, no temp file left behind
    assert TRIALS_FILE in after


def test_a_ledger_disk_that_fills_during_the_sweep_stops_it_with_one_line(tmp_path):
    """The disk fills while a trial runs: the sweep stops with one ``Error:`` line (no traceback),
    the trial finished before is kept, and after space is freed the same command ends the sweep
    with ``n_trials`` exact."""
    import sys
    import time

    from optuna.trial import TrialState

    from tests.helpers import TOY_APP as app

    with mounted("-t", "tmpfs", "-o", "size=2m", "tmpfs", target=tmp_path / "disk") as disk:
        url = f"sqlite:///{disk}/ledger.db"
        args = ["--multirun", f"hydra.sweeper.storage={url}", "hydra.sweeper.n_trials=4"]
        args += ["sleep=2.0", "hydra.sweeper.seed=3"]
        proc = subprocess.Popen(
            [sys.executable, str(app), *args],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        first = None
        while first is None:  # the first trial is recorded, the second runs (its ask recorded)
            assert proc.poll() is None, proc.communicate()
            if (disk / "ledger.db").exists():
                # through the ledger module: it takes turns with the sweeper that may be creating
                # the tables right now (a bare URL here could race it: "table studies already
                # exists")
                storage = open_storage(url)
                summaries = optuna.get_all_study_summaries(storage)
                if summaries:
                    study = optuna.load_study(study_name=summaries[0].study_name, storage=storage)
                    done = study.get_trials(states=(TrialState.COMPLETE,))
                    running = study.get_trials(states=(TrialState.RUNNING,))
                    if done and any(ATTR_OVERRIDES in t.user_attrs for t in running):
                        first = done[0]
            time.sleep(0.2)
        fill(disk)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 3, out[-2000:] + err[-3000:]
        assert "Traceback" not in err
        (line,) = [x for x in err.splitlines() if x.startswith("Error: ")]
        assert line.startswith("Error: hydra.sweeper.storage: the ledger could not be written")
        assert "disk is full" in line and "run the same command to resume" in line
        for filler in disk.glob("filler*"):
            filler.unlink()
        again = run_app(app, args, tmp_path)  # the same command
        assert again.returncode == 0, again.stderr[-3000:]
        study = optuna.load_study(study_name=first_study(url), storage=url)
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        states = [(t.number, t.state.name, sorted(t.user_attrs)) for t in study.get_trials()]
        assert len(complete) == 4, states
        assert (first.number, first.value) in {(t.number, t.value) for t in complete}


def first_study(url: str) -> str:
    (summary,) = optuna.get_all_study_summaries(url)
    return summary.study_name
