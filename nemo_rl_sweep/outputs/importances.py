"""Parameter importances of a one-objective study (or of the first objective of several), by two
methods side by side: PED-ANOVA (Optuna's default evaluator, which asks which values the best
trials share) and fANOVA (Optuna's FanovaImportanceEvaluator: the share of the objective's variance a
random forest attributes to each parameter; it needs scikit-learn).

They answer different questions, so they are shown together: a parameter both rank high matters; one
only fANOVA ranks high moves the objective a lot but not among the best trials. Confirmation runs are
left out: they repeat a few configurations with new seeds and would weigh those configurations more.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep.outputs.format import table

METHODS = ("fanova", "ped_anova")
METHOD_TITLES = {"fanova": "fANOVA", "ped_anova": "PED-ANOVA"}


def evaluator(method: str) -> optuna.importance.BaseImportanceEvaluator:
    """The evaluator of ``method``, seeded where it draws (fANOVA's forest), so reports repeat."""
    if method == "fanova":
        return optuna.importance.FanovaImportanceEvaluator(seed=0)
    if method == "ped_anova":
        return optuna.importance.PedAnovaImportanceEvaluator()
    raise ValueError(f"unknown importance method {method!r}; use one of {', '.join(METHODS)}")


def search_study(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of the study's complete search trials (confirmation runs left out)."""
    from nemo_rl_sweep.confirmation import is_confirmation

    copy = optuna.create_study(directions=list(study.directions))
    copy.add_trials(
        [
            t
            for t in study.get_trials(deepcopy=True, states=(TrialState.COMPLETE,))
            if not is_confirmation(t)
        ]
    )
    return copy


def can_evaluate(study: optuna.Study) -> bool:
    """Two or more complete trials over two or more parameters, with values that differ."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = {p for t in complete for p in t.params}
    return len(complete) >= 2 and len(params) > 1 and len({tuple(t.values) for t in complete}) > 1


def importances(study: optuna.Study) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """``{method: {param: importance}}`` for each method that could be computed (most important
    first; empty when the study cannot have importances yet), and ``{method: why not}`` for each
    method that failed (fANOVA without scikit-learn, say)."""
    search = search_study(study)
    if not can_evaluate(search):
        return {}, {}
    target = _first_objective(search)
    out: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    for method in METHODS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # normalised to sum to one, as Optuna's importance plots show them
                values = optuna.importance.get_param_importances(
                    search, evaluator=evaluator(method), target=target
                )
        except Exception as exc:  # noqa: BLE001 - one method failing leaves the other
            errors[method] = (
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            )
            continue
        out[method] = {str(k): float(v) for k, v in values.items()}
    return out, errors


def summary_lines(study: optuna.Study) -> list[str]:
    """A table of both methods' importances, keys in fANOVA's order (the summary's block)."""
    values, errors = importances(study)
    if not values:
        return (
            [f"Parameter importances: not computed ({'; '.join(errors.values())})"]
            if errors
            else []
        )
    methods = [m for m in METHODS if m in values]
    keys = list(values[methods[0]])
    for m in methods[1:]:
        keys += [k for k in values[m] if k not in keys]
    rows = [[k] + [f"{values[m][k]:.3f}" if k in values[m] else "-" for m in methods] for k in keys]
    lines = [
        "Parameter importances (shares summing to 1; complete search trials, first objective):"
    ]
    lines += table(["parameter"] + [METHOD_TITLES[m] for m in methods], rows)
    for m, why in errors.items():
        lines.append(f"  ({METHOD_TITLES[m]} not computed: {why})")
    return lines


def _first_objective(study: optuna.Study) -> Callable[[FrozenTrial], float] | None:
    return (lambda t: t.values[0]) if len(study.directions) > 1 else None
