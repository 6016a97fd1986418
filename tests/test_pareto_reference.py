"""The default EHVI reference point (issue 18): stable as the front grows, deaf to dominated
outliers, and wide enough that another piece of a disconnected front keeps a positive
improvement."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import optuna

from nemo_rl_sweep.pareto import hypervolume, hypervolume_improvement, pareto_front_mask
from nemo_rl_sweep.pareto.reference import ehvi_reference_point
from nemo_rl_sweep.samplers.pareto import ParetoSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from functions import zdt3  # noqa: E402


def _zdt3_front(f1: np.ndarray, g: float = 1.0) -> np.ndarray:
    return np.array([zdt3([a, (g - 1.0) / 9.0]) for a in f1])


def _converged_on_first_piece() -> np.ndarray:
    """A ZDT3 history in trial order: a spread of early trials, then the search settles on the
    first piece of the front (f1 < 0.083) as it does with a reference hugging the front."""
    early = np.array([zdt3([a, b]) for a, b in [(0.9, 0.3), (0.5, 0.6), (0.1, 0.8), (0.7, 0.1)]])
    later = _zdt3_front(np.linspace(0.0, 0.08, 12), g=1.0)
    return np.vstack([early, later])


def test_reference_keeps_the_region_the_front_left():
    y = _converged_on_first_piece()
    front = y[pareto_front_mask(y)]
    assert front[:, 0].max() < 0.09  # the front is the first piece only
    ref = ehvi_reference_point(y)
    old = front.max(axis=0) + 0.1 * np.ptp(y, axis=0)  # main's rule: front's worst + 10%
    piece2 = np.array(zdt3([0.22, 0.0]))  # on the second piece (f1 in [0.18, 0.26])
    assert np.any(piece2 >= old)  # beyond the old reference: no improvement possible
    assert np.all(piece2 < ref)
    assert hypervolume_improvement(piece2, front, ref)[0] > 0.0
    assert hypervolume_improvement(piece2, front, old)[0] == 0.0
    assert ref[0] >= 0.9  # up to the early trial that the front left behind


def test_reference_is_stable_as_the_front_grows():
    # points of one connected front arrive (extremes first); the reference does not move
    rng = np.random.default_rng(0)
    f1 = np.concatenate([[0.0, 1.0], rng.random(30)])
    y = np.stack([f1, 1.0 - np.sqrt(f1)], axis=1)
    refs = [ehvi_reference_point(y[:n]) for n in range(4, len(y) + 1)]
    np.testing.assert_allclose(refs, np.repeat(refs[:1], len(refs), axis=0))
    np.testing.assert_allclose(refs[0], [1.1, 1.1])

    # and on the disconnected history, converging further on the first piece does not shrink it
    y = _converged_on_first_piece()
    more = np.vstack([y, _zdt3_front(np.linspace(0.0, 0.083, 20))])
    np.testing.assert_allclose(ehvi_reference_point(more), ehvi_reference_point(y), rtol=1e-3)


def test_a_far_dominated_outlier_does_not_move_the_reference():
    y = _converged_on_first_piece()
    ref = ehvi_reference_point(y)
    for position in (len(y), 0):  # arriving last (dominated) or first (alone on the front)
        with_outlier = np.insert(y, position, [0.5, 1e6], axis=0)
        np.testing.assert_allclose(ehvi_reference_point(with_outlier), ref)


def test_units_and_front_argument():
    y = _converged_on_first_piece()
    ref = ehvi_reference_point(y)
    scale, shift = np.array([3.0, 0.01]), np.array([-2.0, 5.0])
    np.testing.assert_allclose(ehvi_reference_point(y * scale + shift), ref * scale + shift)
    # a front with extra (believed) points is honoured: the reference covers it
    believed = np.array([[0.3, 0.1]])
    front = np.vstack([y[pareto_front_mask(y)], believed])
    front = front[pareto_front_mask(front)]
    assert np.all(ehvi_reference_point(y, front) > believed[0])


def test_short_run_reaches_both_pieces_of_a_disconnected_front():
    """2-D ZDT3, 24 trials: the default reference lets the search leave the first piece."""
    sampler = ParetoSampler(seed=0, n_startup_trials=6, n_candidates=256, n_restarts=2)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for _ in range(24):
        trial = study.ask()
        x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(2)]
        study.tell(trial, zdt3(x))
    v = np.array([t.values for t in study.trials])
    front = v[pareto_front_mask(v)]
    assert front[:, 0].min() < 0.09 and front[:, 0].max() > 0.18  # first piece and beyond
    assert hypervolume(v, [1.1, 1.1]) > 0.9


def test_two_objectives_cover_pieces_no_trial_on_the_front_ever_reached():
    """The witnesses' blind spot: the trials at larger f1 were dominated when they ran, so they
    witness nothing; with two objectives the reference still covers the observed range."""
    first = _zdt3_front(np.linspace(0.0, 0.08, 12))  # the search settled on the first piece
    far = np.array([zdt3([a, 0.6]) for a in (0.3, 0.6, 0.95)])  # poorly converged
    y = np.vstack([first, far])
    assert not pareto_front_mask(y)[len(first) :].any()
    front = first[pareto_front_mask(first)]
    ref = ehvi_reference_point(y)
    assert ref[0] > 0.95  # the whole observed f1 range, ZDT3's last piece (f1 <= 0.852) with it
    last_piece = np.array(zdt3([0.84, 0.0]))
    assert hypervolume_improvement(last_piece, front, ref)[0] > 0.0


def _sphere(n: int, seed: int) -> np.ndarray:
    """Points of DTLZ2's front (the positive octant of the unit sphere), one connected piece."""
    d = np.abs(np.random.default_rng(seed).normal(size=(n, 3)))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _ishibuchi(front: np.ndarray) -> np.ndarray:
    """The front's nadir plus 10% of its range."""
    return front.max(axis=0) + 0.1 * np.ptp(front, axis=0)


def test_three_objectives_a_late_dominated_trial_does_not_widen_the_reference():
    """With three objectives the slab beyond the front is a region poorly converged trials can
    fill, so only witnesses widen the reference: a trial dominated when it ran does not."""
    sphere = _sphere(40, 1)
    y = np.vstack([sphere, [[1.5, 1.5, 1.5]]])
    ref = ehvi_reference_point(y)
    np.testing.assert_allclose(ref, _ishibuchi(sphere))
    assert np.all(ref < 1.2)


def test_three_objectives_poorly_converged_early_trials_do_not_widen_the_reference():
    """DTLZ2's early trials are 1 + g times a point of the front: on the front when they ran,
    left behind in every objective once the search converged past them. They are copies of a
    part of the front found since, not a region the search left, so the reference stays at the
    front (they used to set it at 1.4-1.6 instead of 1.1)."""
    early = 1.4 * _sphere(8, 2)
    sphere = _sphere(40, 3)
    y = np.vstack([early, sphere])
    assert pareto_front_mask(early).all()  # all on the front when they ran
    assert not pareto_front_mask(y)[: len(early)].any()  # all left behind
    ref = ehvi_reference_point(y)
    np.testing.assert_allclose(ref, _ishibuchi(sphere))


def test_three_objectives_a_dominance_resistant_point_does_not_set_the_reference():
    """A point with two objectives at 0 and a poorly converged third is on the front (nothing
    else has f1 = f2 = 0) but only weakly Pareto-optimal: the front's point near the pole loses
    next to nothing in f1 and f2 and gains 0.8 in f3. It must not stretch the reference in f3."""
    pole = np.array([[0.03, 0.02, 1.0]])
    sphere = np.vstack([_sphere(40, 4), pole / np.linalg.norm(pole)])
    drs = np.array([[0.0, 0.0, 1.8]])
    y = np.vstack([sphere, drs])
    assert pareto_front_mask(y)[-1]
    ref = ehvi_reference_point(y)
    assert ref[2] < 1.2
    ideal = y.min(axis=0)
    np.testing.assert_allclose(ref, sphere.max(axis=0) + 0.1 * (sphere.max(axis=0) - ideal))
    # a point anywhere on the front still improves the hypervolume at that reference
    assert hypervolume_improvement(np.array([0.3, 0.3, 0.9]), y[pareto_front_mask(y)], ref)[0] > 0


def test_three_objectives_the_reference_keeps_a_region_the_front_left():
    """DTLZ7-like: early trials spread in f1 and f2 were on the front; the search then settled on
    one piece near f1 = f2 = 0 and left them behind. Another piece near (0.7, 0.7) keeps a
    positive improvement, which the front's nadir plus a margin would give it none."""
    early = np.array([[0.8, 0.8, 3.0], [0.5, 0.6, 2.6], [0.6, 0.4, 2.8]])
    g = np.linspace(0.0, 0.25, 6)
    f1, f2 = np.meshgrid(g, g)
    piece = np.stack([f1.ravel(), f2.ravel(), 1.5 - f1.ravel() - f2.ravel()], axis=1)
    y = np.vstack([early, piece])
    front = y[pareto_front_mask(y)]
    assert all(pareto_front_mask(early[: i + 1])[-1] for i in range(len(early)))  # on it then
    assert not pareto_front_mask(y)[: len(early)].any()  # left behind now
    ref = ehvi_reference_point(y)
    other_piece = np.array([0.7, 0.7, 0.6])
    assert hypervolume_improvement(other_piece, front, ref)[0] > 0.0
    assert hypervolume_improvement(other_piece, front, _ishibuchi(front))[0] == 0.0
    np.testing.assert_allclose(ref[:2], 0.8 + 0.1 * 0.8)  # up to the witness, plus 10%
