"""A Gaussian process over (configuration, fidelity) whose kernel is shaped like learning curves.

Why not one stationary kernel over configuration and fidelity: it lets an early validation stand
for the final value as much as the fitted lengthscale in the fidelity says, for every
configuration alike, and it learns the final-value surface from all validations at once (eight
early points per trial against one final one), so the lengthscales of the early, fast-moving part
of the curves decide how it interpolates final values. Learning curves have a structure it
ignores: they end somewhere. Here a value at configuration ``x`` and step ``t`` of ``T`` is

    f(x, t) = g(x) + w(t) (m(s) + d(x, s)),   w(t) = 1 - t / T,   s = log(1 + t) / log(1 + T)

* ``g``: the final value, a Matérn-5/2 GP over the configuration with its own lengthscales;
* ``m``: the curve shape common to all configurations (a GP over ``s`` alone);
* ``d``: how one configuration's curve differs from that shape (Matérn over configuration times
  Matérn over ``s``): curves may cross, rise slowly and end best, or rise and fall again;
* both deviations vanish at the last step (``w(T) = 0``), so a final value observes ``g`` alone, and
  an early validation informs ``g`` as much as the fitted size of ``d`` (against ``g``'s) allows,
  less the earlier it is (``w`` near 1). The fit (MAP, the same priors as ``fit_gp``) learns from
  the data how much early values say about final ones, separately for the common shape and for a
  configuration's own deviation. ``w`` is linear in steps (a curve still far from its end value
  at half time is common: GRPO accuracy is often half its final value there); the Matérn in ``s``
  is in log steps, where curves change about evenly.

This is the additive structure of freeze-thaw BO (a curve converges to an asymptote that is a GP
over configurations) without its exponential-decay kernel, which cannot fall again.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.optimize
import torch

from nemo_rl_sweep.gp.kernels import matern52, scaled_sqdist
from nemo_rl_sweep.gp.model import factorise, standardise
from nemo_rl_sweep.gp.priors import DEFAULT_PRIORS, NOISE_FLOOR, Priors
from nemo_rl_sweep.gp.threads import single_thread

_DT = torch.float64
_LS = (math.log(1e-3), math.log(1e3))
_VAR = (math.log(1e-4), math.log(1e2))
_NOISE = (math.log(1e-9), math.log(1.0))


class CurveGP:
    """The fitted model; answers as ``GPModel`` does (standardised posterior, caller units).

    Rows are the encoded configuration plus a last column ``s``; ``raw`` packs the log
    hyperparameters: lengthscales of g (one per column group), of d, of m and d in ``s``, the
    variances of g, m, d, and the noise variance.
    """

    def __init__(
        self,
        X: np.ndarray | torch.Tensor,
        y_std: np.ndarray | torch.Tensor,
        *,
        column_groups: np.ndarray,
        max_step: int,
        raw: np.ndarray,
        y_offset: float,
        y_scale: float,
    ) -> None:
        self.X = torch.as_tensor(X, dtype=_DT)
        self.y = torch.as_tensor(y_std, dtype=_DT)
        self.column_groups = np.asarray(column_groups, dtype=int)
        self.max_step = int(max_step)
        self.raw = np.asarray(raw, dtype=float)
        self.y_offset = float(y_offset)
        self.y_scale = float(y_scale)
        with torch.no_grad():
            K = kernel(self.X, self.X, torch.as_tensor(self.raw), self.column_groups, self.max_step)
            K.diagonal().add_(self.noise_var + NOISE_FLOOR)
            _, self._L_inv, self._alpha = factorise(K, self.y)

    @property
    def hyper(self) -> np.ndarray:
        return self.raw

    @property
    def noise_var(self) -> float:
        return float(math.exp(self.raw[-1]))

    @property
    def lengthscales(self) -> np.ndarray:
        """Lengthscale of every encoded column: g's for the configuration, d's in ``s`` last."""
        g = int(self.column_groups.max()) + 1
        ls = np.exp(self.raw[:g])[self.column_groups]
        return np.append(ls, math.exp(self.raw[2 * g + 1]))

    def to_standard(self, y: float | np.ndarray) -> float | np.ndarray:
        return (y - self.y_offset) / self.y_scale

    def posterior_standard(self, Xq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the latent f in standardised units, (m, d + 1) -> (m,), (m,)."""
        raw = torch.as_tensor(self.raw)
        k = kernel(Xq, self.X, raw, self.column_groups, self.max_step)
        prior = prior_var(Xq, raw, self.max_step)
        mean = k @ self._alpha
        v = k @ self._L_inv.T
        return mean, (prior - (v * v).sum(-1)).clamp_min(1e-12)

    def posterior(self, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of f (noise-free) in the caller's units."""
        with torch.no_grad():
            m, v = self.posterior_standard(torch.as_tensor(np.atleast_2d(Xq), dtype=_DT))
        return m.numpy() * self.y_scale + self.y_offset, v.numpy() * self.y_scale**2

    def _with(self, X: torch.Tensor, y: torch.Tensor) -> CurveGP:
        return CurveGP(
            X,
            y,
            column_groups=self.column_groups,
            max_step=self.max_step,
            raw=self.raw,
            y_offset=self.y_offset,
            y_scale=self.y_scale,
        )

    def condition_on(self, X_new: np.ndarray, y_new: np.ndarray) -> CurveGP:
        """The same model with extra (e.g. imagined) rows, in caller units."""
        X_new = torch.as_tensor(np.atleast_2d(X_new), dtype=_DT)
        y_new = torch.as_tensor(np.asarray(self.to_standard(np.asarray(y_new))), dtype=_DT)
        return self._with(torch.cat([self.X, X_new]), torch.cat([self.y, y_new.reshape(-1)]))

    def held_out(self, rows: np.ndarray, target: int) -> tuple[float, float]:
        """Mean and variance (standardised, noise included) of the value of row ``target`` given
        every row but ``rows`` (a boolean mask containing ``target``), from the fitted inverse:
        ``K^-1`` restricted to the held-out block is the inverse of their joint predictive
        covariance (Rasmussen and Williams 2006, eq. 5.12 for one row), so no refit and no new
        factorisation per question."""
        idx = np.flatnonzero(rows)
        L_inv_b = self._L_inv[:, idx]
        cov = torch.linalg.inv(L_inv_b.T @ L_inv_b)
        at = int(np.flatnonzero(idx == target)[0])
        mean = self.y[idx] - cov @ self._alpha[idx]
        return float(mean[at]), float(cov[at, at])

    def subset(self, keep: np.ndarray) -> CurveGP:
        """The same model conditioned on the rows ``keep`` (a boolean mask) only."""
        mask = torch.as_tensor(keep)
        return self._with(self.X[mask], self.y[mask])


def _weight(s: torch.Tensor, max_step: int) -> torch.Tensor:
    """w = 1 - t / T of the fidelity column (0 at the last step)."""
    if max_step <= 0:
        return torch.zeros_like(s)
    t = torch.expm1(s * math.log1p(max_step))
    return (1.0 - t / max_step).clamp(0.0, 1.0)


def kernel(
    A: torch.Tensor, B: torch.Tensor, raw: torch.Tensor, groups: np.ndarray, max_step: int
) -> torch.Tensor:
    """k((x, s), (x', s')) of the module docstring, (m, d + 1), (n, d + 1) -> (m, n)."""
    g = int(groups.max()) + 1
    cols = torch.as_tensor(groups)  # each encoded column's parameter
    inv_g = torch.exp(-2.0 * raw[:g])[cols]
    inv_d = torch.exp(-2.0 * raw[g : 2 * g])[cols]
    inv_sm, inv_sd = torch.exp(-2.0 * raw[2 * g]), torch.exp(-2.0 * raw[2 * g + 1])
    var_g, var_m, var_d = torch.exp(raw[2 * g + 2 : 2 * g + 5])
    xa, xb, sa, sb = A[:, :-1], B[:, :-1], A[:, -1], B[:, -1]
    ds2 = (sa.unsqueeze(-1) - sb) ** 2
    ww = _weight(sa, max_step).unsqueeze(-1) * _weight(sb, max_step)
    k_g = var_g * matern52(scaled_sqdist(xa, xb, inv_g))
    k_m = var_m * matern52(ds2 * inv_sm)
    k_d = var_d * matern52(scaled_sqdist(xa, xb, inv_d)) * matern52(ds2 * inv_sd)
    return k_g + ww * (k_m + k_d)


def prior_var(A: torch.Tensor, raw: torch.Tensor, max_step: int) -> torch.Tensor:
    """k(a, a) for every row of ``A``."""
    var_g, var_m, var_d = torch.exp(raw[-4:-1])
    return var_g + _weight(A[:, -1], max_step) ** 2 * (var_m + var_d)


def _log_prior(raw: torch.Tensor, g: int, priors: Priors) -> torch.Tensor:
    z = (raw[: 2 * g + 2] - priors.ls_loc) / priors.ls_scale
    lp = -0.5 * (z * z).sum()
    var = torch.exp(raw[2 * g + 2 : 2 * g + 5])
    lp = lp + ((priors.signal_shape - 1.0) * torch.log(var) - priors.signal_rate * var).sum()
    return lp + priors.noise_log_prob(torch.exp(raw[-1]) + NOISE_FLOOR)


def fit_curve_gp(
    X: np.ndarray,
    y: np.ndarray,
    *,
    column_groups: np.ndarray,
    max_step: int,
    priors: Priors = DEFAULT_PRIORS,
    warm_start: np.ndarray | None = None,
    max_iter: int = 60,
) -> CurveGP:
    """MAP fit of :class:`CurveGP` to rows ``X`` (configuration, s) and values ``y``."""
    groups = np.asarray(column_groups, dtype=int)
    g = int(groups.max()) + 1
    ys, offset, scale = standardise(y)
    Xt = torch.as_tensor(np.atleast_2d(X), dtype=_DT)
    yt = torch.as_tensor(ys, dtype=_DT)
    bounds = [_LS] * (2 * g + 2) + [_VAR] * 3 + [_NOISE]
    ls0 = math.log(priors.lengthscale_median(g))
    default = np.array([ls0] * (2 * g + 2) + [0.0, 0.0, math.log(0.3), math.log(1e-2)])
    # the last fit's optimum is a good start for the next (one more curve changes little)
    warm = warm_start is not None and len(warm_start) == len(default)
    starts = [np.asarray(warm_start, dtype=float)] if warm else [default]

    def fun(raw: np.ndarray) -> tuple[float, np.ndarray]:
        r = torch.tensor(raw, dtype=_DT, requires_grad=True)
        K = kernel(Xt, Xt, r, groups, max_step)
        K = K + (torch.exp(r[-1]) + NOISE_FLOOR) * torch.eye(len(Xt), dtype=_DT)
        L, info = torch.linalg.cholesky_ex(K)
        if int(info) != 0:
            return 1e25, np.zeros_like(raw)
        alpha = torch.cholesky_solve(yt.unsqueeze(-1), L).squeeze(-1)
        mll = -0.5 * (yt @ alpha) - torch.log(torch.diagonal(L)).sum()
        loss = -(mll + _log_prior(r, g, priors))
        loss.backward()
        val, grad = float(loss.detach()), r.grad.numpy().copy()
        if not math.isfinite(val) or not np.all(np.isfinite(grad)):
            return 1e25, np.zeros_like(raw)
        return val, grad

    best: tuple[float, np.ndarray] | None = None
    with single_thread():
        for x0 in starts:
            x0 = np.clip(x0, [b[0] for b in bounds], [b[1] for b in bounds])
            res = scipy.optimize.minimize(
                fun,
                x0,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": max_iter, "gtol": 1e-4},
            )
            if res.fun < 1e24 and (best is None or res.fun < best[0]):
                best = (float(res.fun), res.x)
        raw = best[1] if best is not None else default
        return CurveGP(
            Xt,
            yt,
            column_groups=groups,
            max_step=max_step,
            raw=raw,
            y_offset=offset,
            y_scale=scale,
        )
