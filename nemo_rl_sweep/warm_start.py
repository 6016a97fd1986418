"""Warm start: known configurations first, and what an earlier study already learned.

Two ways to start a sweep from knowledge instead of from nothing:

- ``hydra.sweeper.enqueue``: a list of ``{key: value}`` dicts (the recipe's defaults, last month's
  best) run as the first trials. Each key must be a swept key and each value must lie in its range or
  choices; otherwise Optuna would quietly run a point outside the space, so the entry is refused
  before any job, naming ``hydra.sweeper.enqueue[i].key``. Keys left out are sampled as usual.
- ``hydra.sweeper.warm_start_from: {storage, study_name}``: the COMPLETE trials of an earlier study
  whose params fit this search space are copied into the new study (``study.add_trial``), with their
  values, intermediate values and metrics. The strategy's sampler then sees them as finished trials;
  a grid skips points already run. Copies carry the ``copied_from`` user attribute (``study#number``),
  do not count toward ``n_trials`` and are copied once, also when the sweep is resumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.space import SearchSpace, split_key, trial_overrides

ENQUEUE_KEY = "hydra.sweeper.enqueue"
SOURCE_KEY = "hydra.sweeper.warm_start_from"
_COPIED_USER_ATTRS = (ledger.ATTR_METRICS, ledger.ATTR_JOB_DIR, ledger.ATTR_DURATION)


class _Outside(Exception):
    """A value that does not belong to a distribution; the message says why."""


# ------------------------------------------------------------------------------------- values


def fit_value(dist: BaseDistribution, value: Any) -> Any:
    """``value`` as ``dist`` stores it (``8.0`` -> ``8`` for an integer range), or ``_Outside``."""
    if isinstance(dist, CategoricalDistribution):
        for choice in dist.choices:
            if type(choice) is type(value) and choice == value:
                return choice
        for choice in dist.choices:  # 8 and 8.0 are the same choice; True is not 1
            if _is_number(choice) and _is_number(value) and float(choice) == float(value):
                return choice
        raise _Outside("is not one of the choices")
    number = _as_number(value)
    if isinstance(dist, IntDistribution):
        if not float(number).is_integer():
            raise _Outside("is not a whole number")
        number = int(number)
        if not dist.low <= number <= dist.high:
            raise _Outside("is outside the range")
        if (number - dist.low) % dist.step:
            raise _Outside(f"is not on the range's step {dist.step}")
        return number
    if isinstance(dist, FloatDistribution):
        number = float(number)
        tol = 1e-12 * max(1.0, abs(dist.low), abs(dist.high))
        if not dist.low - tol <= number <= dist.high + tol:
            raise _Outside("is outside the range")
        number = min(max(number, dist.low), dist.high)
        if dist.step is not None:
            k = round((number - dist.low) / dist.step)
            if abs(dist.low + k * dist.step - number) > 1e-9 * max(1.0, abs(dist.step)):
                raise _Outside(f"is not on the range's step {dist.step}")
            number = dist.low + k * dist.step
        return number
    raise _Outside(f"cannot be checked against {type(dist).__name__}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_number(value: Any) -> float | int:
    if _is_number(value):
        if not math.isfinite(value):
            raise _Outside("is not a finite number")
        return value
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            number = float(value)
        except ValueError:
            raise _Outside("is not a number") from None
        if math.isfinite(number):
            return int(number) if number.is_integer() and "." not in value else number
    raise _Outside("is not a number")


# ------------------------------------------------------------------------------------- enqueue


def check_enqueue(
    entries: Sequence[Any] | None, space: SearchSpace, n_trials: int | None
) -> list[dict[str, Any]]:
    """The enqueued trials as ``{key: value}`` in the space's own types; refuses any that do not fit."""
    if entries is None:
        return []
    if isinstance(entries, Mapping) or isinstance(entries, (str, bytes)):
        raise SweepConfigError(
            ENQUEUE_KEY,
            f"must be a list of {{key: value}} dicts, got {type(entries).__name__}",
            "write hydra.sweeper.enqueue=[{policy.optimizer.kwargs.lr: 0.003}]",
        )
    described = space.describe()
    out = []
    for i, entry in enumerate(entries):
        where = f"{ENQUEUE_KEY}[{i}]"
        if not isinstance(entry, Mapping):
            raise SweepConfigError(
                where,
                f"must be a {{key: value}} dict, got {entry!r}",
                "write each enqueued trial as a mapping of swept keys to values",
            )
        params: dict[str, Any] = {}
        for raw_key, value in entry.items():
            _, key = split_key(str(raw_key))
            if key in space.fixed:
                raise SweepConfigError(
                    f"{where}.{key}",
                    f"is fixed to {space.fixed[key].value} in this sweep, not swept",
                    "drop it from the enqueued trial, or sweep the key",
                )
            if key not in space.params:
                swept = ", ".join(space.params) or "none"
                raise SweepConfigError(
                    f"{where}.{key}",
                    "is not a key of the search space",
                    f"enqueue only swept keys ({swept}), or add the key to hydra.sweeper.params",
                )
            try:
                params[key] = fit_value(space.params[key].distribution, value)
            except _Outside as why:
                raise SweepConfigError(
                    f"{where}.{key}",
                    f"value {value!r} {why} of {described[key]}",
                    "enqueue a value inside the search space, or widen the space",
                ) from None
        out.append(params)
    if n_trials is not None and len(out) > n_trials:
        raise SweepConfigError(
            ENQUEUE_KEY,
            f"queues {len(out)} trials but hydra.sweeper.n_trials is {n_trials}",
            f"raise n_trials to at least {len(out)}, or enqueue fewer",
        )
    return out


RECIPE_ENTRY = "recipe"


def expand_recipe_entries(
    entries: Sequence[Any] | None, space: SearchSpace, lookup: Callable[[str], Any]
) -> list[Any]:
    """Replace each ``"recipe"`` entry by the trial config's own values of the swept keys.

    ``enqueue: [recipe]`` runs the recipe's defaults as the first trial, a baseline every sweep
    should beat. ``lookup(key)`` returns the config's value or raises ``KeyError`` (a key the config
    lacks, swept as ``+key``, is then sampled as usual). The values are checked like any entry.
    """
    out: list[Any] = []
    for entry in entries or []:
        if entry != RECIPE_ENTRY:
            out.append(entry)
            continue
        values = {}
        for key in space.params:
            try:
                value = lookup(key)
            except KeyError:
                continue
            if value is not None:
                values[key] = value
        out.append(values)
    return out


# ------------------------------------------------------------------------------ earlier studies


@dataclass(frozen=True)
class WarmStartSource:
    """An earlier study to seed from; ``storage`` None means this sweep's own ledger."""

    study_name: str
    storage: str | None = None


def check_source(node: Any) -> WarmStartSource | None:
    """``hydra.sweeper.warm_start_from`` checked for shape (the study itself is opened at run time)."""
    if node is None or (isinstance(node, Mapping) and not node):
        return None
    example = (
        "e.g. hydra.sweeper.warm_start_from={study_name: last_month, storage: sqlite:///old.db}"
    )
    if not isinstance(node, Mapping):
        raise SweepConfigError(SOURCE_KEY, f"must be a mapping, got {node!r}", example)
    unknown = sorted(set(node) - {"study_name", "storage"})
    if unknown:
        raise SweepConfigError(
            f"{SOURCE_KEY}.{unknown[0]}",
            "is not a warm-start setting",
            "use study_name and storage",
        )
    name, storage = node.get("study_name"), node.get("storage")
    if not isinstance(name, str) or not name.strip():
        raise SweepConfigError(
            f"{SOURCE_KEY}.study_name", f"must be a study name, got {name!r}", example
        )
    if storage is not None and (not isinstance(storage, str) or not storage.strip()):
        raise SweepConfigError(
            f"{SOURCE_KEY}.storage",
            f"must be a storage URL or null, got {storage!r}",
            "use sqlite:///path/to/ledger.db, another SQLAlchemy URL, or journal:/path/to/file.log",
        )
    return WarmStartSource(name, storage)


def seed_from_study(
    study: optuna.Study,
    source: WarmStartSource,
    space: SearchSpace,
    *,
    own_storage_url: str,
    message: Callable[[str], None] | None = None,
) -> list[int]:
    """Copy the COMPLETE trials of ``source`` that fit ``space`` into ``study``; their new numbers.

    A trial fits when it has every swept key with a value inside this space, and the keys this sweep
    fixes had the same values there (when its overrides were recorded). Trials copied before (by an
    earlier run of this sweep) are not copied again.
    """
    url = (
        ledger.absolute_storage_url(source.storage, Path.cwd())
        if source.storage
        else own_storage_url
    )
    if url == own_storage_url and source.study_name == study.study_name:
        raise SweepConfigError(
            f"{SOURCE_KEY}.study_name",
            f"is this sweep's own study {study.study_name!r}",
            "name an earlier study; to resume this one, just run the same command again",
        )
    storage = ledger.open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if source.study_name not in names:
        raise SweepConfigError(
            f"{SOURCE_KEY}.study_name",
            f"no study {source.study_name!r} in {url}",
            f"use one of: {', '.join(names)}" if names else "check warm_start_from.storage",
        )
    earlier = optuna.load_study(study_name=source.study_name, storage=storage)
    _check_same_objectives(earlier, study)

    already = {t.user_attrs.get(ledger.ATTR_COPIED_FROM) for t in study.get_trials(deepcopy=False)}
    distributions = space.distributions
    copies, skipped = [], 0
    for old in earlier.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        tag = f"{earlier.study_name}#{old.number}"
        if tag in already:
            continue
        params = _fitting_params(old, space, distributions)
        if params is None:
            skipped += 1
            continue
        attrs = {k: old.user_attrs[k] for k in _COPIED_USER_ATTRS if k in old.user_attrs}
        attrs[ledger.ATTR_OVERRIDES] = trial_overrides(space, params)
        attrs[ledger.ATTR_COPIED_FROM] = tag
        copies.append(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE,
                values=list(old.values),
                params=params,
                distributions=distributions,
                user_attrs=attrs,
                intermediate_values=dict(old.intermediate_values),
            )
        )
    before = len(study.get_trials(deepcopy=False))
    study.add_trials(copies)
    if message is not None and (copies or skipped):
        message(
            f"warm start: copied {len(copies)} finished trial(s) of study {earlier.study_name!r}"
            + (f"; {skipped} left out (outside this search space)" if skipped else "")
        )
    return list(range(before, before + len(copies)))


def _check_same_objectives(earlier: optuna.Study, study: optuna.Study) -> None:
    have = [d.name.lower() for d in earlier.directions]
    want = [d.name.lower() for d in study.directions]
    old_names, new_names = earlier.metric_names, study.metric_names
    if have != want or (old_names and new_names and list(old_names) != list(new_names)):
        raise SweepConfigError(
            f"{SOURCE_KEY}.study_name",
            f"study {earlier.study_name!r} optimised {list(old_names or [])} {have}, "
            f"this sweep {list(new_names or [])} {want}",
            "warm-start from a study with the same metric and direction",
        )


def _fitting_params(
    old: FrozenTrial, space: SearchSpace, distributions: Mapping[str, BaseDistribution]
) -> dict[str, Any] | None:
    params = {}
    for key, dist in distributions.items():
        if key not in old.params:
            return None
        try:
            params[key] = fit_value(dist, old.params[key])
        except _Outside:
            return None
    recorded = old.user_attrs.get(ledger.ATTR_OVERRIDES)
    if isinstance(recorded, list):
        values = {}
        for text in recorded:
            if isinstance(text, str) and "=" in text:
                raw_key, value = text.split("=", 1)
                values[raw_key.lstrip("+")] = value
        for key, fixed in space.fixed.items():
            if key in values and values[key] != fixed.value:
                return None
    return params
