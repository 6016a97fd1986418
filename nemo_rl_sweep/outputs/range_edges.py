"""Range edges: a best configuration at the end of a swept range means the optimum may lie outside it.

A best value within ``fraction`` of a numeric range's width from one of its ends (measured on the log
scale for a log range, where 1e-5..1e-2 has three equal decades) is flagged with the key, the side,
and the direction to widen the range, with an example of a wider range in the same grammar. Choices
have no order and are not flagged; an integer range of one or two values has no inside, so it is not
flagged either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

from nemo_rl_sweep.outputs.format import format_number

EDGE_FRACTION = 0.05


@dataclass(frozen=True)
class RangeEdge:
    """``key``'s best value sits at its range's ``side`` (``low`` or ``high``)."""

    key: str
    side: str
    value: float
    low: float
    high: float
    log: bool
    suggestion: str | None  # a wider range in the search-space grammar, when one is sensible

    @property
    def widen(self) -> str:
        return "downward" if self.side == "low" else "upward"

    def message(self) -> str:
        bound = self.low if self.side == "low" else self.high
        scale = " (log scale)" if self.log else ""
        end = "bottom" if self.side == "low" else "top"
        text = (
            f"{self.key}: the best value {format_number(self.value)} is at the {end} of its range "
            f"[{format_number(self.low)}, {format_number(self.high)}]{scale}; the optimum may lie "
            f"{'below' if self.side == 'low' else 'above'} {format_number(bound)}: widen it {self.widen}"
        )
        return text + (f", e.g. {self.key}='{self.suggestion}'" if self.suggestion else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "side": self.side,
            "widen": self.widen,
            "value": self.value,
            "range": [self.low, self.high],
            "log": self.log,
            "suggestion": self.suggestion,
        }


def range_edges(
    best: Sequence[Mapping[str, Any]],
    distributions: Mapping[str, BaseDistribution],
    fraction: float = EDGE_FRACTION,
) -> list[RangeEdge]:
    """The (key, side) pairs where a best configuration sits within ``fraction`` of a range's end.

    ``best``: the best configurations' parameters (the answer, or the Pareto front's members). A key
    flagged by several of them is reported once, with the value closest to the edge.
    """
    found: dict[tuple[str, str], tuple[float, RangeEdge]] = {}
    for params in best:
        for key, dist in distributions.items():
            if key not in params or not isinstance(dist, (FloatDistribution, IntDistribution)):
                continue
            edge = _edge(key, float(params[key]), dist, fraction)
            if edge is None:
                continue
            distance, item = edge
            slot = (key, item.side)
            if slot not in found or distance < found[slot][0]:
                found[slot] = (distance, item)
    order = {k: i for i, k in enumerate(distributions)}
    return [e for _, e in sorted(found.values(), key=lambda d: (order[d[1].key], d[1].side))]


def _edge(
    key: str, value: float, dist: FloatDistribution | IntDistribution, fraction: float
) -> tuple[float, RangeEdge] | None:
    low, high = float(dist.low), float(dist.high)
    if high <= low:
        return None
    integer = isinstance(dist, IntDistribution)
    step = dist.step
    if step is not None and (high - low) / step < 2:  # one or two values: every value is an end
        return None
    if dist.log:
        span = math.log(high) - math.log(low)
        to_low = (math.log(value) - math.log(low)) / span
        to_high = (math.log(high) - math.log(value)) / span
    else:
        to_low = (value - low) / (high - low)
        to_high = (high - value) / (high - low)
    if step is not None:  # a stepped range: its first or last value is an end, however coarse
        to_low = 0.0 if value - low < step / 2 else to_low
        to_high = 0.0 if high - value < step / 2 else to_high
    side, distance = ("low", to_low) if to_low <= to_high else ("high", to_high)
    if distance > fraction:
        return None
    return distance, RangeEdge(
        key, side, value, low, high, bool(dist.log), _suggestion(low, high, side, dist.log, integer)
    )


def _suggestion(low: float, high: float, side: str, log: bool, integer: bool) -> str | None:
    """The same kind of range, one decade (log) or half a width (linear) wider on the flagged side."""
    if log:
        new_low, new_high = (low / 10, high) if side == "low" else (low, high * 10)
        if integer:
            new_low, new_high = max(1, math.floor(new_low)), math.ceil(new_high)
        return f"tag(log, interval({format_number(new_low)}, {format_number(new_high)}))"
    half = (high - low) / 2
    if side == "low":
        if low >= 0 and low - half <= 1e-9 * half:  # (rounding: 0.1 - 0.1 may not be 0)
            if low == 0:
                return None  # nothing below zero is likely meant for a non-negative key
            new_low, new_high = 0.0, high
        else:
            new_low, new_high = low - half, high
    else:
        new_low, new_high = low, high + half
    if integer:
        return f"interval({math.floor(new_low)}, {math.ceil(new_high)})"
    return f"interval({format_number(new_low)}, {format_number(new_high)})"


def best_configurations(study: optuna.Study) -> list[dict[str, Any]]:
    """The configurations the sweep answers with: the confirmed best (or front), else the best
    complete search trial (or the search's Pareto front)."""
    from nemo_rl_sweep.confirmation import is_confirmation, study_answer

    answer = study_answer(study)
    if answer is not None:
        return [dict(c.params) for c in answer.best]
    search = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not is_confirmation(t)
    ]
    if not search:
        return []
    if len(study.directions) == 1:
        maximize = study.directions[0] == StudyDirection.MAXIMIZE
        best = (
            max(search, key=lambda t: t.value) if maximize else min(search, key=lambda t: t.value)
        )
        return [dict(best.params)]
    from nemo_rl_sweep.outputs.results import pareto_trials  # the search's front

    return [dict(t.params) for t in pareto_trials(study)]


def study_range_edges(study: optuna.Study, fraction: float = EDGE_FRACTION) -> list[RangeEdge]:
    """:func:`range_edges` of a study's answer over the ranges its trials were drawn from."""
    distributions: dict[str, BaseDistribution] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        for key, dist in t.distributions.items():
            distributions.setdefault(key, dist)
    return range_edges(best_configurations(study), distributions, fraction)


def summary_lines(edges: Sequence[RangeEdge]) -> list[str]:
    if not edges:
        return []
    return ["Range edges (the optimum may lie outside the searched range):"] + [
        f"  {e.message()}" for e in edges
    ]
