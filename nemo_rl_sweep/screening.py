"""Before a sweep starts: does any point of its space pass the trainer's rules?

The loop screens every trial as it is asked (``Sweep(screen=...)``); this module looks at the space
as a whole, once, so that a space where no point could run is refused before the ledger is touched,
and a grid says which of its points it will skip. The rules NeMo RL enforces read counts and flags
(batch sizes, group sizes, parallel sizes), so a continuous parameter is probed at its two ends and
a discrete one at each value: a bounded set of points stands for the space.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.space import SearchSpace, format_value, trial_overrides

__all__ = ["MAX_PROBES", "Screen", "check_feasible", "probe_points"]

MAX_PROBES = 256
# trial overrides -> None, or the rule the trial's config breaks (it is then never launched)
Screen = Callable[[list[str]], "str | None"]


def _probe_values(dist: Any) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        values = list(range(dist.low, dist.high + 1, dist.step))
        return values if len(values) <= 16 else [dist.low, dist.high]
    if isinstance(dist, FloatDistribution):
        return [dist.low] if dist.low == dist.high else [dist.low, dist.high]
    raise TypeError(f"unsupported distribution {dist!r}")


def probe_points(space: SearchSpace) -> list[dict[str, Any]]:
    """At most ``MAX_PROBES`` points standing for the space: each discrete value, each end of a range."""
    names = list(space.distributions)
    values = [_probe_values(space.distributions[n]) for n in names]
    return [dict(zip(names, p)) for p in itertools.islice(itertools.product(*values), MAX_PROBES)]


def check_feasible(
    space: SearchSpace,
    grid_points: Sequence[dict[str, Any]] | None,
    screen: Screen,
    say: Callable[[str], Any],
) -> None:
    """Refuse a space none of whose points passes ``screen``; for a grid, say which points will be
    skipped (they are recorded as infeasible trials when their turn comes, never launched)."""
    points = list(grid_points) if grid_points is not None else probe_points(space)
    if not points:
        return
    broken = []
    for params in points:
        rule = screen(trial_overrides(space, params))
        if rule is not None:
            broken.append((" ".join(f"{k}={format_value(v)}" for k, v in params.items()), rule))
    if len(broken) == len(points):
        point, rule = broken[0]
        raise SweepConfigError(
            "hydra.sweeper.params",
            f"no point of the search space can run ({len(points)} checked); "
            f"e.g. {point} breaks {rule}",
            "change the swept ranges, or the recipe values the rule names, so some trials pass",
        )
    if grid_points is not None and broken:
        say(
            f"grid: {len(broken)} of {len(points)} points break a rule and will be skipped (recorded as infeasible, not run):"
        )
        for point, rule in broken:
            say(f"  {point}: {rule}")
