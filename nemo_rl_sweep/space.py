"""The search space: what each swept key may take, checked before any trial runs.

A space is written in Hydra's own override grammar, so users keep the syntax they know from the basic
and Optuna sweepers (``choice``, ``range``, ``interval``, ``tag(log, ...)``). Two rules differ from
hydra-optuna-sweeper on purpose: ``range`` excludes its stop, as Python and Hydra's basic sweeper do, and
``interval`` with two integer ends is an integer interval. Each parameter turns into an Optuna
distribution, because every trial is a trial of an Optuna study.

Parsing uses Hydra's grammar and imports Hydra lazily; building a ``SearchSpace`` from Python objects
needs no Hydra at all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from nemo_rl_sweep.errors import SweepConfigError

Scalar = None | bool | int | float | str
_FORMS = (
    "choice(a,b,...), range(start,stop[,step]), interval(low,high) or tag(log, interval(low,high))"
)


@dataclass(frozen=True)
class Choice:
    """One of a finite list of values, tried in the order written."""

    values: tuple[Scalar, ...]

    def count(self) -> int:
        return len(self.values)

    def value(self, i: int) -> Scalar:
        return self.values[i]

    def grid_values(self) -> list[Scalar]:
        return list(self.values)

    def distribution(self) -> BaseDistribution:
        return CategoricalDistribution(self.values)


@dataclass(frozen=True)
class Range:
    """``start, start+step, ...`` strictly below ``stop``, as Python's ``range``."""

    start: int | float
    stop: int | float
    step: int | float = 1

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) for v in (self.start, self.stop, self.step))

    def count(self) -> int:
        """How many values, computed, never listed: a range may hold billions."""
        if self.integer:
            return max(-(-(self.stop - self.start) // self.step), 0)
        n = (self.stop - self.start) / self.step - 1e-12
        return max(math.ceil(n), 0) if math.isfinite(n) else -1

    def value(self, i: int) -> int | float:
        if self.integer:
            return self.start + i * self.step
        # in decimal, as written and as Optuna checks a step: 0.1 + 2 * 0.1 is 0.3
        return float(Decimal(str(self.start)) + i * Decimal(str(self.step)))

    def grid_values(self) -> list[int | float]:
        return [self.value(i) for i in range(self.count())]

    def distribution(self) -> BaseDistribution:
        last = self.value(self.count() - 1)
        if self.integer:
            return IntDistribution(self.start, last, step=self.step)
        if last == self.value(0):
            return FloatDistribution(last, last)
        return FloatDistribution(self.value(0), last, step=float(self.step))


@dataclass(frozen=True)
class Interval:
    """A continuous (or integer) interval, optionally searched on a log scale."""

    low: int | float
    high: int | float
    log: bool = False
    integer: bool = False

    def distribution(self) -> BaseDistribution:
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(float(self.low), float(self.high), log=self.log)


Domain = Choice | Range | Interval


@dataclass(frozen=True)
class SearchParam:
    """A swept config key. ``prefix`` is ``""``, ``"+"`` or ``"++"``, as written by the user."""

    key: str
    domain: Domain
    prefix: str = ""

    @property
    def distribution(self) -> BaseDistribution:
        return self.domain.distribution()


@dataclass(frozen=True)
class FixedValue:
    """A key set to one value in every trial (``prefix`` as for ``SearchParam``)."""

    key: str
    value: str
    prefix: str = ""

    def override(self) -> str:
        return f"{self.prefix}{self.key}={self.value}"


@dataclass
class SearchSpace:
    """Swept parameters in a stable order, plus overrides fixed for every trial."""

    params: dict[str, SearchParam] = field(default_factory=dict)
    fixed: dict[str, FixedValue] = field(default_factory=dict)

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {key: p.distribution for key, p in self.params.items()}

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every combination once, the last key varying fastest (as Hydra's basic sweeper)."""
        names = list(self.params)
        domains = []
        for name in names:
            domain = self.params[name].domain
            if isinstance(domain, Interval):
                raise SweepConfigError(
                    name,
                    "a grid cannot enumerate a continuous interval",
                    f"use choice(...) or range(...) for {name}, or strategy=random/bayes",
                )
            domains.append(domain)

        def product(i: int, partial: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if i == len(names):
                yield dict(partial)
                return
            for j in range(domains[i].count()):  # lazily: the caller may take only n_trials
                partial[names[i]] = domains[i].value(j)
                yield from product(i + 1, partial)

        if names:
            yield from product(0, {})

    def grid_size(self) -> int:
        size = 1
        for p in self.params.values():
            if isinstance(p.domain, Interval):
                return 0
            size *= p.domain.count()
        return size

    def describe(self) -> dict[str, str]:
        """The space as Hydra override strings, for logs and the ledger."""
        out = {key: _describe_domain(p.domain) for key, p in self.params.items()}
        out.update({key: f.value for key, f in self.fixed.items()})
        return out

    def with_overrides(self, other: SearchSpace) -> SearchSpace:
        """This space with ``other``'s keys replacing (or adding to) its own: the command line wins."""
        params = {k: v for k, v in self.params.items() if k not in other.fixed}
        fixed = {k: v for k, v in self.fixed.items() if k not in other.params}
        params.update(other.params)
        fixed.update(other.fixed)
        return SearchSpace(params=params, fixed=fixed)


def _describe_domain(domain: Domain) -> str:
    if isinstance(domain, Choice):
        return "choice(" + ", ".join(repr(v) for v in domain.values) + ")"
    if isinstance(domain, Range):
        return f"range({domain.start}, {domain.stop}, {domain.step})"
    text = f"interval({domain.low}, {domain.high})"
    tags = [t for t, on in (("log", domain.log), ("int", domain.integer)) if on]
    return f"tag({', '.join(tags)}, {text})" if tags else text


# ----------------------------------------------------------------------------------------- checks


def check_choice(key: str, values: Iterable[Any]) -> Choice:
    values = tuple(values)
    if not values:
        raise SweepConfigError(
            key, "choice() is empty", f"list at least one value: {key}=choice(a,b)"
        )
    for v in values:
        if not isinstance(v, (type(None), bool, int, float, str)):
            raise SweepConfigError(
                key,
                f"choice value {v!r} is not a plain value",
                "use numbers, strings, booleans or null in choice(...)",
            )
        if isinstance(v, float) and not math.isfinite(v):
            raise SweepConfigError(
                key,
                f"choice value {v!r} is not a finite number (a trial cannot be given it)",
                f"use finite numbers, or quote it as a string: '{v}'",
            )
    if len(set(map(repr, values))) != len(values):
        raise SweepConfigError(key, "choice() repeats a value", "list each value once")
    return Choice(values)


def check_range(key: str, start: Any, stop: Any, step: Any) -> Range:
    for name, v in (("start", start), ("stop", stop), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SweepConfigError(key, f"range {name} {v!r} is not a finite number", _FORMS)
    if step <= 0:
        raise SweepConfigError(
            key,
            f"range step must be positive, got {step}",
            f"write {key}=range(start, stop, step>0)",
        )
    domain = Range(start, stop, step)
    count = domain.count()
    if count < 0:
        raise SweepConfigError(
            key, f"range({start}, {stop}, {step}) has too many steps to count", "use a larger step"
        )
    if count == 0:
        raise SweepConfigError(
            key,
            f"range({start}, {stop}, {step}) is empty (the stop is excluded)",
            "make stop larger than start",
        )
    if count > INT_EXACT:
        raise SweepConfigError(
            key, f"range({start}, {stop}, {step}) has more than 2**53 values", "use a larger step"
        )
    last = domain.value(count - 1)
    if domain.integer:
        _check_exact_ints(key, f"range({start}, {stop}, {step})", start, last)
    elif count > 1 and abs(step) < 1e-12 * max(abs(domain.value(0)), abs(last)):
        raise SweepConfigError(
            key,
            f"range({start}, {stop}, {step}): the step is too small for floats to tell values apart",
            "use a larger step, or interval(start, stop)",
        )
    elif (Decimal(str(last)) - Decimal(str(domain.value(0)))) % Decimal(str(float(step))):
        # Optuna would move the high end down to a multiple of the step: the last value is lost
        raise SweepConfigError(
            key,
            f"range({start}, {stop}, {step}): its last value {last!r} is not a whole number of "
            "steps from the start once written as a float",
            "use a step with fewer digits (e.g. 0.25), or interval(start, stop)",
        )
    return domain


# Optuna keeps an integer parameter as a float in the ledger: beyond 2**53 it would change
INT_EXACT = 2**53


def _check_exact_ints(key: str, text: str, *ends: int) -> None:
    if any(abs(v) > INT_EXACT for v in ends):
        raise SweepConfigError(
            key,
            f"{text} has an integer beyond ±2**53, which the ledger cannot keep exactly",
            "use smaller integers, or float ends (e.g. 1e20)",
        )


def check_interval(key: str, low: Any, high: Any, *, log: bool, integer: bool) -> Interval:
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SweepConfigError(key, f"interval {name} {v!r} is not a finite number", _FORMS)
    if low >= high:
        raise SweepConfigError(
            key,
            f"interval({low}, {high}) has low >= high",
            f"write the smaller end first: interval({high}, {low})"
            if low > high
            else "use two different ends, or a plain value to fix the key",
        )
    if log and low <= 0:
        raise SweepConfigError(
            key,
            f"a log scale needs positive ends, got interval({low}, {high})",
            "use a positive low end, or drop tag(log, ...)",
        )
    if not math.isfinite(float(high) - float(low)):
        raise SweepConfigError(
            key,
            f"interval({low}, {high}) is wider than the largest float",
            "narrow it, or use tag(log, interval(...)) for positive ends",
        )
    if integer:
        if low != int(low) or high != int(high):
            raise SweepConfigError(
                key,
                f"an integer interval needs integer ends, got ({low}, {high})",
                "use whole ends",
            )
        low, high = int(low), int(high)
        _check_exact_ints(key, f"interval({low}, {high})", low, high)
    return Interval(low, high, log=log, integer=integer)


# ---------------------------------------------------------------------------------------- parsing

_INTERVAL_ARGS = re.compile(r"interval\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)")
_INT_LITERAL = re.compile(r"^[+-]?\d+$")


def split_key(raw_key: str) -> tuple[str, str]:
    """``'+a.b'`` -> ``('+', 'a.b')``."""
    prefix = raw_key[: len(raw_key) - len(raw_key.lstrip("+"))]
    if prefix not in ("", "+", "++"):
        raise SweepConfigError(
            raw_key, "too many '+' signs", "write +key to add a key, ++key to force"
        )
    return prefix, raw_key[len(prefix) :]


def parse_overrides(overrides: Iterable[str]) -> SearchSpace:
    """Parse ``key=value`` strings in Hydra's grammar. Sweeps become params, the rest fixed values."""
    space = SearchSpace()
    for text in overrides:
        if "=" not in text:
            raise SweepConfigError(text, "is not a key=value override", "write key=value")
        raw_key, value = text.split("=", 1)
        entry = parse_entry(raw_key.strip(), value.strip())
        target = space.params if isinstance(entry, SearchParam) else space.fixed
        other = space.fixed if target is space.params else space.params
        other.pop(entry.key, None)
        target[entry.key] = entry
    return space


def parse_params(params: Mapping[str, Any]) -> SearchSpace:
    """Parse a ``hydra.sweeper.params`` mapping (values are grammar strings or plain values)."""
    return parse_overrides(f"{k}={_as_text(v)}" for k, v in params.items())


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def parse_entry(raw_key: str, value: str) -> SearchParam | FixedValue:
    """One override -> a swept parameter or a fixed value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import (
        ChoiceSweep,
        IntervalSweep,
        RangeSweep,
    )

    prefix, key = split_key(raw_key)
    if not key:
        raise SweepConfigError(raw_key, "has no key name", "write key=value")
    try:
        override = OverridesParser.create().parse_override(f"{prefix}{key}={value}")
    except Exception as exc:  # Hydra raises several types; all mean "cannot parse"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "empty choice" in reason.lower() or re.search(r"choice\s*\(\s*\)", value):
            raise SweepConfigError(
                key, "choice() is empty", f"list at least one value: {key}=choice(a,b)"
            ) from None
        raise SweepConfigError(key, f"cannot parse {value!r} ({reason})", _FORMS) from None
    if override.is_delete():
        raise SweepConfigError(key, "deleting a key (~key) is not a search dimension", "remove it")
    if not override.is_sweep_override():
        return FixedValue(key=key, value=value, prefix=prefix)

    sweep = override.value()
    tags = set(getattr(sweep, "tags", set()) or set())
    unknown_tags = tags - {"log", "int"}
    if unknown_tags:
        raise SweepConfigError(
            key, f"unknown tag {sorted(unknown_tags)}", "tags understood here are log and int"
        )
    if isinstance(sweep, ChoiceSweep):
        if "log" in tags:
            raise SweepConfigError(key, "tag(log, ...) does not apply to choice", "drop the tag")
        domain: Domain = check_choice(key, sweep.list)
    elif isinstance(sweep, RangeSweep):
        if "log" in tags:
            raise SweepConfigError(
                key, "tag(log, ...) does not apply to range", "use tag(log, interval(low, high))"
            )
        domain = check_range(key, sweep.start, sweep.stop, sweep.step)
    elif isinstance(sweep, IntervalSweep):
        integer = "int" in tags or _interval_ends_are_ints(value)
        domain = check_interval(key, sweep.start, sweep.end, log="log" in tags, integer=integer)
    else:
        raise SweepConfigError(key, f"unsupported sweep {value!r}", _FORMS)
    return SearchParam(key=key, domain=domain, prefix=prefix)


def _interval_ends_are_ints(text: str) -> bool:
    match = _INTERVAL_ARGS.search(text)
    return bool(match) and all(_INT_LITERAL.match(g.strip()) for g in match.groups())


def format_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"cannot pass {value} as an override")
        return repr(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-./]*", text) and text.lower() not in (
        "true",
        "false",
        "null",
        "nan",
        "inf",
    ):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def trial_overrides(space: SearchSpace, params: Mapping[str, Any]) -> list[str]:
    """The Hydra overrides of one trial: the fixed values, then the sampled parameters."""
    out = [f.override() for f in space.fixed.values()]
    for key, p in space.params.items():
        out.append(f"{p.prefix}{key}={format_value(params[key])}")
    return out
