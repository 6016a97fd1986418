"""Generated sweep input (Hypothesis strategies) and the property every input must keep.

The property (issue 15): an input is either refused before any job starts, with one ``Error:`` line,
exit code 2 and the ledger file byte-identical, or it runs and every trial it launches receives
exactly a value its search space allows; never a traceback, never a RUNNING trial left behind.

Two layers share the strategies: ``check_in_process`` runs what the sweeper runs before a job
starts (``space.parse_overrides`` / ``parse_params``, ``settings.check_settings`` through
``loop.Sweep``, the first trials' overrides, read back by Hydra's own override parser), which is
fast enough for hundreds of inputs; ``check_real_run`` runs the echo app in a subprocess with a real
SQLite ledger, for a few inputs each test run (more with ``benchmarks/fuzz_input.py``).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from hypothesis import strategies as st
from optuna.trial import TrialState

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.ledger import DEFAULT_LEDGER_FILE
from nemo_rl_sweep.loop import Sweep
from nemo_rl_sweep.settings import SweepSettings
from nemo_rl_sweep.space import (
    Choice,
    Interval,
    Range,
    SearchSpace,
    parse_overrides,
    parse_params,
)
from tests.helpers import REPO, error_lines, run_app

ECHO_APP = REPO / "tests" / "apps" / "echo.py"
SWEPT_KEYS = ("x", "y")  # keys of the echo app's config
OUR_CODE = ("nemo_rl_sweep/", "nemo_rl_sweeper/")  # frames of a traceback through the sweeper

# ------------------------------------------------------------------------------------ strategies


def _float_text(value: float) -> str:
    return repr(value) if math.isfinite(value) else str(value)


numbers = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(_float_text),
    st.floats(-10.0, 10.0).map(_float_text),
    st.sampled_from(
        "nan inf -inf +inf NaN -NaN 0 -0 +0 0.0 -0.0 1e308 1e309 -1e309 5e-324 1e-300 1_000 "
        "0x10 1e-5 .5 5. 9007199254740993 -9007199254740993 18446744073709551616".split()
    ),
)
_plain_word = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
_free_text = st.text(max_size=8)


def _single_quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _double_quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


strings = st.one_of(
    _plain_word,
    _free_text.map(_single_quoted),
    _free_text.map(_double_quoted),
    st.sampled_from(
        [
            "''",
            '""',
            "'it''s'",
            "'a\\'b'",
            '"a\'b"',
            "é",
            "日本",
            "'🙂'",
            "${y}",
            "'${y}'",
            "a\\,b",
            "a b",
            "true",
            "false",
            "null",
            "'null'",
            "'true'",
            "'1e5'",
            "'nan'",
        ]
    ),
)
plain_values = st.one_of(
    numbers,
    strings,
    st.lists(numbers, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
    st.dictionaries(_plain_word, numbers, max_size=2).map(
        lambda d: "{" + ",".join(f"{k}:{v}" for k, v in d.items()) + "}"
    ),
)


def _call(name: str, args: list[str]) -> str:
    return f"{name}({','.join(args)})"


_choice = st.lists(st.one_of(numbers, strings), max_size=5).map(lambda a: _call("choice", a))
_range = st.lists(numbers, min_size=1, max_size=4).map(lambda a: _call("range", a))
_interval = st.lists(numbers, min_size=1, max_size=3).map(lambda a: _call("interval", a))
_tags = st.lists(st.sampled_from(["log", "int", "foo"]), min_size=1, max_size=2)
_tagged = st.tuples(_tags, st.one_of(_interval, _range, _choice)).map(
    lambda t: _call("tag", [*t[0], t[1]])
)
_glob = st.one_of(
    st.sampled_from(["glob(*)", "glob(a*)", "glob([a*,b])", "glob(*,exclude=a)"]),
    _plain_word.map(lambda w: f"glob({w}*)"),
)
_nested = st.one_of(
    _choice.map(lambda c: f"choice({c})"),
    _choice.map(lambda c: f"shuffle({c[len('choice(') : -1]})"),
    _choice.map(lambda c: f"sort({c})"),
    st.tuples(_choice, _range).map(lambda t: _call("choice", list(t))),
)
_junk = st.text(alphabet="(),=[]{}'\"\\ :$a1.-+eglotincvhr", max_size=16)

# well-formed sweeps, so that a good share of the inputs runs (random text is mostly refused)
_finite = st.floats(-1e6, 1e6, allow_subnormal=True)
_ordered = st.tuples(_finite, _finite).filter(lambda p: p[0] != p[1]).map(sorted)
_positive = st.tuples(st.floats(1e-12, 1e6), st.floats(1e-12, 1e6)).filter(lambda p: p[0] != p[1])
_distinct = st.lists(st.one_of(numbers, strings), min_size=1, max_size=4, unique=True)
well_formed = st.one_of(
    _ordered.map(lambda p: f"interval({_float_text(p[0])},{_float_text(p[1])})"),
    _positive.map(sorted).map(lambda p: f"tag(log, interval({p[0]!r},{p[1]!r}))"),
    st.tuples(st.integers(-50, 50), st.integers(1, 20), st.integers(1, 5)).map(
        lambda t: f"range({t[0]},{t[0] + t[1] * t[2]},{t[2]})"
    ),
    st.tuples(st.integers(-5, 5), st.integers(1, 9), st.sampled_from([0.5, 0.1, 0.25, 2.5])).map(
        lambda t: f"range({t[0]},{t[0] + t[1] * t[2]},{t[2]})"
    ),
    _distinct.map(lambda a: _call("choice", a)),
)
sweep_texts = st.one_of(
    well_formed,
    well_formed,
    _choice,
    _range,
    _interval,
    _tagged,
    _glob,
    _nested,
    plain_values,
    _junk,
).filter(lambda t: "\x00" not in t)
_keys = st.one_of(
    st.sampled_from(SWEPT_KEYS),
    st.sampled_from(SWEPT_KEYS),
    st.sampled_from(SWEPT_KEYS),
    st.sampled_from(["+z", "++x", "nested.k", "+", "x.y", "~x", "+++x", "a b"]),
)
# a command line (or a config group's params): key -> sweep text; the echo app has keys x and y
spaces = st.dictionaries(_keys, sweep_texts, min_size=1, max_size=2)
simple_spaces = st.dictionaries(st.sampled_from(SWEPT_KEYS), well_formed, min_size=1)

_any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    _free_text,
    st.lists(st.integers(-3, 3), max_size=2),
    st.dictionaries(_plain_word, st.integers(-3, 3), max_size=2),
)
_right_values: dict[str, Any] = {
    "strategy": st.sampled_from([None, "grid", "random", "bayes", "pareto", "optuna", "nope"]),
    "strategy_options": st.sampled_from(
        [{}, {"n_startup_trials": 2}, {"stratified": True}, {"nope": 1}, {"n_startup_trials": -1}]
    ),
    "metric": st.sampled_from([None, "score", ["score", "cost"], "", ["score", "score"], []]),
    "direction": st.sampled_from([None, "minimize", "maximize", ["maximize", "minimize"], "up"]),
    "n_trials": st.one_of(st.none(), st.integers(-2, 3)),
    "n_jobs": st.integers(-1, 3),
    "storage": st.sampled_from([None, "nope", "sqlite:///", "journal:", "sqlite:////no/such/x.db"]),
    "study_name": st.one_of(st.none(), _free_text),
    "max_failure_rate": st.floats(allow_nan=True, allow_infinity=True),
    "seed": st.one_of(st.none(), st.integers(-(2**33), 2**33)),
    "dry_run": st.booleans(),
    "sampler": st.sampled_from(
        [
            None,
            {"_target_": "optuna.samplers.TPESampler", "seed": 1},
            {"_target_": "optuna.samplers.RandomSampler", "nope": 1},
            {"_target_": "no.such.Sampler"},
            {"seed": 1},
        ]
    ),
    "pruner": st.sampled_from(
        [
            None,
            {"_target_": "optuna.pruners.MedianPruner"},
            {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": -1},
            {"_target_": "optuna.samplers.TPESampler"},
        ]
    ),
    "enqueue": st.sampled_from([[], [{"x": 0.5}], ["recipe"], [{"nope": 1}], [{"x": "a"}], [5]]),
    "warm_start_from": st.sampled_from(
        [None, {}, {"study_name": "nope"}, {"study_name": ""}, {"study": "x"}]
    ),
    "confirm": st.sampled_from(
        [
            {"top_k": None, "seeds": 3, "seed_key": None},
            {"top_k": 1},
            {"top_k": "x"},
            {"nope": 1},
            {"top_k": 1, "seed_key": "y"},
        ]
    ),
}
SETTING_KEYS = tuple(_right_values)
settings_overrides = st.dictionaries(st.sampled_from(SETTING_KEYS), st.none(), max_size=3).flatmap(
    lambda picked: st.fixed_dictionaries(
        {k: st.one_of(*[_right_values[k]] * 3, _any_value) for k in picked}
    )
)

# ------------------------------------------------------------------------------- the property


class PropertyBroken(AssertionError):
    """The input neither was refused cleanly nor ran within its space."""


@dataclass
class Verdict:
    refused: str | None = None  # the Error line's text
    trials: list[list[str]] = field(default_factory=list)


def build_space(command_line: Mapping[str, str], group: Mapping[str, Any]) -> SearchSpace:
    """The space as the sweeper builds it: the config group's params, then the command line."""
    cli = parse_overrides(f"{k}={v}" for k, v in command_line.items())
    return parse_params(dict(group)).with_overrides(cli)


def check_in_process(
    command_line: Mapping[str, str],
    group: Mapping[str, Any],
    settings: Mapping[str, Any],
    sweep_dir: Path,
) -> Verdict:
    """Refused with one ``SweepConfigError`` line, or the first trials' values are in the space."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    base = {"metric": "score", "direction": "maximize", "n_trials": 3, "seed": 0}
    try:
        space = build_space(command_line, group)
        sweep = Sweep(space, SweepSettings(**{**base, **settings}), _no_launch, sweep_dir)
        previews = sweep.preview(3)
    except SweepConfigError as exc:
        if "\n" in str(exc):
            raise PropertyBroken(f"a refusal of more than one line: {exc!s}") from None
        return Verdict(refused=str(exc))
    except Exception as exc:  # what the sweeper would show as a traceback
        raise PropertyBroken(f"{type(exc).__name__}: {exc}") from exc
    parser = OverridesParser.create()
    for overrides in previews:
        for text in overrides:
            override = parser.parse_override(text)  # what the job's Hydra reads
            key = override.key_or_group
            if key in space.params:
                check_allowed(space, key, override.value())
    return Verdict(trials=previews)


def _no_launch(jobs: Any) -> list[Any]:
    raise PropertyBroken("the in-process layer never launches")


def check_allowed(space: SearchSpace, key: str, value: Any) -> None:
    """``value`` is one the space's parameter ``key`` allows, of the type it was written in."""
    domain = space.params[key].domain
    if isinstance(domain, Choice):
        ok = any(type(v) is type(value) and repr(v) == repr(value) for v in domain.values)
    elif isinstance(domain, Range):
        ok = _in_range(domain, value)
    else:
        ok = _in_interval(domain, value)
    if not ok:
        raise PropertyBroken(f"{key}={value!r} ({type(value).__name__}) is not in {domain}")


def _in_range(domain: Range, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    last = domain.value(domain.count() - 1)
    if domain.integer:
        return (
            type(value) is int
            and domain.start <= value <= last
            and ((value - domain.start) % domain.step == 0)
        )
    first = domain.value(0)
    slack = abs(domain.step) * 1e-3  # the sampler computes low + k * step in floats
    steps = (value - first) / domain.step
    return first - slack <= value <= last + slack and abs(steps - round(steps)) < 1e-3


def _in_interval(domain: Interval, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if domain.integer and type(value) is not int:
        return False
    return domain.low <= value <= domain.high


# ---------------------------------------------------------------------------------- real runs


def make_ledger(cwd: Path) -> Path:
    """A ledger that already holds a user's work: a study with one finished trial."""
    path = cwd / "multirun" / DEFAULT_LEDGER_FILE
    path.parent.mkdir(parents=True)
    study = optuna.create_study(storage=f"sqlite:///{path}", study_name="earlier-work")
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 1.0)
    return path


def _hydra_value(value: Any) -> str:
    """A settings value as a command-line override value (Hydra's grammar)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, str):
        return _single_quoted(value)
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def check_real_run(
    cwd: Path,
    command_line: Mapping[str, str],
    group: Mapping[str, Any],
    settings: Mapping[str, Any],
    *,
    settings_in_group: bool,
) -> subprocess.CompletedProcess:
    """Run the echo app with the input (space and settings on the command line or in a config
    group ``+hpo=fuzz``) over a ledger holding earlier work; hold the run to the property."""
    ledger = make_ledger(cwd)
    before = ledger.read_bytes()
    conf = cwd / "conf" / "hpo"
    conf.mkdir(parents=True)
    sweeper: dict[str, Any] = {"params": dict(group)} if group else {}
    args = ["--multirun", "--config-dir", str(cwd / "conf"), "+hpo=fuzz"]
    if settings_in_group:
        sweeper.update(settings)  # YAML has .nan and .inf
    else:
        args += [f"hydra.sweeper.{k}={_hydra_value(v)}" for k, v in settings.items()]
    text = "# @package _global_\n" + yaml.safe_dump({"hydra": {"sweeper": sweeper}})
    (conf / "fuzz.yaml").write_text(text, encoding="utf-8")
    args += [f"{k}={v}" for k, v in command_line.items()]
    # with the full error, a refusal by Hydra itself shows as a traceback through Hydra only
    env = {"PYTHONIOENCODING": "utf-8", "HYDRA_FULL_ERROR": "1"}
    proc = run_app(ECHO_APP, args, cwd, env=env)
    said = proc.stdout + proc.stderr
    if "Traceback" in said and any(part in said for part in OUR_CODE):
        raise PropertyBroken(f"a traceback:\n{said[-3000:]}")
    if proc.returncode == 1 and "Traceback" in said:
        # Hydra refuses a command line outside its grammar, or a key its config lacks, while it
        # composes the config: before the sweeper exists, with Hydra's own message
        if ledger.read_bytes() != before:
            raise PropertyBroken("Hydra refused the command line but the ledger changed")
        return proc
    if proc.returncode != 0:
        lines = error_lines(proc)
        if proc.returncode != 2 or len(lines) != 1:
            raise PropertyBroken(
                f"refused with exit code {proc.returncode} and {len(lines)} Error lines:\n"
                + said[-3000:]
            )
        if ledger.read_bytes() != before:
            raise PropertyBroken(f"refused ({lines[0]}) but the ledger changed")
        return proc
    _check_trials(ledger, command_line, group)
    return proc


def _check_trials(ledger: Path, command_line: Mapping[str, str], group: Mapping[str, Any]) -> None:
    """No trial is left RUNNING, and every job got exactly its trial's values, in the space."""
    space = build_space(command_line, group)
    storage = optuna.storages.RDBStorage(f"sqlite:///{ledger}")
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for trial in study.get_trials():
            if trial.state == TrialState.RUNNING:
                raise PropertyBroken(f"trial {trial.number} of {study.study_name} left RUNNING")
            job_dir = trial.user_attrs.get("job_dir")
            if not job_dir:
                continue
            received = json.loads((Path(job_dir) / "received.json").read_text(encoding="utf-8"))
            for key, value in trial.params.items():
                got = _select(received, key)
                if type(got) is not type(value) or got != value:
                    raise PropertyBroken(
                        f"trial {trial.number}: {key} is {value!r}, job got {got!r}"
                    )
                check_allowed(space, key, got)


def _select(node: Any, key: str) -> Any:
    for part in key.split("."):
        node = node[part]
    return node
