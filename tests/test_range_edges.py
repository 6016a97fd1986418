"""Range-edge warnings: a best value near a swept range's end (log scale for log ranges) names the key
and the direction to widen it; ranges parsed from the search-space grammar users write."""

from __future__ import annotations

from nemo_rl_sweep.outputs.range_edges import range_edges
from nemo_rl_sweep.space import parse_params

SPACE = parse_params(
    {
        "policy.optimizer.kwargs.lr": "tag(log, interval(1e-5, 1e-2))",
        "loss_fn.reference_policy_kl_penalty": "interval(0.0, 0.1)",
        "loss_fn.ratio_clip_min": "interval(0.1, 0.3)",
        "grpo.num_generations_per_prompt": "range(2, 18, 2)",
        "grpo.num_prompts_per_step": "range(4, 12, 4)",
        "loss_fn.reference_policy_kl_type": "choice(k1, k2, k3)",
    }
).distributions
MIDDLE = {
    "policy.optimizer.kwargs.lr": 3e-4,
    "loss_fn.reference_policy_kl_penalty": 0.05,
    "loss_fn.ratio_clip_min": 0.2,
    "grpo.num_generations_per_prompt": 8,
    "grpo.num_prompts_per_step": 4,
    "loss_fn.reference_policy_kl_type": "k1",
}


def test_nothing_flagged_inside_the_ranges() -> None:
    # num_prompts_per_step has two values (4, 8): no inside, never flagged
    assert range_edges([MIDDLE], SPACE) == []


def test_log_range_edges_are_measured_in_decades() -> None:
    # 8e-3 is 97% of the way on a linear scale but 0.968 of the three decades: within 5%
    [edge] = range_edges([{**MIDDLE, "policy.optimizer.kwargs.lr": 8e-3}], SPACE)
    assert (edge.key, edge.side, edge.widen, edge.log) == (
        "policy.optimizer.kwargs.lr",
        "high",
        "upward",
        True,
    )
    assert edge.suggestion == "tag(log, interval(1e-05, 0.1))"
    assert "widen it upward" in edge.message() and "(log scale)" in edge.message()
    # 2e-5 is 0.03% of the linear width from the bottom, but 10% of the decades: not an edge
    assert range_edges([{**MIDDLE, "policy.optimizer.kwargs.lr": 2e-5}], SPACE) == []
    [low] = range_edges([{**MIDDLE, "policy.optimizer.kwargs.lr": 1.2e-5}], SPACE)
    assert (low.side, low.widen, low.suggestion) == (
        "low",
        "downward",
        "tag(log, interval(1e-06, 0.01))",
    )


def test_linear_edges_and_their_suggestions() -> None:
    edges = range_edges(
        [{**MIDDLE, "loss_fn.ratio_clip_min": 0.295, "loss_fn.reference_policy_kl_penalty": 0.001}],
        SPACE,
    )
    assert [(e.key, e.side) for e in edges] == [
        ("loss_fn.reference_policy_kl_penalty", "low"),
        ("loss_fn.ratio_clip_min", "high"),
    ]
    kl, clip = edges
    assert kl.suggestion is None  # nothing below zero for a range that starts at zero
    assert clip.suggestion == "interval(0.1, 0.4)"
    assert "loss_fn.ratio_clip_min" in clip.message() and "above 0.3" in clip.message()
    [low] = range_edges([{**MIDDLE, "loss_fn.ratio_clip_min": 0.1}], SPACE)
    assert low.suggestion == "interval(0, 0.3)"  # widened down to zero, not below


def test_stepped_ranges_flag_their_first_and_last_value() -> None:
    [edge] = range_edges([{**MIDDLE, "grpo.num_generations_per_prompt": 16}], SPACE)
    assert (edge.key, edge.side, edge.suggestion) == (
        "grpo.num_generations_per_prompt",
        "high",
        "interval(2, 23)",
    )
    assert range_edges([{**MIDDLE, "grpo.num_generations_per_prompt": 4}], SPACE) == []


def test_several_best_configurations_report_each_key_once() -> None:
    best = [
        {**MIDDLE, "policy.optimizer.kwargs.lr": 9e-3},
        {**MIDDLE, "policy.optimizer.kwargs.lr": 1e-2},
        {**MIDDLE, "policy.optimizer.kwargs.lr": 1.1e-5},
    ]
    edges = range_edges(best, SPACE)
    assert [(e.side, e.value) for e in edges] == [("high", 1e-2), ("low", 1.1e-5)]
    assert edges[0].as_dict()["widen"] == "upward"
