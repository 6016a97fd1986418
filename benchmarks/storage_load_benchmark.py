"""How many sweepers at once each ledger storage holds, and how long an ask and a tell take then.

For each storage (SQLite file, journal file, a PostgreSQL and a MariaDB server started from Debian's
packages by tests/db_servers.py) and each number of sweepers, that many real sweepers (Hydra runs of
the toy app, 2 jobs each) share one study of 200 trials, random search and then a 200-point grid,
all started at once. Held: every sweeper exited 0, exactly 200 trials complete, no trial lost, left
running or recorded twice, no grid point run twice. The ask and tell times are each sweeper's own
(its last line, ``Sweep.ledger_text``): an ask includes the wait for the storage's ask lock and the
grid claim, a tell includes the trial's attributes. Medians over the sweepers' medians, and the
largest single time seen.

The table goes to stdout and, between ``<!-- storage-load:start -->`` and
``<!-- storage-load:end -->``, into docs/benchmarks.md with the command.

    python benchmarks/storage_load_benchmark.py                      # 8 sweepers, all storages
    python benchmarks/storage_load_benchmark.py --sweepers 8 16 --storages sqlite journal
"""

from __future__ import annotations

import argparse
import platform
import re
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import optuna  # noqa: E402
from docs_section import write_section  # noqa: E402

from tests import db_servers  # noqa: E402
from tests.storage_load import Group, LoadRun, run_load  # noqa: E402

TRIALS = 200
LEDGER_LINE = re.compile(
    r"(\d+) (asks|tells), median ([0-9.]+) s, max ([0-9.]+) s",
)


def times(run: LoadRun, what: str) -> tuple[float, float]:
    """(median of the sweepers' median times, largest time) of ``what`` (asks or tells)."""
    medians, worst = [], 0.0
    for sweeper in run.sweepers:
        for _, kind, median, top in LEDGER_LINE.findall(sweeper.stdout):
            if kind == what:
                medians.append(float(median))
                worst = max(worst, float(top))
    return (statistics.median(medians) if medians else float("nan")), worst


def crowded(run: LoadRun) -> int:
    return sum("is crowded" in s.stdout for s in run.sweepers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweepers", type=int, nargs="+", default=[8])
    parser.add_argument("--storages", nargs="+", default=["sqlite", "journal", "postgres", "mysql"])
    parser.add_argument("--strategies", nargs="+", default=["random", "grid"])
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    servers = {}
    rows = []
    try:
        for storage in args.storages:
            for n in args.sweepers:
                for strategy in args.strategies:
                    work = Path(tempfile.mkdtemp(prefix=f"load-{storage}-{n}-{strategy}-"))
                    if storage == "sqlite":
                        url = f"sqlite:///{work / 'ledger.db'}"
                    elif storage == "journal":
                        url = f"journal:{work / 'ledger.log'}"
                    else:
                        if storage not in servers:
                            servers[storage] = db_servers.start(storage, die_with_parent=True)
                        url = servers[storage].new_database(f"load_{n}_{strategy}")
                    run = run_load([Group("bench", strategy, TRIALS, n)], url, work)
                    problems = run.problems()
                    ask, ask_max = times(run, "asks")
                    tell, tell_max = times(run, "tells")
                    row = (
                        f"| {storage} | {strategy} | {n} | {'yes' if not problems else 'NO'} "
                        f"| {ask:.3f} ({ask_max:.2f}) | {tell:.3f} ({tell_max:.2f}) "
                        f"| {run.surplus()} | {crowded(run)} | {run.wall_s:.0f} |"
                    )
                    print(row, flush=True)
                    for problem in problems:
                        print("   ", problem[:400], flush=True)
                    rows.append(row)
    finally:
        for server in servers.values():
            db_servers.stop(server)
    head = (
        "| storage | strategy | sweepers at once | held | ask s, median (max) "
        "| tell s, median (max) | closed unrun | crowded warnings | wall s |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    table = head + "\n" + "\n".join(rows)
    print(table)
    if args.no_docs:
        return
    command = "python benchmarks/" + Path(__file__).name + " " + shlex.join(sys.argv[1:])
    body = (
        "## Many sweepers on one ledger\n\n"
        f"Each row: that many sweepers (the toy app, 2 jobs each, basic launcher) started at once on "
        f"one study of {TRIALS} trials. *held*: every sweeper exited 0, exactly {TRIALS} trials "
        "complete, none lost, left running or recorded twice, no grid point run twice. Ask and "
        "tell: each sweeper's own times (its last line), median over sweepers, and the largest "
        "single one. *closed unrun*: trials asked and closed at once (another sweeper held the grid "
        "point, or the budget was spent). A shared 2-core machine, other work running beside.\n\n"
        f"{table}\n\n"
        f"Command: `{command.strip()}` (Python {platform.python_version()}, Optuna "
        f"{optuna.__version__}; PostgreSQL and MariaDB from Debian's packages, started by "
        "tests/db_servers.py)."
    )
    write_section(ROOT / "docs" / "benchmarks.md", "storage-load", body)


if __name__ == "__main__":
    main()
