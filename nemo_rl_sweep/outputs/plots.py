"""Pictures of a sweep, written into its folder: PNG files (matplotlib, Agg) and interactive HTML (plotly).

Optuna already draws what people want to see of a study, in both toolkits, so this module picks the
plots that fit the study and writes them; it draws nothing by hand:

- ``history``: every trial's value over time with the best-so-far line (one objective);
- ``importances`` and ``importances_fanova``: parameter importances by PED-ANOVA (Optuna's default
  evaluator) and by fANOVA (needs two complete trials, two parameters and values that differ);
- ``slice`` and ``parallel_coordinate``: where in the space the good values are (both as HTML; as PNG
  the slices for up to three parameters, else the parallel coordinates);
- ``intermediate_values``: the learning curves that trials reported, pruned ones included;
- ``timeline``: when each trial ran and how it ended (HTML);
- ``pareto_front``: the front for two or three objectives (HTML);
- ``index.html``: every HTML figure on one page.

Beside them, :func:`plot_front` draws ``pareto_front.png``: every pair of objectives with the front
marked, which the result files of a multi-objective sweep carry after every batch.

HTML files share one ``plotly.min.js`` in the same folder, so they open offline (a cluster has no CDN)
without carrying 4 MB each; no kaleido is needed. Writing plots never fails a sweep: a plot that cannot
be drawn is one line on the console and the others are still written.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep.outputs.files import replaced, replaced_path, write_text
from nemo_rl_sweep.outputs.format import PREFIX, clean_text, metric_names, short_names
from nemo_rl_sweep.outputs.importances import METHOD_TITLES

PLOTS_DIR = "plots"
PARETO_PNG = "pareto_front.png"
PNG_DPI = 100
MAX_SLICE_PARAMS = 3


@dataclass
class PlotSpec:
    """One picture: its file stem, and how to draw it with plotly and with matplotlib (or None)."""

    name: str
    title: str
    html: Callable[[optuna.Study], Any] | None
    png: Callable[[optuna.Study], Any] | None


def write_plots(
    study: optuna.Study,
    sweep_dir: str | Path,
    *,
    png: bool = True,
    html: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the plots that fit ``study`` into ``<sweep_dir>/plots/``; return the files written.

    Never raises: the sweep is done by now, and a missing picture must not turn it into a failure.
    Each problem is one line through ``log`` (stdout by default).
    """
    say = log or (lambda text: print(f"{PREFIX} {text}", flush=True))
    try:
        return _write_plots(study, Path(sweep_dir) / PLOTS_DIR, png=png, html=html, say=say)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the sweep result stands
        say(f"plots not written: {type(exc).__name__}: {clean_text(exc, 200)}")
        return []


def plot_specs(study: optuna.Study) -> list[PlotSpec]:
    """The plots that make sense for this study, in the order a person reads them."""
    _pyplot()  # Agg before Optuna's matplotlib module imports pyplot
    from optuna import visualization as pv
    from optuna.visualization import matplotlib as mv

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    names = metric_names(study)
    multi = len(study.directions) > 1
    params = {p for t in complete for p in t.params}
    specs: list[PlotSpec] = []
    if complete and not multi:
        specs.append(
            PlotSpec(
                "history",
                f"Optimisation history of {names[0]}",
                lambda s: pv.plot_optimization_history(s, target_name=names[0]),
                lambda s: mv.plot_optimization_history(s, target_name=names[0]),
            )
        )
    if multi and complete and len(names) in (2, 3):
        specs.append(
            PlotSpec(
                "pareto_front",
                "Pareto front",
                lambda s: pv.plot_pareto_front(s, target_names=names),
                None,
            )
        )
    if len(complete) >= 2 and len(params) > 1 and _values_vary(complete):
        # PED-ANOVA (Optuna's default) and fANOVA side by side, as in the summary
        for stem, method in (("importances", "ped_anova"), ("importances_fanova", "fanova")):
            kw: dict[str, Any] = {"evaluator": _CachedImportance(method)}
            if not multi:
                kw["target_name"] = names[0]
            specs.append(
                PlotSpec(
                    stem,
                    f"Parameter importances ({METHOD_TITLES[method]})",
                    lambda s, kw=kw: pv.plot_param_importances(s, **kw),
                    lambda s, kw=kw: mv.plot_param_importances(s, **kw),
                )
            )
    if complete and params:
        target = _first_objective(multi)
        # one PNG of the two (each costs a second of drawing): slices read best for a few
        # parameters, parallel coordinates for many
        few = len(params) <= MAX_SLICE_PARAMS
        specs.append(
            PlotSpec(
                "slice",
                f"{names[0]} against each parameter",
                lambda s: pv.plot_slice(s, target=target, target_name=names[0]),
                (lambda s: mv.plot_slice(s, target=target, target_name=names[0])) if few else None,
            )
        )
        specs.append(
            PlotSpec(
                "parallel_coordinate",
                f"Parallel coordinates ({names[0]})",
                lambda s: pv.plot_parallel_coordinate(s, target=target, target_name=names[0]),
                None
                if few
                else (
                    lambda s: mv.plot_parallel_coordinate(s, target=target, target_name=names[0])
                ),
            )
        )
    if any(t.intermediate_values for t in trials):
        specs.append(
            PlotSpec(
                "intermediate_values",
                f"Intermediate values ({names[0]} at each validation)",
                pv.plot_intermediate_values,
                mv.plot_intermediate_values,
            )
        )
    if any(t.datetime_start for t in trials):
        specs.append(PlotSpec("timeline", "Timeline of the trials", pv.plot_timeline, None))
    return specs


# -------------------------------------------------------------------------------------- writing


def _write_plots(
    study: optuna.Study, out: Path, *, png: bool, html: bool, say: Callable[[str], None]
) -> list[Path]:
    with _quiet_optuna():
        snapshot = snapshot_study(study)
        specs = plot_specs(snapshot)
    if not specs:
        return []
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures: list[tuple[PlotSpec, Any]] = []
    with _quiet_optuna():
        for spec in specs:
            if html and spec.html is not None:
                try:
                    fig = spec.html(snapshot)
                    path = out / f"{spec.name}.html"
                    with replaced_path(path) as tmp:  # plotly.min.js goes beside it
                        fig.write_html(str(tmp), include_plotlyjs="directory")
                    written.append(path)
                    figures.append((spec, fig))
                except Exception as exc:  # noqa: BLE001
                    say(
                        f"plot {spec.name}.html skipped: {type(exc).__name__}: {clean_text(exc, 160)}"
                    )
        if png and any(s.png is not None for s in specs):
            plt = _pyplot()
            for spec in specs:
                if spec.png is None:
                    continue
                try:
                    written.append(_save_png(plt, spec.png(snapshot), out / f"{spec.name}.png"))
                except Exception as exc:  # noqa: BLE001
                    plt.close("all")
                    say(
                        f"plot {spec.name}.png skipped: {type(exc).__name__}: {clean_text(exc, 160)}"
                    )
    if figures:
        written.append(_write_index(study.study_name, figures, out / "index.html"))
    return written


def _save_png(plt: Any, axes: Any, path: Path) -> Path:
    import numpy as np

    first = np.asarray(axes, dtype=object).flat[0]
    fig = first.figure
    try:
        with replaced(path, "wb") as fh:
            fig.savefig(fh, dpi=PNG_DPI, bbox_inches="tight", format="png")  # long names inside
    finally:
        plt.close(fig)
    return path


def _write_index(study_name: str, figures: Sequence[tuple[PlotSpec, Any]], path: Path) -> Path:
    """One page with every figure, so a single file shows the whole sweep."""
    import html as html_lib

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html_lib.escape(study_name)}</title>",
        "<script src='plotly.min.js'></script></head><body style='font-family:sans-serif'>",
        f"<h1>Study {html_lib.escape(study_name)}</h1>",
    ]
    for spec, fig in figures:
        parts.append(f"<h2>{html_lib.escape(spec.title)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
    parts.append("</body></html>")
    write_text(path, "\n".join(parts))
    return path


def plot_front(
    study: optuna.Study,
    front: Sequence[FrozenTrial],
    trials: Sequence[FrozenTrial],
    path: str | Path,
) -> Path:
    """Save a PNG of ``trials`` with their Pareto ``front`` marked, one panel per pair of objectives
    (the first four objectives at most)."""
    import numpy as np

    plt = _pyplot()
    path = Path(path)
    names = metric_names(study)
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
    with replaced(path, "wb") as fh:
        fig.savefig(fh, dpi=PNG_DPI, format="png")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------- helpers


def snapshot_study(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of the study's trials: one read of the ledger instead of one per plot, and
    a consistent picture while other processes keep writing to it.

    Parameters carry their shortest distinct names (``policy.optimizer.kwargs.lr`` -> ``lr``): NeMo RL
    key paths are long enough to run into each other on an axis; the summary prints the full keys.
    """
    copy = optuna.create_study(study_name=study.study_name, directions=list(study.directions))
    names = study.metric_names
    if names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            copy.set_metric_names(list(names))
    trials = [t for t in study.get_trials(deepcopy=True) if t.state != TrialState.WAITING]
    short = short_names(sorted({k for t in trials for k in t.params}))
    for t in trials:
        t.distributions = {short[k]: d for k, d in t.distributions.items()}
        t.params = {short[k]: v for k, v in t.params.items()}
    copy.add_trials(trials)
    return copy


class _CachedImportance(optuna.importance.BaseImportanceEvaluator):
    """An importance evaluator (PED-ANOVA, Optuna's default, or fANOVA) over the search's trials
    (confirmation runs left out, as in the summary), computed once for both the HTML and the PNG
    of a one-objective study."""

    def __init__(self, method: str = "ped_anova") -> None:
        from nemo_rl_sweep.outputs.importances import evaluator

        self._inner = evaluator(method)
        self._cache: dict[Any, dict[str, float]] = {}

    def evaluate(
        self,
        study: optuna.Study,
        params: list[str] | None = None,
        *,
        target: Callable[[FrozenTrial], float] | None = None,
    ) -> dict[str, float]:
        from nemo_rl_sweep.outputs.importances import search_study

        if target is not None:
            return self._inner.evaluate(search_study(study), params=params, target=target)
        key = (id(study), tuple(params) if params else None)
        if key not in self._cache:
            self._cache[key] = self._inner.evaluate(search_study(study), params=params)
        return dict(self._cache[key])


def _first_objective(multi: bool) -> Callable[[FrozenTrial], float] | None:
    return (lambda t: t.values[0]) if multi else None


def _values_vary(complete: Sequence[FrozenTrial]) -> bool:
    """All-equal values have no importances (the evaluators divide by their spread)."""
    return len({tuple(t.values) for t in complete}) > 1


def _pyplot() -> Any:
    """pyplot on the Agg backend (no display on a cluster node), unless the caller chose one."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class _quiet_optuna:
    """Optuna warns that its matplotlib plots are experimental and that a study has no pruner; a
    user at the end of a sweep needs neither."""

    def __enter__(self) -> None:
        self._level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)

    def __exit__(self, *exc: object) -> None:
        self._warnings.__exit__(*exc)
        optuna.logging.set_verbosity(self._level)
