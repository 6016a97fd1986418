"""What a Pareto sweep leaves behind: the front as data, as a table and as a picture.

* :func:`pareto_solutions` -> the ``solutions:`` list of ``optimization_results.yaml`` (number,
  params and named values of every Pareto-optimal trial, plus its Hydra overrides when recorded);
* :func:`write_pareto_csv` -> ``pareto.csv``; :func:`plot_front` -> ``pareto_front.png``;
* :func:`format_front_table` -> the text table printed at the end of a sweep;
* :func:`front_hypervolume` -> the hypervolume of the trials and the reference point used;
* :func:`write_pareto_results` writes the files into a sweep folder and returns ``solutions``.

Objective names come from ``study.metric_names`` (the ledger contract); directions from
``study.directions``. Only COMPLETE trials with finite values take part.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep.pareto import default_reference_point, hypervolume, pareto_front_mask
from nemo_rl_sweep.pareto.front import normalize_directions

CSV_NAME = "pareto.csv"
PNG_NAME = "pareto_front.png"


def objective_names(study: optuna.Study) -> list[str]:
    """The study's metric names, or ``objective_<i>`` when none were set."""
    names = getattr(study, "metric_names", None)
    n = len(study.directions)
    if names and len(names) == n:
        return [str(x) for x in names]
    return [f"objective_{i}" for i in range(n)]


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values is not None and all(math.isfinite(v) for v in t.values)
    ]


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Pareto-optimal COMPLETE trials, sorted by the first objective (best first)."""
    trials = _complete(study)
    if not trials:
        return []
    values = np.array([t.values for t in trials], dtype=float)
    front = [t for t, keep in zip(trials, pareto_front_mask(values, study.directions)) if keep]
    first_max = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return sorted(front, key=lambda t: (-t.values[0] if first_max else t.values[0], t.number))


def _plain(v: Any) -> Any:
    """Numbers and strings as YAML-friendly builtins (numpy scalars turned into Python ones)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def pareto_solutions(study: optuna.Study) -> list[dict[str, Any]]:
    """``solutions:`` entries: ``{number, params, values: {metric: value}, overrides?}``."""
    names = objective_names(study)
    out = []
    for t in pareto_trials(study):
        entry: dict[str, Any] = {
            "number": t.number,
            "params": {k: _plain(v) for k, v in t.params.items()},
            "values": {n: float(v) for n, v in zip(names, t.values, strict=True)},
        }
        if "overrides" in t.user_attrs:
            entry["overrides"] = list(t.user_attrs["overrides"])
        out.append(entry)
    return out


def _param_names(trials: Sequence[FrozenTrial]) -> list[str]:
    names: list[str] = []
    for t in trials:
        names += [k for k in t.params if k not in names]
    return names


def write_pareto_csv(study: optuna.Study, path: str | Path) -> Path:
    """Write ``pareto.csv``: trial number, each objective (by name), each parameter."""
    path = Path(path)
    trials = pareto_trials(study)
    names = objective_names(study)
    params = _param_names(trials)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", *names, *params])
        for t in trials:
            w.writerow([t.number, *t.values, *(t.params.get(p, "") for p in params)])
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:.6g}"
    return str(v)


def format_front_table(study: optuna.Study, max_rows: int = 50) -> str:
    """The front as a fixed-width text table (the last thing a pareto sweep prints)."""
    trials = pareto_trials(study)
    names = objective_names(study)
    dirs = normalize_directions(study.directions, len(names))
    if not trials:
        return "Pareto front: no completed trials."
    params = _param_names(trials)
    header = ["trial", *(f"{n} ({d[:3]})" for n, d in zip(names, dirs, strict=True)), *params]
    rows = [
        [str(t.number), *(_fmt(v) for v in t.values), *(_fmt(t.params.get(p, "")) for p in params)]
        for t in trials[:max_rows]
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join
    out = [
        f"Pareto front: {len(trials)} of {len(_complete(study))} completed trials",
        line(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        line("-" * w for w in widths),
    ]
    out += [line(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    if len(trials) > max_rows:
        out.append(f"... {len(trials) - max_rows} more in {CSV_NAME}")
    return "\n".join(out)


def plot_front(study: optuna.Study, path: str | Path) -> Path:
    """Save a PNG: all completed trials and the Pareto front, one panel per pair of objectives
    (the first four objectives at most)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    names = objective_names(study)
    trials = _complete(study)
    front = pareto_trials(study)
    m = len(names)
    pairs = [(i, j) for i in range(min(m, 4)) for j in range(i + 1, min(m, 4))]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.2), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs, strict=True):
        if trials:
            v = np.array([t.values for t in trials])
            ax.scatter(v[:, i], v[:, j], s=14, c="0.7", label="trials")
        if front:
            f = np.array([t.values for t in front])
            order = np.argsort(f[:, i])
            ax.scatter(f[:, i], f[:, j], s=30, c="tab:red", label="Pareto front", zorder=3)
            if m == 2:  # the attainment staircase; its shape depends on the x direction
                x_max = study.directions[i] == optuna.study.StudyDirection.MAXIMIZE
                style = "steps-pre" if x_max else "steps-post"
                ax.plot(f[order, i], f[order, j], c="tab:red", lw=1, drawstyle=style)
        else:
            ax.text(0.5, 0.5, "no completed trials", ha="center", transform=ax.transAxes)
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
        ax.grid(alpha=0.3)
        if trials:
            ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"Pareto front: {len(front)} of {len(trials)} completed trials", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def front_hypervolume(
    study: optuna.Study, reference_point: Sequence[float] | None = None
) -> tuple[float, list[float]] | None:
    """Hypervolume of the completed trials and the reference point used (user units); the
    default reference is each objective's worst observed value pushed out by 10% of its range."""
    trials = _complete(study)
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
    ``solutions:`` list for ``optimization_results.yaml`` (see :func:`pareto_solutions`; the
    hypervolume is :func:`front_hypervolume`)."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_pareto_csv(study, sweep_dir / CSV_NAME)
    plot_front(study, sweep_dir / PNG_NAME)
    return pareto_solutions(study)


__all__ = [
    "CSV_NAME",
    "PNG_NAME",
    "format_front_table",
    "front_hypervolume",
    "objective_names",
    "pareto_solutions",
    "pareto_trials",
    "plot_front",
    "write_pareto_csv",
    "write_pareto_results",
]
