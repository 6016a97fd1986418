"""``python -m nemo_rl_sweep report <sweep folder or storage URL> [--study NAME]``.

Prints the summary of a study and (re)writes its plots, for a finished sweep, one that is still
running, or one that stopped. Everything comes from the ledger, so it also works on a study that
several sweepers share, or on a ledger copied back from a cluster.

A sweep folder is recognised by its ``optimization_results.yaml`` (which names the storage and the
study); a folder holding the default ledger file, a ledger file itself, or any storage URL also work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import optuna
import yaml

from nemo_rl_sweep import ledger
from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.outputs.format import PREFIX
from nemo_rl_sweep.outputs.results import RESULTS_FILE, write_pareto_results


class ReportError(Exception):
    """A report that cannot be made; the message says what to pass instead."""


@dataclass
class ReportTarget:
    storage_url: str
    study_name: str | None
    sweep_dir: Path | None


def resolve_target(target: str, study_name: str | None = None) -> ReportTarget:
    """Turn what the user typed into a storage URL, a study name (maybe still unknown) and a folder."""
    if target.startswith("journal:") or "://" in target:
        return ReportTarget(ledger.absolute_storage_url(target, Path.cwd()), study_name, None)
    path = Path(target).expanduser()
    if path.is_dir():
        results = path / RESULTS_FILE
        if results.is_file():
            data = yaml.safe_load(results.read_text()) or {}
            storage = data.get("storage")
            if not storage:
                raise ReportError(f"{results} names no storage; pass the storage URL instead")
            return ReportTarget(str(storage), study_name or data.get("study_name"), path.resolve())
        db = path / ledger.DEFAULT_LEDGER_FILE
        if db.is_file():
            return ReportTarget(ledger.default_storage_url(path), study_name, None)
        raise ReportError(
            f"{path} holds no {RESULTS_FILE} and no {ledger.DEFAULT_LEDGER_FILE}: pass a sweep "
            "folder (multirun/<date>/<time>) or a storage URL such as sqlite:///multirun/nemo_rl_sweep.db"
        )
    if path.is_file():
        if path.suffix in (".db", ".sqlite", ".sqlite3"):
            return ReportTarget("sqlite:///" + str(path.resolve()), study_name, None)
        return ReportTarget("journal:" + str(path.resolve()), study_name, None)
    raise ReportError(f"{target} is neither a folder, a ledger file nor a storage URL")


def load_study(target: ReportTarget) -> optuna.Study:
    """The study, read-only in spirit: nothing is written to the ledger."""
    try:
        storage = ledger.open_storage(target.storage_url)
    except SweepConfigError as exc:
        raise ReportError(f"cannot open the ledger {target.storage_url}: {exc.problem}") from None
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    names = [s.study_name for s in summaries]
    if not names:
        raise ReportError(f"the ledger {target.storage_url} holds no study")
    name = target.study_name
    if name is None:
        if len(names) > 1:
            listing = ", ".join(f"{s.study_name} ({s.n_trials} trials)" for s in summaries)
            raise ReportError(f"the ledger holds several studies; pick one with --study: {listing}")
        name = names[0]
    if name not in names:
        raise ReportError(
            f"no study {name!r} in {target.storage_url}; it holds: {', '.join(names)}"
        )
    return optuna.load_study(study_name=name, storage=storage)


def default_out_dir(study: optuna.Study, target: ReportTarget) -> Path:
    """Plots go to the sweep folder; given only a URL, to the folder of the study's latest sweep."""
    if target.sweep_dir is not None:
        return target.sweep_dir
    for trial in reversed(study.get_trials(deepcopy=False)):
        job_dir = trial.user_attrs.get(ledger.ATTR_JOB_DIR)
        if job_dir and (Path(job_dir).parent / RESULTS_FILE).is_file():
            return Path(job_dir).parent
    return Path.cwd() / f"report-{study.study_name}"


def run_report(
    target: str,
    study_name: str | None = None,
    *,
    out: str | Path | None = None,
    plots: bool = True,
    stream: TextIO | None = None,
) -> int:
    """Print the summary and write the plots; 0 on success, 2 when the target cannot be read."""
    from nemo_rl_sweep.outputs.summary import print_summary

    stream = stream or sys.stdout
    err = sys.stderr if stream is sys.stdout else stream
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        where = resolve_target(target, study_name)
        study = load_study(where)
    except ReportError as exc:
        print(f"Error: {exc}", file=err)
        return 2
    folder = Path(out).resolve() if out is not None else default_out_dir(study, where)
    if plots:
        from nemo_rl_sweep.outputs.plots import write_plots

        def say(text: str) -> None:
            print(f"{PREFIX} {text}", file=stream)

        write_plots(study, folder, log=say)
        if len(study.directions) > 1:
            _write_front(study, folder, say)
    print_summary(study, folder, where.storage_url, stream=stream)
    return 0


def _write_front(study: optuna.Study, folder: Path, say: Callable[[str], None]) -> None:
    """The front's table and PNG, as the result files of a sweep hold them."""
    try:
        write_pareto_results(study, folder)
    except Exception as exc:  # noqa: BLE001 - the summary still comes out
        say(f"Pareto front files not written: {type(exc).__name__}: {exc}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        help="a sweep folder (holding optimization_results.yaml), a ledger file, or a storage URL",
    )
    parser.add_argument(
        "--study", default=None, help="the study name, when the ledger holds several"
    )
    parser.add_argument(
        "--out", default=None, help="folder for the plots (default: the sweep folder)"
    )
    parser.add_argument("--no-plots", action="store_true", help="print the summary only")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nemo_rl_sweep report", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_report(args.target, args.study, out=args.out, plots=not args.no_plots)
