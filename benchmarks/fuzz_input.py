"""A longer fuzz run of sweep input than the test suite's (issue 15), with counts.

The same strategies and property as ``tests/test_fuzz_input.py`` (``tests/fuzz_inputs.py``), on many
more inputs: the in-process layer (what the sweeper runs before any job) and real Hydra runs of the
echo app over a SQLite ledger that holds earlier work. Every failure is printed with its input and
the run goes on; the counts say how many inputs were refused (by the sweeper, by Hydra's own
grammar) and how many ran, and how many trials the runs launched.

    PYTHONPATH=. python benchmarks/fuzz_input.py                      # 3000 + 3000 in-process, 120 real
    PYTHONPATH=. python benchmarks/fuzz_input.py --in-process 500 --real 10
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz_inputs import (
    PropertyBroken,
    check_in_process,
    check_real_run,
    settings_overrides,
    simple_spaces,
    spaces,
)

counts: collections.Counter[str] = collections.Counter()
failures: list[str] = []


def _record(label: str, run: Any) -> None:
    counts[f"{label}: tried"] += 1
    try:
        outcome = run()
    except PropertyBroken as exc:
        counts[f"{label}: FAILED"] += 1
        failures.append(f"{label}: {exc}")
        return
    counts[f"{label}: {outcome}"] += 1


def _in_process_outcome(command_line: Any, group: Any, overrides: Any, folder: Path) -> str:
    verdict = check_in_process(command_line, group, overrides, folder)
    return "refused (Error line)" if verdict.refused else "ran (first trials checked)"


def _real_outcome(
    folder: Path, command_line: Any, group: Any, overrides: Any, in_group: bool
) -> str:
    proc = check_real_run(folder, command_line, group, overrides, settings_in_group=in_group)
    if proc.returncode == 2:
        return "refused by the sweeper (exit 2, one Error line)"
    if proc.returncode == 1:
        return "refused by Hydra while composing (exit 1)"
    counts["real: trials launched and checked"] += len(list(folder.rglob("received.json")))
    return "ran"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-process", type=int, default=3000)
    parser.add_argument("--real", type=int, default=120)
    args = parser.parse_args()
    quiet = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
    fast = settings(
        max_examples=args.in_process, deadline=None, database=None, suppress_health_check=quiet
    )
    real = settings(
        max_examples=args.real,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=quiet,
    )
    root = Path(tempfile.mkdtemp(prefix="fuzz_input_"))
    serial = iter(range(10**9))

    def folder() -> Path:
        path = root / f"run{next(serial)}"
        path.mkdir()
        return path

    @fast
    @given(command_line=spaces, group=spaces)
    def sweeps(command_line: Any, group: Any) -> None:
        _record("sweep strings", lambda: _in_process_outcome(command_line, group, {}, folder()))

    @fast
    @given(space=simple_spaces, overrides=settings_overrides)
    def sweeper_settings(space: Any, overrides: Any) -> None:
        _record("settings", lambda: _in_process_outcome(space, {}, overrides, folder()))

    @real
    @given(command_line=spaces, overrides=settings_overrides, in_group=st.booleans())
    def real_runs(command_line: Any, overrides: Any, in_group: bool) -> None:
        cli, group = ({}, command_line) if in_group else (command_line, {})
        where = "config group" if in_group else "command line"
        _record(f"real ({where})", lambda: _real_outcome(folder(), cli, group, overrides, in_group))

    for name, run in (("in-process sweeps", sweeps), ("in-process settings", sweeper_settings)):
        start = time.monotonic()
        run()
        print(f"{name}: {time.monotonic() - start:.0f} s", flush=True)
    start = time.monotonic()
    real_runs()
    print(f"real runs: {time.monotonic() - start:.0f} s", flush=True)
    for key in sorted(counts):
        print(f"{key:60s} {counts[key]}")
    for failure in failures:
        print("FAILURE", failure[:2000], sep="\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
