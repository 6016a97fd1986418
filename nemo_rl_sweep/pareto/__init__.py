"""Multi-objective utilities: Pareto fronts, non-dominated sorting and exact hypervolume.

Plain numpy math (no torch, no Optuna, no config errors: bad input is a ``ValueError``), so result
writers, the samplers and the benchmarks all measure fronts the same way. A ``StudyDirection`` is
accepted as a direction by its name.
"""

from nemo_rl_sweep.pareto.front import (
    dominates,
    non_dominated_sort,
    normalize_directions,
    pareto_front,
    pareto_front_mask,
    to_minimization,
)
from nemo_rl_sweep.pareto.hypervolume import (
    default_reference_point,
    hypervolume,
    hypervolume_improvement,
    non_dominated_boxes,
)

__all__ = [
    "default_reference_point",
    "dominates",
    "hypervolume",
    "hypervolume_improvement",
    "non_dominated_boxes",
    "non_dominated_sort",
    "normalize_directions",
    "pareto_front",
    "pareto_front_mask",
    "to_minimization",
]
