"""The search-space grammar: every form Hydra users write, and every bad input refused in one line."""

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from nemo_rl_sweep.errors import SweepConfigError
from nemo_rl_sweep.space import (
    Choice,
    Interval,
    Range,
    format_value,
    parse_overrides,
    parse_params,
    trial_overrides,
)


def test_choice_keeps_values_and_order():
    space = parse_overrides(["opt=choice(adam, sgd, 3, 1e-3, true)"])
    assert space.params["opt"].domain == Choice(("adam", "sgd", 3, 1e-3, True))
    assert space.params["opt"].distribution == CategoricalDistribution(
        ("adam", "sgd", 3, 1e-3, True)
    )


def test_simple_comma_list_is_a_choice():
    assert parse_overrides(["a=1,2,3"]).params["a"].domain == Choice((1, 2, 3))


def test_range_excludes_its_stop():
    space = parse_overrides(["n=range(2, 6, 2)", "m=range(3)", "f=range(0, 1, 0.25)"])
    assert space.params["n"].domain.grid_values() == [2, 4]
    assert space.params["m"].domain.grid_values() == [0, 1, 2]
    assert space.params["f"].domain.grid_values() == [0.0, 0.25, 0.5, 0.75]
    assert space.params["n"].distribution == IntDistribution(2, 4, step=2)
    assert space.params["f"].distribution == FloatDistribution(0.0, 0.75, step=0.25)


def test_interval_is_int_when_both_ends_are_ints():
    space = parse_overrides(["a=interval(1, 5)", "b=interval(1.0, 5)", "c=interval(0.5, 2.5)"])
    assert space.params["a"].domain == Interval(1, 5, integer=True)
    assert space.params["a"].distribution == IntDistribution(1, 5)
    assert space.params["b"].distribution == FloatDistribution(1.0, 5.0)
    assert space.params["c"].distribution == FloatDistribution(0.5, 2.5)


def test_log_tag():
    space = parse_overrides(["lr=tag(log, interval(1e-5, 1e-2))", "k=tag(log, interval(1, 64))"])
    assert space.params["lr"].distribution == FloatDistribution(1e-5, 1e-2, log=True)
    assert space.params["k"].distribution == IntDistribution(1, 64, log=True)


def test_plain_values_are_fixed_and_plus_prefix_is_kept():
    space = parse_overrides(["a=3", "+new.key=hello", "b=interval(0, 1.5)"])
    assert set(space.fixed) == {"a", "new.key"}
    assert space.fixed["new.key"].override() == "+new.key=hello"
    assert list(space.params) == ["b"]


def test_command_line_wins_over_group_and_adds_keys():
    group = parse_params({"lr": "interval(0.1, 1.0)", "kl": "choice(1, 2)"})
    cli = parse_overrides(["lr=choice(0.5, 0.7)", "kl=2", "extra=range(0, 3)"])
    space = group.with_overrides(cli)
    assert space.params["lr"].domain == Choice((0.5, 0.7))
    assert "kl" not in space.params and space.fixed["kl"].value == "2"
    assert space.params["extra"].domain == Range(0, 3, 1)


def test_grid_every_combination_once_in_stable_order():
    space = parse_overrides(["a=choice(x, y)", "b=range(0, 3)"])
    points = list(space.grid())
    assert points == [
        {"a": "x", "b": 0},
        {"a": "x", "b": 1},
        {"a": "x", "b": 2},
        {"a": "y", "b": 0},
        {"a": "y", "b": 1},
        {"a": "y", "b": 2},
    ]
    assert space.grid_size() == 6


def test_trial_overrides_round_trip_through_hydra_grammar():
    space = parse_overrides(["lr=tag(log, interval(1e-5, 1e-2))", "name=choice('a b', x)", "f=1"])
    overrides = trial_overrides(space, {"lr": 3.2e-05, "name": "a b"})
    reparsed = parse_overrides(overrides)
    assert overrides[0] == "f=1"
    assert reparsed.fixed["lr"].value == "3.2e-05"
    assert format_value("a b") == "'a b'"
    assert format_value(True) == "true" and format_value(None) == "null"


@pytest.mark.parametrize(
    "override, words",
    [
        ("a=choice()", ["a:", "empty"]),
        ("a=interval(5, 1)", ["a:", "low >= high", "interval(1.0, 5.0)"]),
        ("a=tag(log, interval(0, 1))", ["a:", "log scale", "positive"]),
        ("a=tag(log, interval(-1, 1))", ["a:", "log scale"]),
        ("a=range(1, 5, 0)", ["a:", "step must be positive"]),
        ("a=range(5, 1, -1)", ["a:", "step must be positive"]),
        ("a=range(5, 5)", ["a:", "empty", "stop is excluded"]),
        ("a=tag(log, range(1, 5))", ["a:", "does not apply to range"]),
        ("a=tag(fancy, interval(1, 5))", ["a:", "unknown tag"]),
        ("a=choice(1, 1)", ["a:", "repeats"]),
        ("a=interval(", ["a:", "cannot parse"]),
    ],
)
def test_bad_input_is_one_clear_line(override, words):
    with pytest.raises(SweepConfigError) as info:
        parse_overrides([override])
    message = str(info.value)
    assert "\n" not in message
    assert "Fix:" in message
    for word in words:
        assert word in message


def test_grid_over_an_interval_is_refused():
    space = parse_overrides(["a=interval(0.1, 0.5)"])
    with pytest.raises(SweepConfigError, match="a grid cannot enumerate"):
        list(space.grid())
