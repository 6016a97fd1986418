"""The answer at the end of a sweep, printed: the best trial (or the Pareto front) and where files are."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.results import RESULTS_FILE, TRIALS_FILE, metric_names


def print_summary(study: optuna.Study, sweep_dir: str | Path, storage_url: str) -> None:
    trials = study.get_trials(deepcopy=False)
    names = metric_names(study)
    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    print(
        f"[sweep] done: {counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
        f"{counts[TrialState.FAIL]} failed, study {study.study_name!r}"
    )
    if len(names) == 1 and counts[TrialState.COMPLETE]:
        best = study.best_trial
        print(f"[sweep] best trial {best.number}: {names[0]}={best.value:.6g}")
        for key, value in best.params.items():
            print(f"    {key}={value}")
        if best.user_attrs.get(ledger.ATTR_JOB_DIR):
            print(f"    job folder: {best.user_attrs[ledger.ATTR_JOB_DIR]}")
    sweep_dir = Path(sweep_dir)
    print(f"[sweep] results: {sweep_dir / RESULTS_FILE}, {sweep_dir / TRIALS_FILE}")
    print(f"[sweep] ledger: {storage_url}")
