"""The answer at the end of a sweep, printed: the best trial (or the Pareto front), the top trials, the
failures with their reasons, the time spent, and where every file is.

It is built from the ledger alone, so the same text comes out at the end of a sweep, from
``python -m nemo_rl_sweep report`` on a finished study, and for a study that is still running.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.confirmation import is_confirmation, study_answer
from nemo_rl_sweep.confirmation import summary_lines as confirmation_lines
from nemo_rl_sweep.outputs.format import (
    PREFIX,
    clean_text,
    direction_names,
    format_duration,
    format_number,
    metric_names,
    objectives_text,
    param_names,
    short_names,
    table,
    trial_duration,
)
from nemo_rl_sweep.outputs.importances import summary_lines as importance_lines
from nemo_rl_sweep.outputs.plots import PLOTS_DIR
from nemo_rl_sweep.outputs.range_edges import study_range_edges
from nemo_rl_sweep.outputs.range_edges import summary_lines as range_edge_lines
from nemo_rl_sweep.outputs.results import (
    PARETO_CSV,
    RESULTS_FILE,
    TRIALS_FILE,
    completed_trials,
    front_hypervolume,
    pareto_trials,
)

TOP_N = 5
MAX_FAILURES_SHOWN = 10


def print_summary(
    study: optuna.Study,
    sweep_dir: str | Path,
    storage_url: str,
    *,
    stream: TextIO | None = None,
    top: int = TOP_N,
) -> None:
    """Print :func:`format_summary` (to stdout unless ``stream`` is given)."""
    print(
        format_summary(study, sweep_dir, storage_url, top=top),
        file=stream or sys.stdout,
        flush=True,
    )


def format_summary(
    study: optuna.Study, sweep_dir: str | Path, storage_url: str, *, top: int = TOP_N
) -> str:
    """The whole summary as text: plain lines, no control characters."""
    trials = study.get_trials(deepcopy=False)
    sweep_dir = Path(sweep_dir)
    lines = [_headline(study, trials)]
    names = metric_names(study)
    # the search's trials; confirmation runs repeat its best configurations (their block follows)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and not is_confirmation(t)]
    answer = study_answer(study)
    if len(study.directions) == 1:
        if complete:
            best = _best_block(study, names[0], complete)
            if answer is not None:  # the answer is the confirmed configuration, further down
                best[0] = best[0].replace("Best trial", "Best single trial", 1) + (
                    " (one run; the confirmed answer follows)"
                )
            lines += best
            lines += _top_block(study, names[0], complete, top)
        else:
            lines.append("No trial completed yet, so there is no best trial.")
    else:
        lines += _pareto_block(study)
    if answer is not None:
        lines += confirmation_lines(answer, names)
    lines += range_edge_lines(study_range_edges(study))
    lines += importance_lines(study)
    lines += _running_block(trials)
    lines += _pruned_block(trials)
    lines += _failure_block(trials)
    lines += _time_block(trials)
    lines += _files_block(study, sweep_dir, storage_url)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- blocks


def _headline(study: optuna.Study, trials: Sequence[FrozenTrial]) -> str:
    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    strategy = study.user_attrs.get(ledger.STUDY_ATTR_STRATEGY)
    parts = [
        f"{counts[TrialState.COMPLETE]} complete",
        f"{counts[TrialState.PRUNED]} pruned",
        f"{counts[TrialState.FAIL]} failed",
    ]
    if counts[TrialState.RUNNING]:
        parts.append(f"{counts[TrialState.RUNNING]} running")
    if counts[TrialState.WAITING]:
        parts.append(f"{counts[TrialState.WAITING]} waiting")
    return (
        f"{PREFIX} study {study.study_name!r}"
        + (f" ({strategy})" if strategy else "")
        + f", objective {objectives_text(study)}: {len(trials)} trials, "
        + ", ".join(parts)
    )


def _sorted_best(study: optuna.Study, complete: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    maximize = study.directions[0] == StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: (-t.value if maximize else t.value, t.number))


def _best_block(study: optuna.Study, name: str, complete: Sequence[FrozenTrial]) -> list[str]:
    best = _sorted_best(study, complete)[0]
    lines = [f"Best trial {best.number}: {name} = {format_number(best.value)}"]
    for key, value in best.params.items():
        lines.append(f"  {key} = {value}")
    metrics = best.user_attrs.get(ledger.ATTR_METRICS) or {}
    others = {k: v for k, v in metrics.items() if k != name}
    if others:
        shown = ", ".join(f"{k}={format_number(v)}" for k, v in list(others.items())[:8])
        more = f" (+{len(others) - 8} more in trials.csv)" if len(others) > 8 else ""
        lines.append(f"  other metrics: {shown}{more}")
    overrides = best.user_attrs.get(ledger.ATTR_OVERRIDES)
    if overrides:
        lines.append(f"  overrides: {' '.join(overrides)}")
    if best.user_attrs.get(ledger.ATTR_JOB_DIR):
        lines.append(f"  job folder: {best.user_attrs[ledger.ATTR_JOB_DIR]}")
    return lines


def _top_block(
    study: optuna.Study, name: str, complete: Sequence[FrozenTrial], top: int
) -> list[str]:
    ranked = _sorted_best(study, complete)[:top]
    if len(ranked) < 2:
        return []
    keys = param_names(ranked)
    short = short_names(keys)
    headers = ["rank", "trial", name] + [short[k] for k in keys] + ["time"]
    rows = [
        [str(i + 1), str(t.number), format_number(t.value)]
        + [format_number(t.params[k]) if k in t.params else "-" for k in keys]
        + [format_duration(trial_duration(t))]
        for i, t in enumerate(ranked)
    ]
    return [f"Top {len(ranked)} of {len(complete)} complete trials by {name}:"] + table(
        headers, rows
    )


def _pareto_block(study: optuna.Study) -> list[str]:
    """The front as a table, and its hypervolume."""
    try:
        text = format_front_table(study)
        lines = [f"  {line}" if i else line for i, line in enumerate(text.splitlines())]
        hv = front_hypervolume(study)
        if hv is not None:
            ref = ", ".join(format_number(x) for x in hv[1])
            lines.append(f"Hypervolume {format_number(hv[0])} (reference point {ref})")
        return lines
    except Exception as exc:  # the summary must come out; say why the table did not
        return [f"(Pareto table unavailable: {type(exc).__name__}: {clean_text(exc, 200)})"]


def format_front_table(study: optuna.Study, max_rows: int = 50) -> str:
    """The front as a fixed-width text table (the last thing a pareto sweep prints)."""
    trials = pareto_trials(study)
    if not trials:
        return "Pareto front: no completed trials."
    params = param_names(trials)
    objectives = (f"{n} ({d[:3]})" for n, d in zip(metric_names(study), direction_names(study)))
    rows = [
        [str(t.number), *(format_number(v, 6) for v in t.values)]
        + [format_number(t.params.get(p, ""), 6) for p in params]
        for t in trials[:max_rows]
    ]
    out = [f"Pareto front: {len(trials)} of {len(completed_trials(study))} completed trials"]
    out += table(
        ["trial", *objectives, *params],
        rows,
        indent="",
        limit=None,
        align_numbers=False,
        rule=True,
        trim=False,
    )
    if len(trials) > max_rows:
        out.append(f"... {len(trials) - max_rows} more in {PARETO_CSV}")
    return "\n".join(out)


def _running_block(trials: Sequence[FrozenTrial]) -> list[str]:
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if not running:
        return []
    return [
        f"Running ({len(running)}): "
        + ", ".join(f"trial {t.number} {' '.join(_overrides(t))}".strip() for t in running[:10])
        + (" ..." if len(running) > 10 else "")
    ]


def _pruned_block(trials: Sequence[FrozenTrial]) -> list[str]:
    """Which trials the pruner stopped, and at which step: the training time that was saved."""
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    if not pruned:
        return []
    shown = []
    for t in pruned[:20]:
        steps = t.intermediate_values
        shown.append(f"trial {t.number} at step {max(steps)}" if steps else f"trial {t.number}")
    more = f", ... and {len(pruned) - 20} more" if len(pruned) > 20 else ""
    return [f"Pruned ({len(pruned)}): " + ", ".join(shown) + more]


def _failure_block(trials: Sequence[FrozenTrial]) -> list[str]:
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if not failed:
        return []
    lines = [f"Failures ({len(failed)} of {len(trials)} trials):"]
    for t in failed[:MAX_FAILURES_SHOWN]:
        reason = clean_text(t.user_attrs.get(ledger.ATTR_FAIL_REASON, "no reason recorded"), 240)
        rerun = " (re-run: its sweeper stopped)" if t.user_attrs.get(ledger.ATTR_STALE) else ""
        lines.append(f"  trial {t.number}{rerun}: {reason}")
        if t.user_attrs.get(ledger.ATTR_JOB_DIR):
            lines.append(f"    job folder: {t.user_attrs[ledger.ATTR_JOB_DIR]}")
    if len(failed) > MAX_FAILURES_SHOWN:
        lines.append(f"  ... and {len(failed) - MAX_FAILURES_SHOWN} more (see {TRIALS_FILE})")
    return lines


def _time_block(trials: Sequence[FrozenTrial]) -> list[str]:
    durations = [d for d in (trial_duration(t) for t in trials) if d is not None]
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    if not durations or not starts or not ends:
        return []
    wall = (max(ends) - min(starts)).total_seconds()
    return [
        f"Time: {format_duration(wall)} from the first trial's start to the last one's end; "
        f"{format_duration(sum(durations))} of trial time in all; per trial "
        f"mean {format_duration(statistics.fmean(durations))}, "
        f"median {format_duration(statistics.median(durations))}, "
        f"min {format_duration(min(durations))}, max {format_duration(max(durations))}"
    ]


def _files_block(study: optuna.Study, sweep_dir: Path, storage_url: str) -> list[str]:
    rows = [["sweep folder", str(sweep_dir)]]
    for label, name in (("answer", RESULTS_FILE), ("every trial", TRIALS_FILE)):
        if (sweep_dir / name).exists():
            rows.append([label, str(sweep_dir / name)])
    for path in sorted(sweep_dir.glob("pareto*")):
        rows.append(["Pareto front", str(path)])
    plots = sweep_dir / PLOTS_DIR
    if plots.is_dir():
        if (plots / "index.html").is_file():
            rows.append(["plots (HTML)", str(plots / "index.html")])
        pictures = sorted(p.stem for p in plots.glob("*.png"))
        if pictures:
            rows.append(["plots (PNG)", f"{plots}/{{{','.join(pictures)}}}.png"])
    rows.append(
        ["trial folders", f"{sweep_dir}/<study>/trial_<number>/ (config, log, metrics.json)"]
    )
    freed = study.user_attrs.get(ledger.STUDY_ATTR_FREED_BYTES)
    if freed:
        size = f"{freed / 1e9:.3g} GB" if freed >= 1e8 else f"{freed / 1e6:.3g} MB"
        rows.append(["checkpoints", f"{size} freed ({freed} bytes; trainer.checkpoints)"])
    rows.append(["ledger", f"{storage_url} (study {study.study_name!r})"])
    rows.append(["dashboard", f"optuna-dashboard {storage_url}"])
    again = (
        str(sweep_dir)
        if (sweep_dir / RESULTS_FILE).is_file()
        else f"{storage_url} --study {study.study_name}"
    )
    rows.append(["this summary", f"python -m nemo_rl_sweep report {again}"])
    return ["Files:"] + table(None, rows, limit=None)


# ------------------------------------------------------------------------------------ helpers


def _overrides(t: FrozenTrial) -> list[str]:
    value: Any = t.user_attrs.get(ledger.ATTR_OVERRIDES) or []
    return [str(v) for v in value]
