"""The sweeper's config schema, registered as ``hydra/sweeper: nemo_rl``.

Its keys are ``nemo_rl_sweep.settings.SweepSettings``'s fields (documented there), plus what Hydra
itself needs: ``_target_``, ``_recursive_``, the search space ``params`` and each job's
``trial_number``. Keys carry hydra-optuna-sweeper's names where they mean the same, so a sweep moves
over by changing one ``override /hydra/sweeper:`` line.
"""

import dataclasses
from typing import Any

from hydra.core.config_store import ConfigStore

from nemo_rl_sweep.settings import SweepSettings


def _setting_fields() -> list[tuple[str, Any, Any]]:
    """Every key typed Any: a value of the wrong type reaches ``settings.check_types``, which
    refuses it as one ``Error:`` line (a typed node would fail in Hydra's merge, a multi-line
    error with exit code 1)."""
    out = []
    for f in dataclasses.fields(SweepSettings):
        if f.default_factory is not dataclasses.MISSING:
            default = dataclasses.field(default_factory=f.default_factory)
        else:
            default = dataclasses.field(default=f.default)
        out.append((f.name, Any, default))
    return out


NemoRLSweeperConf = dataclasses.make_dataclass(
    "NemoRLSweeperConf",
    [
        (
            "_target_",
            str,
            dataclasses.field(default="hydra_plugins.nemo_rl_sweeper.sweeper.NemoRLSweeper"),
        ),
        # hand `sampler`/`pruner` over as {_target_: ...} nodes, checked by nemo_rl_sweep, not objects
        ("_recursive_", bool, dataclasses.field(default=False)),
        *_setting_fields(),
        # key -> Hydra sweep string; filled by the search_space config group
        ("params", Any, dataclasses.field(default=None)),
        # set by the sweeper for each job so the job can find its ledger trial; not for users
        ("trial_number", int | None, dataclasses.field(default=None)),
    ],
)
NemoRLSweeperConf.__module__ = __name__

ConfigStore.instance().store(
    group="hydra/sweeper", name="nemo_rl", node=NemoRLSweeperConf, provider="nemo_rl_sweeper"
)
