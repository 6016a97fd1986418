"""A Gaussian-process regression model and its MAP hyperparameter fit.

Inputs are encoded rows in the unit cube (one-hot columns for categoricals, see
``nemo_rl_sweep.gp.search_space``); outputs are standardised inside :func:`fit_gp` and
:meth:`GPModel.posterior` answers in the caller's units. Everything is float64 torch so the
acquisition search can differentiate the posterior with respect to the query point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch

from nemo_rl_sweep.gp.kernels import matern52, scaled_sqdist
from nemo_rl_sweep.gp.priors import DEFAULT_PRIORS, NOISE_FLOOR, Priors
from nemo_rl_sweep.gp.threads import single_thread

_DT = torch.float64
_LOG_LS_BOUNDS = (math.log(1e-3), math.log(1e3))
_LOG_SIGNAL_BOUNDS = (math.log(1e-2), math.log(1e2))
_LOG_NOISE_BOUNDS = (math.log(1e-9), math.log(1.0))


@dataclass(frozen=True)
class Hyperparameters:
    """Fitted kernel settings; hand them back to :func:`fit_gp` as ``warm_start``."""

    lengthscales: np.ndarray  # one per column group (parameter)
    signal_var: float  # standardised units
    noise_var: float  # standardised units


def _cholesky(K: torch.Tensor) -> torch.Tensor:
    """Cholesky factor, adding a little jitter when rounding makes K lose definiteness."""
    L, info = torch.linalg.cholesky_ex(K)
    jitter = 1e-9
    while int(info) != 0:
        if jitter > 1e-2:
            raise torch.linalg.LinAlgError("kernel matrix is not positive definite")
        L, info = torch.linalg.cholesky_ex(K + jitter * torch.eye(len(K), dtype=K.dtype))
        jitter *= 10.0
    return L


def factorise(K: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``L``, ``L^-1`` and ``K^-1 y`` of a kernel matrix with its noise on the diagonal: what a
    posterior needs, computed once per fitted model (every GP of this package shares it)."""
    L = _cholesky(K)
    L_inv = torch.linalg.solve_triangular(L, torch.eye(len(K), dtype=K.dtype), upper=False)
    return L, L_inv, L_inv.T @ (L_inv @ y)


class GPModel:
    """A fitted GP: posterior mean and variance of f at any encoded point.

    ``posterior`` accepts a numpy array (returns numpy) or a torch tensor (returns torch and
    keeps the autograd graph, for gradient-based acquisition search).
    """

    def __init__(
        self,
        X: np.ndarray | torch.Tensor,
        y_std: np.ndarray | torch.Tensor,
        *,
        column_groups: np.ndarray,
        hyper: Hyperparameters,
        y_offset: float,
        y_scale: float,
    ) -> None:
        self.X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X, dtype=_DT)
        self.y = torch.as_tensor(
            np.asarray(y_std) if not torch.is_tensor(y_std) else y_std, dtype=_DT
        )
        self.column_groups = np.asarray(column_groups, dtype=int)
        self.hyper = hyper
        self.y_offset = float(y_offset)
        self.y_scale = float(y_scale)
        ls_cols = np.asarray(hyper.lengthscales, dtype=float)[self.column_groups]
        self.inv_sq_ls = torch.as_tensor(1.0 / ls_cols**2, dtype=_DT)
        self.signal_var = float(hyper.signal_var)
        self.noise_var = float(hyper.noise_var)
        with torch.no_grad():
            K = self.signal_var * matern52(scaled_sqdist(self.X, self.X, self.inv_sq_ls))
            K.diagonal().add_(self.noise_var)
            self._L, self._L_inv, self._alpha = factorise(K, self.y)

    @property
    def n(self) -> int:
        return len(self.X)

    @property
    def lengthscales(self) -> np.ndarray:
        """Lengthscale of every encoded column (unit-cube units)."""
        return np.asarray(self.hyper.lengthscales, dtype=float)[self.column_groups]

    def to_standard(self, y: float | np.ndarray) -> float | np.ndarray:
        """Caller units -> the standardised units the model works in."""
        return (y - self.y_offset) / self.y_scale

    def posterior_standard(self, Xq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the latent f in standardised units, (m, d) -> (m,), (m,)."""
        k = self.signal_var * matern52(scaled_sqdist(Xq, self.X, self.inv_sq_ls))
        mean = k @ self._alpha
        v = k @ self._L_inv.T
        var = (self.signal_var - (v * v).sum(-1)).clamp_min(1e-12 * self.signal_var)
        return mean, var

    def posterior(
        self, Xq: np.ndarray | torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray] | tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance of f (noise-free) in the caller's units."""
        if torch.is_tensor(Xq):
            mean, var = self.posterior_standard(torch.atleast_2d(Xq).to(_DT))
            return mean * self.y_scale + self.y_offset, var * self.y_scale**2
        with torch.no_grad():
            m, v = self.posterior_standard(torch.as_tensor(np.atleast_2d(Xq), dtype=_DT))
        return m.numpy() * self.y_scale + self.y_offset, v.numpy() * self.y_scale**2

    def condition_on(self, X_new: np.ndarray, y_new: np.ndarray) -> GPModel:
        """The same GP (same hyperparameters and scaling) with extra (e.g. imagined) data.

        Used for pending points: believing a value at a running trial's point collapses the
        variance there, so the acquisition stops pointing at it.
        """
        X_new = np.atleast_2d(np.asarray(X_new, dtype=float))
        y_new = np.asarray(self.to_standard(np.asarray(y_new, dtype=float))).reshape(-1)
        return GPModel(
            torch.cat([self.X, torch.as_tensor(X_new, dtype=_DT)]),
            torch.cat([self.y, torch.as_tensor(y_new, dtype=_DT)]),
            column_groups=self.column_groups,
            hyper=self.hyper,
            y_offset=self.y_offset,
            y_scale=self.y_scale,
        )


def _pack(h: Hyperparameters, noise_floor: float) -> np.ndarray:
    noise = max(h.noise_var - noise_floor, 1e-9)
    raw = np.concatenate([np.log(h.lengthscales), [math.log(h.signal_var), math.log(noise)]])
    bounds = _bounds(len(h.lengthscales))
    return np.clip(raw, [b[0] for b in bounds], [b[1] for b in bounds])


def _bounds(n_groups: int) -> list[tuple[float, float]]:
    return [_LOG_LS_BOUNDS] * n_groups + [_LOG_SIGNAL_BOUNDS, _LOG_NOISE_BOUNDS]


def _unpack(raw: np.ndarray, noise_floor: float) -> Hyperparameters:
    g = len(raw) - 2
    return Hyperparameters(
        lengthscales=np.exp(raw[:g]),
        signal_var=float(math.exp(raw[g])),
        noise_var=float(math.exp(raw[g + 1]) + noise_floor),
    )


def group_sqdist(X: torch.Tensor, column_groups: np.ndarray) -> torch.Tensor:
    """Squared differences of every pair of rows, summed within each column group: (n, n, G)."""
    diff = X.unsqueeze(1) - X.unsqueeze(0)
    sq = diff * diff
    n_groups = int(column_groups.max()) + 1
    if n_groups == X.shape[1]:
        return sq
    out = torch.zeros(X.shape[0], X.shape[0], n_groups, dtype=_DT)
    out.index_add_(2, torch.as_tensor(column_groups), sq)
    return out


def neg_log_posterior(
    raw: np.ndarray,
    D: torch.Tensor,
    y: torch.Tensor,
    priors: Priors,
    noise_floor: float,
    fixed_noise: float | None = None,
) -> tuple[float, np.ndarray]:
    """-(log marginal likelihood + log prior) of packed hyperparameters, and its gradient.

    The gradient is the textbook one, d(mll)/d(theta) = 1/2 tr((a a^T - K^-1) dK/d(theta)) with
    a = K^-1 y, written out for Matérn-5/2 (autograd through a 500x500 Cholesky costs ~10x more).
    ``D`` is :func:`group_sqdist` of the inputs, computed once per fit.
    """
    g = len(raw) - 2
    log_ls = raw[:g]
    signal = math.exp(raw[g])
    noise_free = math.exp(raw[g + 1])
    noise = noise_free + noise_floor if fixed_noise is None else fixed_noise
    inv_sq = torch.as_tensor(np.exp(-2.0 * log_ls), dtype=_DT)
    r2 = D @ inv_sq
    s5 = torch.sqrt(5.0 * r2)
    e = torch.exp(-s5)
    k = (1.0 + s5 + (5.0 / 3.0) * r2) * e
    dk_dr2 = (-5.0 / 6.0) * (1.0 + s5) * e
    K = signal * k
    K.diagonal().add_(noise)
    L, info = torch.linalg.cholesky_ex(K)
    if int(info) != 0:
        raise torch.linalg.LinAlgError("not positive definite")
    alpha = torch.cholesky_solve(y.unsqueeze(-1), L).squeeze(-1)
    mll = -0.5 * float(y @ alpha) - float(torch.log(torch.diagonal(L)).sum())
    W = torch.outer(alpha, alpha) - torch.cholesky_inverse(L)  # d(mll)/dK = W / 2
    M = W * (signal * dk_dr2)
    # dK/dlog(l_g) = signal * k'(r2) * (-2 D_g / l_g^2)
    grad_ls = -(torch.einsum("ij,ijg->g", M, D).numpy()) * np.exp(-2.0 * log_ls)
    grad_signal = 0.5 * float((W * K).sum() - noise * torch.diagonal(W).sum())
    grad_noise = (
        0.0 if fixed_noise is not None else 0.5 * float(torch.diagonal(W).sum()) * noise_free
    )
    # priors (and their gradients in the same log coordinates)
    mu = priors.ls_loc + priors.ls_dim_slope * math.log(max(g, 1))
    z = (log_ls - mu) / priors.ls_scale
    lp = -0.5 * float((z * z).sum())
    grad_ls = grad_ls - z / priors.ls_scale
    lp += (priors.signal_shape - 1.0) * math.log(signal) - priors.signal_rate * signal
    grad_signal += (priors.signal_shape - 1.0) - priors.signal_rate * signal
    lp += priors.noise_log_prob(noise)
    if fixed_noise is None:
        grad_noise += priors.noise_log_prob_grad(noise) * noise_free
    grad = np.concatenate([grad_ls, [grad_signal, grad_noise]])
    return -(mll + lp), -grad


def standardise(y: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(y - mean) / std, with non-finite values clipped to the finite range first."""
    y = np.asarray(y, dtype=float)
    finite = np.isfinite(y)
    if not finite.all():
        lo, hi = (y[finite].min(), y[finite].max()) if finite.any() else (0.0, 0.0)
        y = np.clip(np.nan_to_num(y, nan=lo, posinf=hi, neginf=lo), lo, hi)
    offset = float(np.mean(y))
    scale = float(np.std(y))
    scale = scale if scale > 1e-12 else 1.0
    return (y - offset) / scale, offset, scale


def _fit_subset(ys: np.ndarray, max_points: int | None) -> np.ndarray:
    """Row indices the hyperparameters are fitted on (all rows unless there are too many)."""
    n = len(ys)
    if max_points is None or n <= max_points:
        return np.arange(n)
    order = np.argsort(-ys, kind="stable")  # best (largest) first
    n_top = max_points // 4
    rest = order[n_top:]
    spread = rest[np.linspace(0, len(rest) - 1, max_points - n_top).round().astype(int)]
    return np.sort(np.concatenate([order[:n_top], spread]))


def fit_gp(
    X: np.ndarray,
    y: np.ndarray,
    *,
    column_groups: np.ndarray | None = None,
    priors: Priors = DEFAULT_PRIORS,
    warm_start: Hyperparameters | None = None,
    noise_floor: float = NOISE_FLOOR,
    fixed_noise: float | None = None,
    max_iter: int = 200,
    try_default_start: bool | None = None,
    max_fit_points: int | None = 256,
) -> GPModel:
    """Fit a Matérn-5/2 ARD GP to encoded rows ``X`` (n, d) and values ``y`` (n,) by MAP.

    ``column_groups`` maps each column to a lengthscale (one-hot columns of one categorical
    share one); default one per column. ``warm_start`` (the last fit's
    :class:`Hyperparameters`) makes refits cheap; with few points the default start is tried
    too and the better optimum kept (``try_default_start``: default when n < 100).
    ``fixed_noise`` pins the noise variance (standardised units), e.g. for tests.

    Cost control: the hyperparameters of a large data set are fitted on ``max_fit_points`` rows
    (the best quarter by value, the rest an even spread over the others, deterministically);
    the model then conditions on every row. With hundreds of points the hyperparameters are
    well determined by a subset, while a full O(n^3) fit per optimiser step would dominate the
    cost of a suggestion.
    """
    X = np.atleast_2d(np.asarray(X, dtype=float))
    groups = (
        np.arange(X.shape[1]) if column_groups is None else np.asarray(column_groups, dtype=int)
    )
    n_groups = int(groups.max()) + 1
    ys, offset, scale = standardise(y)
    fit_rows = _fit_subset(ys, max_fit_points)
    Xt = torch.as_tensor(X[fit_rows], dtype=_DT)
    yt = torch.as_tensor(ys[fit_rows], dtype=_DT)
    D = group_sqdist(Xt, groups)

    default = Hyperparameters(
        lengthscales=np.full(n_groups, priors.lengthscale_median(n_groups)),
        signal_var=1.0,
        noise_var=1e-2 if fixed_noise is None else fixed_noise,
    )
    starts = []
    if warm_start is not None and len(warm_start.lengthscales) == n_groups:
        starts.append(warm_start)
    if try_default_start is None:
        try_default_start = len(X) < 100
    if not starts or try_default_start:
        starts.append(default)

    def fun(raw: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            val, grad = neg_log_posterior(raw, D, yt, priors, noise_floor, fixed_noise)
        except torch.linalg.LinAlgError:
            return 1e25, np.zeros_like(raw)
        if not np.isfinite(val) or not np.all(np.isfinite(grad)):
            return 1e25, np.zeros_like(raw)
        return val, grad

    best: tuple[float, np.ndarray] | None = None
    with single_thread():
        for h in starts:
            res = scipy.optimize.minimize(
                fun,
                _pack(h, noise_floor),
                jac=True,
                method="L-BFGS-B",
                bounds=_bounds(n_groups),
                options={"maxiter": max_iter, "gtol": 1e-4},
            )
            if np.isfinite(res.fun) and res.fun < 1e24 and (best is None or res.fun < best[0]):
                best = (float(res.fun), res.x)
        hyper = _unpack(best[1], noise_floor) if best is not None else default
        if fixed_noise is not None:
            hyper = Hyperparameters(hyper.lengthscales, hyper.signal_var, fixed_noise)
        return GPModel(X, ys, column_groups=groups, hyper=hyper, y_offset=offset, y_scale=scale)
