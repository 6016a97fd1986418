"""The files a sweep leaves in its folder: the answer (``optimization_results.yaml``: the best trial of
one objective, or the ``solutions:`` of the Pareto front of several), the table of every trial
(``trials.csv``) and, for several objectives, the front as a table (``pareto.csv``) and a picture
(``pareto_front.png``). All are rewritten from the ledger after every batch, so they always match
it, also after a resume, and also when several sweepers share one study.

Only COMPLETE trials with finite values take part in the front.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.confirmation import is_confirmation, study_answer
from nemo_rl_sweep.outputs.files import replaced, write_text
from nemo_rl_sweep.outputs.format import (
    direction_names,
    metric_names,
    param_names,
    trial_duration,
)
from nemo_rl_sweep.outputs.plots import PARETO_PNG, plot_front
from nemo_rl_sweep.pareto import default_reference_point, hypervolume, pareto_front_mask

RESULTS_FILE = "optimization_results.yaml"
TRIALS_FILE = "trials.csv"
PARETO_CSV = "pareto.csv"


def write_results(
    study: optuna.Study, sweep_dir: str | Path, storage_url: str, *, final: bool = False
) -> dict[str, Any]:
    """Rewrite the result files; ``final`` (the sweep's end) adds the importances, which fit a
    random forest and are not worth redoing after every batch."""
    from nemo_rl_sweep.outputs.importances import importances
    from nemo_rl_sweep.outputs.range_edges import study_range_edges

    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    write_trials_csv(study, trials, sweep_dir / TRIALS_FILE)
    summary = results_summary(study, trials, storage_url, sweep_dir)
    edges = study_range_edges(study)
    if edges:  # the best configurations at a range's end: the optimum may lie outside
        summary["range_edges"] = [e.as_dict() for e in edges]
    values = importances(study)[0] if final else {}
    if values:
        summary["importances"] = values
    write_text(sweep_dir / RESULTS_FILE, yaml.safe_dump(summary, sort_keys=False))
    return summary


def results_summary(
    study: optuna.Study, trials: list[FrozenTrial], storage_url: str, sweep_dir: Path
) -> dict[str, Any]:
    names = metric_names(study)
    directions = direction_names(study)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    summary: dict[str, Any] = {
        "name": "nemo_rl",
        "study_name": study.study_name,
        "storage": storage_url,
        "strategy": study.user_attrs.get(ledger.STUDY_ATTR_STRATEGY),
        "metric": names if len(names) > 1 else names[0],
        "direction": directions if len(directions) > 1 else directions[0],
        "trials": {k: v for k, v in counts.items() if v},
    }
    answer = study_answer(study)
    if answer is not None:
        summary["confirmation"] = answer.as_dict(names)
    if len(names) > 1:
        summary["solutions"] = write_pareto_results(study, sweep_dir)
    elif answer is not None:  # the mean over its runs, with their std and number
        confirmed = answer.best[0]
        spread = {"best_value_std": plain(confirmed.std[0]), "best_n_runs": confirmed.n_runs}
        summary.update(_best(study.trials[confirmed.search_trial], confirmed.mean[0], spread))
    elif any(t.state == TrialState.COMPLETE for t in trials):
        summary.update(_best(study.best_trial, study.best_trial.value, {}))
    else:
        summary["best_params"] = None
        summary["best_value"] = None
    return summary


def _best(best: FrozenTrial, value: float, spread: dict[str, Any]) -> dict[str, Any]:
    return {
        "best_params": _plain(best.params),
        "best_value": plain(value),
        **spread,
        "best_trial": best.number,
        "best_metrics": _plain(best.user_attrs.get(ledger.ATTR_METRICS, {})),
        "best_overrides": list(best.user_attrs.get(ledger.ATTR_OVERRIDES, [])),
        "best_job_dir": best.user_attrs.get(ledger.ATTR_JOB_DIR),
    }


def write_trials_csv(study: optuna.Study, trials: list[FrozenTrial], path: Path) -> None:
    names = metric_names(study)
    params = param_names(trials)
    metric_cols: list[str] = []
    for t in trials:
        for m in t.user_attrs.get(ledger.ATTR_METRICS, {}):
            if m not in metric_cols and m not in names:
                metric_cols.append(m)
    header = (
        ["number", "state"]
        + names
        + [f"param:{p}" for p in params]
        + [f"metric:{m}" for m in metric_cols]
        + ["duration_s", "job_dir", "fail_reason"]
    )
    with replaced(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for t in trials:
            values = list(t.values) if t.values else [None] * len(names)
            metrics = t.user_attrs.get(ledger.ATTR_METRICS, {})
            writer.writerow(
                [t.number, t.state.name]
                + values
                + [t.params.get(p, "") for p in params]
                + [metrics.get(m, "") for m in metric_cols]
                + [
                    _duration(t),
                    t.user_attrs.get(ledger.ATTR_JOB_DIR, ""),
                    t.user_attrs.get(ledger.ATTR_FAIL_REASON, ""),
                ]
            )


def _duration(t: FrozenTrial) -> Any:
    seconds = trial_duration(t)
    return "" if seconds is None else round(seconds, 3)


def plain(v: Any) -> Any:
    """A value as a YAML-friendly builtin (numpy scalars turned into Python ones)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {str(k): plain(v) for k, v in d.items()}


# ----------------------------------------------------------------------- several objectives


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE search trials whose every value is finite: the ones a front is made of
    (confirmation runs repeat front members with new seeds; their answer is a block of its own)."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values is not None
        and all(math.isfinite(v) for v in t.values)
        and not is_confirmation(t)
    ]


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Pareto-optimal COMPLETE trials, sorted by the first objective (best first)."""
    trials = completed_trials(study)
    if not trials:
        return []
    values = np.array([t.values for t in trials], dtype=float)
    front = [t for t, keep in zip(trials, pareto_front_mask(values, study.directions)) if keep]
    first_max = study.directions[0] == StudyDirection.MAXIMIZE
    return sorted(front, key=lambda t: (-t.values[0] if first_max else t.values[0], t.number))


def pareto_solutions(study: optuna.Study) -> list[dict[str, Any]]:
    """``solutions:`` entries: ``{number, params, values: {metric: value}, overrides?}``."""
    names = metric_names(study)
    out = []
    for t in pareto_trials(study):
        entry: dict[str, Any] = {
            "number": t.number,
            "params": {k: plain(v) for k, v in t.params.items()},
            "values": {n: float(v) for n, v in zip(names, t.values, strict=True)},
        }
        if ledger.ATTR_OVERRIDES in t.user_attrs:
            entry["overrides"] = list(t.user_attrs[ledger.ATTR_OVERRIDES])
        out.append(entry)
    return out


def write_pareto_csv(study: optuna.Study, path: str | Path) -> Path:
    """Write ``pareto.csv``: trial number, each objective (by name), each parameter."""
    path = Path(path)
    trials = pareto_trials(study)
    params = param_names(trials)
    with replaced(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", *metric_names(study), *params])
        for t in trials:
            w.writerow([t.number, *t.values, *(t.params.get(p, "") for p in params)])
    return path


def front_hypervolume(
    study: optuna.Study, reference_point: Sequence[float] | None = None
) -> tuple[float, list[float]] | None:
    """Hypervolume of the completed trials and the reference point used (user units); the
    default reference is each objective's worst observed value pushed out by 10% of its range."""
    trials = completed_trials(study)
    if not trials:
        return None
    values = np.array([t.values for t in trials], dtype=float)
    ref = (
        default_reference_point(values, study.directions)
        if reference_point is None
        else np.asarray(reference_point, dtype=float)
    )
    return hypervolume(values, ref, study.directions), [float(x) for x in ref]


def write_pareto_results(study: optuna.Study, sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Write ``pareto.csv`` and ``pareto_front.png`` into ``sweep_dir`` and return the
    ``solutions:`` list for ``optimization_results.yaml``."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_pareto_csv(study, sweep_dir / PARETO_CSV)
    plot_front(study, pareto_trials(study), completed_trials(study), sweep_dir / PARETO_PNG)
    return pareto_solutions(study)
