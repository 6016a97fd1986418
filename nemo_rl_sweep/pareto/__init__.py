"""Multi-objective utilities: Pareto fronts, non-dominated sorting and exact hypervolume.

These are plain numpy functions (no Optuna, no torch) so results writers, the sampler and the
benchmarks all measure fronts the same way.
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
    validate_reference_point,
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
    "validate_reference_point",
]
