"""Pruners: checked before any job, recorded in the ledger, rebuilt inside each job.

Why the ledger holds the pruner: a job decides for itself whether to stop (it reports each validation
to its ledger trial and asks ``trial.should_prune()``), so pruning works the same under the basic,
joblib and Slurm launchers. But Optuna keeps the pruner in the ``Study`` object, not in the storage,
and a study loaded without one silently gets Optuna's default ``MedianPruner``. So the sweeper writes
its pruner node (``{_target_: ..., **kwargs}`` or None) as a study user attribute, and the job builds
exactly that pruner, or a ``NopPruner`` when the sweep has none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.pruners import BasePruner, NopPruner

from nemo_rl_sweep.errors import SweepConfigError

KEY = "hydra.sweeper.pruner"
STUDY_ATTR_PRUNER = "nemo_rl_sweep.pruner"
_EXAMPLE = "e.g. hydra.sweeper.pruner={_target_: optuna.pruners.MedianPruner, n_warmup_steps: 20}"


def check_pruner(node: Any, metric_names: Sequence[str]) -> BasePruner | None:
    """The pruner of ``node`` (None for null or ``{}``), refusing what cannot work, before any job.

    Refused: a node that is not a mapping, an unknown ``_target_``, a class that is not a pruner,
    arguments the pruner does not take or rejects, and any real pruner on a sweep of several
    objectives (Optuna reports and prunes on one value per step).
    """
    if node is None or (isinstance(node, Mapping) and not node):
        return None
    if not isinstance(node, Mapping):
        raise SweepConfigError(
            KEY, f"must be a {{_target_: ...}} node or null, got {node!r}", _EXAMPLE
        )
    from nemo_rl_sweep.targets import build_from_target

    pruner = build_from_target(node, BasePruner, KEY)
    if len(metric_names) > 1 and not isinstance(pruner, NopPruner):
        raise SweepConfigError(
            KEY,
            f"Optuna prunes on one objective, this sweep has {len(metric_names)} "
            f"({', '.join(metric_names)})",
            "set hydra.sweeper.pruner=null, or sweep a single metric",
        )
    return pruner


def record_pruner(study: optuna.Study, node: Mapping[str, Any] | None) -> None:
    """Write the sweep's pruner node into the study, for its jobs to rebuild (None: no pruning)."""
    study.set_user_attr(STUDY_ATTR_PRUNER, dict(node) if node else None)


def stored_pruner(study: optuna.Study) -> BasePruner:
    """The pruner the sweeper recorded for ``study``; ``NopPruner`` when it recorded none."""
    node = study.user_attrs.get(STUDY_ATTR_PRUNER)
    if not node:
        return NopPruner()
    from nemo_rl_sweep.targets import build_from_target

    return build_from_target(node, BasePruner, KEY)
