"""The files a sweep leaves in its folder: the answer (``optimization_results.yaml``) and the table of
every trial (``trials.csv``). Both are rewritten from the ledger after every batch, so they always match
it, also after a resume, and also when several sweepers share one study.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep import ledger

RESULTS_FILE = "optimization_results.yaml"
TRIALS_FILE = "trials.csv"


def write_results(study: optuna.Study, sweep_dir: str | Path, storage_url: str) -> dict[str, Any]:
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    write_trials_csv(study, trials, sweep_dir / TRIALS_FILE)
    summary = results_summary(study, trials, storage_url, sweep_dir)
    tmp = sweep_dir / (RESULTS_FILE + ".tmp")
    tmp.write_text(yaml.safe_dump(summary, sort_keys=False))
    tmp.replace(sweep_dir / RESULTS_FILE)
    return summary


def metric_names(study: optuna.Study) -> list[str]:
    names = study.metric_names
    if names:
        return list(names)
    return [f"objective_{i}" for i in range(len(study.directions))]


def results_summary(
    study: optuna.Study, trials: list[FrozenTrial], storage_url: str, sweep_dir: Path
) -> dict[str, Any]:
    names = metric_names(study)
    directions = [d.name.lower() for d in study.directions]
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
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if len(names) == 1:
        if complete:
            best = study.best_trial
            summary.update(
                {
                    "best_params": _plain(best.params),
                    "best_value": _num(best.value),
                    "best_trial": best.number,
                    "best_metrics": _plain(best.user_attrs.get(ledger.ATTR_METRICS, {})),
                    "best_overrides": list(best.user_attrs.get(ledger.ATTR_OVERRIDES, [])),
                    "best_job_dir": best.user_attrs.get(ledger.ATTR_JOB_DIR),
                }
            )
        else:
            summary["best_params"] = None
            summary["best_value"] = None
    else:
        from nemo_rl_sweep.pareto_results import write_pareto_results

        summary["solutions"] = write_pareto_results(study, sweep_dir)
    return summary


def write_trials_csv(study: optuna.Study, trials: list[FrozenTrial], path: Path) -> None:
    names = metric_names(study)
    param_names: list[str] = []
    metric_cols: list[str] = []
    for t in trials:
        for p in t.params:
            if p not in param_names:
                param_names.append(p)
        for m in t.user_attrs.get(ledger.ATTR_METRICS, {}):
            if m not in metric_cols and m not in names:
                metric_cols.append(m)
    header = (
        ["number", "state"]
        + names
        + [f"param:{p}" for p in param_names]
        + [f"metric:{m}" for m in metric_cols]
        + ["duration_s", "job_dir", "fail_reason"]
    )
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for t in trials:
            values = list(t.values) if t.values else [None] * len(names)
            metrics = t.user_attrs.get(ledger.ATTR_METRICS, {})
            writer.writerow(
                [t.number, t.state.name]
                + values
                + [t.params.get(p, "") for p in param_names]
                + [metrics.get(m, "") for m in metric_cols]
                + [
                    _duration(t),
                    t.user_attrs.get(ledger.ATTR_JOB_DIR, ""),
                    t.user_attrs.get(ledger.ATTR_FAIL_REASON, ""),
                ]
            )
    tmp.replace(path)


def _duration(t: FrozenTrial) -> Any:
    if ledger.ATTR_DURATION in t.user_attrs:
        return round(float(t.user_attrs[ledger.ATTR_DURATION]), 3)
    if t.datetime_start and t.datetime_complete:
        return round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
    return ""


def _num(v: Any) -> Any:
    if isinstance(v, float) and math.isfinite(v):
        return float(v)
    return v


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {str(k): (_num(v) if isinstance(v, float) else v) for k, v in d.items()}
