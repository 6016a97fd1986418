"""The GP parts on their own: encoding, model fit, stable log-EI, acquisition search."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from scipy.stats import norm

from nemo_rl_sweep.gp import evaluate, fit_gp, log_ei, log_h, optimize_acquisition
from nemo_rl_sweep.gp.search_space import SpaceEncoding, modelable_space

SPACE = {
    "lr": FloatDistribution(1e-6, 1e-2, log=True),
    "x": FloatDistribution(-1.0, 3.0),
    "n": IntDistribution(1, 8),
    "bs": IntDistribution(1, 256, log=True),
    "frac": FloatDistribution(0.0, 1.0, step=0.25),
    "opt": CategoricalDistribution(("adam", "sgd", None)),
}


# -- encoding ---------------------------------------------------------------------------------
def test_encoding_layout_and_round_trip() -> None:
    enc = SpaceEncoding(SPACE)
    assert enc.dim == 5 + 3  # one column per numeric parameter, one per category
    assert enc.column_groups.tolist() == [0, 1, 2, 3, 4, 5, 5, 5]
    assert enc.continuous_columns.tolist() == [0, 1]
    params = [
        {"lr": 1e-4, "x": 0.5, "n": 3, "bs": 64, "frac": 0.75, "opt": None},
        {"lr": 1e-6, "x": 3.0, "n": 8, "bs": 1, "frac": 0.0, "opt": "adam"},
    ]
    X = enc.encode(params)
    assert X.min() >= 0.0 and X.max() <= 1.0
    for row, p in zip(X, params, strict=True):
        back = enc.decode(row)
        assert back["lr"] == pytest.approx(p["lr"])
        assert back["x"] == pytest.approx(p["x"])
        assert {k: back[k] for k in ("n", "bs", "frac", "opt")} == {
            k: p[k] for k in ("n", "bs", "frac", "opt")
        }
        assert isinstance(back["n"], int) and isinstance(back["bs"], int)
    # log parameters live in log space: 1e-4 is the geometric middle of [1e-6, 1e-2]
    assert X[0, 0] == pytest.approx(0.5)
    # one-hot for the categorical
    assert X[0, 5:].tolist() == [0.0, 0.0, 1.0]


def test_ints_get_equal_cells_and_rounding_snaps_to_them() -> None:
    enc = SpaceEncoding({"n": IntDistribution(0, 3)})
    centres = enc.encode([{"n": v} for v in range(4)])[:, 0]
    assert np.allclose(centres, [0.125, 0.375, 0.625, 0.875])
    assert enc.round(np.array([[0.26], [0.99], [0.0]]))[:, 0].tolist() == [0.375, 0.875, 0.125]
    assert enc.decode(np.array([0.51]))["n"] == 2


def test_round_and_sample_give_valid_points() -> None:
    enc = SpaceEncoding(SPACE)
    rng = np.random.RandomState(0)
    X = enc.sample(64, rng)
    assert np.allclose(enc.round(X), X)
    assert np.all(X[:, 5:].sum(1) == 1.0)
    raw = rng.uniform(size=(10, enc.dim))
    R = enc.round(raw)
    assert np.all(R[:, 5:].sum(1) == 1.0)
    assert np.all(np.argmax(R[:, 5:], 1) == np.argmax(raw[:, 5:], 1))
    # every categorical choice appears in a space-filling sample
    assert set(np.argmax(X[:, 5:], 1)) == {0, 1, 2}


def test_modelable_space_drops_single_values() -> None:
    space = {"a": FloatDistribution(1.0, 1.0), "b": CategoricalDistribution(["x"]), **SPACE}
    assert list(modelable_space(space)) == list(SPACE)


# -- the GP -----------------------------------------------------------------------------------
def _f(X: np.ndarray) -> np.ndarray:
    return np.sin(5 * X[:, 0]) + 0.5 * X[:, 1] ** 2


def test_gp_fits_a_known_function() -> None:
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(40, 2))
    model = fit_gp(X, _f(X))
    Xt = rng.uniform(size=(200, 2))
    mean, var = model.posterior(Xt)
    err = np.abs(mean - _f(Xt))
    assert err.mean() < 0.05 * np.ptp(_f(Xt))
    # calibrated-ish: most errors within 3 posterior standard deviations
    assert np.mean(err <= 3 * np.sqrt(var) + 1e-3) > 0.9


def test_posterior_variance_shrinks_at_data() -> None:
    rng = np.random.RandomState(1)
    X = rng.uniform(size=(15, 2))
    model = fit_gp(X, _f(X))
    _, var_data = model.posterior(X)
    _, var_far = model.posterior(np.array([[5.0, 5.0]]))  # far outside the data
    assert var_data.max() < 1e-2 * var_far[0]
    mean_data, _ = model.posterior(X)
    assert np.allclose(mean_data, _f(X), atol=0.02)


def test_ard_lengthscale_flags_the_irrelevant_dimension() -> None:
    rng = np.random.RandomState(2)
    X = rng.uniform(size=(30, 2))
    model = fit_gp(X, np.sin(6 * X[:, 0]))  # depends on x0 only
    ls = model.hyper.lengthscales
    assert ls[1] > 3 * ls[0]


def test_condition_on_collapses_variance_at_pending_point() -> None:
    rng = np.random.RandomState(3)
    X = 0.5 * rng.uniform(size=(12, 2))
    model = fit_gp(X, _f(X))
    p = np.array([[0.9, 0.9]])  # away from the data
    _, before = model.posterior(p)
    believed = model.condition_on(p, model.posterior(p)[0])
    _, after = believed.posterior(p)
    assert after[0] < 1e-2 * before[0]
    assert believed.n == model.n + 1 and model.n == 12


def test_torch_posterior_is_differentiable() -> None:
    rng = np.random.RandomState(4)
    X = rng.uniform(size=(10, 2))
    model = fit_gp(X, _f(X))
    xq = torch.tensor([[0.3, 0.7]], dtype=torch.float64, requires_grad=True)
    mean, var = model.posterior(xq)
    (mean.sum() + var.sum()).backward()
    assert torch.isfinite(xq.grad).all() and xq.grad.abs().sum() > 0


# -- log-EI -----------------------------------------------------------------------------------
def test_log_h_matches_direct_formula_where_representable() -> None:
    z = np.concatenate([np.linspace(-30, 30, 241), [-1.0, -1.0 + 1e-9, -1.0 - 1e-9]])
    direct = np.log(norm.pdf(z) + z * norm.cdf(z))
    ours = log_h(torch.tensor(z, dtype=torch.float64)).numpy()
    assert np.allclose(ours, direct, rtol=1e-9, atol=1e-9)


def test_log_ei_matches_log_of_ei() -> None:
    mean = torch.tensor([0.0, 1.0, -2.0, 0.3], dtype=torch.float64)
    var = torch.tensor([1.0, 0.25, 0.5, 1e-4], dtype=torch.float64)
    best = 0.5
    sd = np.sqrt(var.numpy())
    z = (mean.numpy() - best) / sd
    ei = sd * (norm.pdf(z) + z * norm.cdf(z))
    assert np.allclose(log_ei(mean, var, best).numpy(), np.log(ei), rtol=1e-9)


def test_log_ei_stays_finite_and_ordered_deep_in_the_tail() -> None:
    z = torch.tensor([-40.0, -1e3, -1e6, -1e8, -1e12], dtype=torch.float64, requires_grad=True)
    out = log_h(z)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()
    assert np.all(np.diff(out.detach().numpy()) < 0)  # further in the tail = smaller
    # plain EI underflows to 0 here; the asymptote -z^2/2 - log(sqrt(2 pi)) - 2 log|z| holds
    zz = -1e3
    assert out[1].item() == pytest.approx(
        -(zz**2) / 2 - 0.5 * math.log(2 * math.pi) - 2 * math.log(-zz), rel=1e-9
    )
    assert float(norm.pdf(-40.0) + -40.0 * norm.cdf(-40.0)) <= 0.0  # what the naive form gives


# -- acquisition optimisation -----------------------------------------------------------------
def test_optimize_acquisition_finds_a_known_maximum_in_a_mixed_space() -> None:
    space = {
        "a": FloatDistribution(0.0, 1.0),
        "b": FloatDistribution(0.0, 1.0),
        "k": IntDistribution(0, 9),
        "c": CategoricalDistribution(("p", "q", "r")),
    }
    enc = SpaceEncoding(space)
    target = np.array([0.3, 0.8])

    def fn(X: torch.Tensor) -> torch.Tensor:
        cont = -((X[:, :2] - torch.as_tensor(target)) ** 2).sum(1)
        k_term = -((X[:, 2] - enc.encode([{"a": 0, "b": 0, "k": 7, "c": "p"}])[0, 2]) ** 2)
        return cont + k_term + X[:, 5]  # category "r" is best

    rows, vals = optimize_acquisition(fn, enc, np.random.RandomState(0), n_candidates=256)
    best = enc.decode(rows[0])
    assert abs(best["a"] - 0.3) < 1e-3 and abs(best["b"] - 0.8) < 1e-3
    assert best["k"] == 7 and best["c"] == "r"
    assert np.all(np.diff(vals) <= 0)  # best first
    assert np.allclose(evaluate(fn, rows[:1]), vals[:1])
