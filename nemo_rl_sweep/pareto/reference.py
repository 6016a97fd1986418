"""The reference point expected hypervolume improvement uses when the user gives none.

Plain numpy on minimisation-form values (no Optuna, no torch), so it can be tested on its own and
moved with the acquisition code.
"""

from __future__ import annotations

import numpy as np

from nemo_rl_sweep.pareto.front import pareto_front_mask

_BLOCK = 256  # rows per block of the pairwise dominance test


def ehvi_reference_point(
    values: np.ndarray,
    front: np.ndarray | None = None,
    *,
    margin: float = 0.1,
    left_behind: float = 0.1,
) -> np.ndarray:
    """Reference point for EHVI, derived from the observations; minimisation form, same units.

    ``values`` (n, m) are all finished trials, minimised, rows in the order the trials ran;
    ``front`` is the front the acquisition improves (default: the front of ``values``; the sampler
    passes its front with the running trials' believed values in it). The result is the nadir of
    the front, pushed out to the *witnesses* (below), plus ``margin`` x each objective's range.

    Why. Expected hypervolume improvement is zero for a point beyond the reference in any
    objective, so the reference decides which parts of objective space the search may go to.

    * The usual default, the current front's worst value plus a margin (BoTorch's
      ``infer_reference_point``: the front's nadir minus 0.1 x the front's range, after
      Ishibuchi et al. 2011; this sampler used to take 0.1 x the observed range), shrinks with
      the front. On a disconnected front (ZDT3, DTLZ7) the search settles on one piece, the
      front's nadir becomes that piece's nadir, and every point of the other pieces lies beyond
      the reference: its improvement is zero, and the search never leaves the first piece
      (issue 18; measured: ZDT3's hypervolume stuck at 0.46 of 1.33 in every seed).
    * The worst value of all trials plus a margin (Optuna's GPSampler: 1.1 x the worst
      standardised value) cannot shrink, but dominated outliers and poorly converged trials set
      it: the slabs along the front's edges then carry most of the hypervolume and the search
      spends its trials there (measured: 0.34 instead of 0.57 on DTLZ2). Ishibuchi, Imada,
      Setoguchi and Nojima (Evolutionary Computation 26(3), 2018) show the same for the
      indicator itself: a reference far beyond the nadir weights a front's boundary, one at the
      nadir drops its extremes; they put it at the true front's nadir plus about 1/H of its
      range.

    So the aim is the *true* front's nadir, which lies between those two. What the trials say
    about it: a trial that was on the front when it ran marks a place the front reached. If it is
    now dominated only narrowly in some objective, it was a poor copy of a part of the front that
    has since been found, and its bad value says nothing about the front's extent (DTLZ2's early
    trials: good in two objectives, poorly converged in the third). If it is now dominated by a
    wide margin in *every* objective (``left_behind``, a share of each objective's range), the
    search found better trials elsewhere and left its region, where another piece of the front
    may lie. Such witnesses push the nadir out to their values: the reference keeps covering
    the regions the front once reached, so it no longer shrinks when the search settles on one
    piece, and it stays at the front where the front is connected. Where a witness lies further
    beyond the front than the front's own extent in that objective (the front covers less than
    half of the span from its best value to the witness), the front has found too little of the
    objective to tell where it ends, and the reference covers the objective's observed range, as
    a user who knows the metric's range would set it: the first trials reaching a far piece are
    rarely converged, and a reference just past the witness gives them next to no improvement
    (measured on DTLZ7: 1.88 instead of 2.43 in one seed). Ranges are robust: a value
    further above the next one down than the whole range below that is an outlier, counted
    neither in the range nor as a witness, so one diverged trial does not move the reference.

    With **two objectives** the reference covers each objective's robust observed range, witness
    or not. The witnesses miss a region where no trial was ever on the front (ZDT3's last pieces,
    in some seeds; median 1.01 against 1.23 with the hand-given reference), and in two dimensions a wide reference costs next to
    nothing: the region between the front's worst f1 and the reference's f1 is improved only by a
    point whose f2 is below the front's best f2, which is a new extreme of the front, never a poorly
    converged copy of a part already found (the strip beside the front's best f1 is empty once the
    search reaches that objective's bound, and is a real extension of the front before). So no
    trial is spent on the slabs along the front's edges, and a piece anywhere in the observed
    range keeps a positive improvement. With three or more objectives this does not hold: the
    slab beyond the front in f3 is a two-dimensional region, and trials on the boundary of the
    objective space (DTLZ2's points with two objectives at 0 and the third poorly converged) fill
    it; there the witness rule above decides.

    Limits (measured, see docs/benchmarks.md): with three or more objectives a region where no
    trial was ever on the front is not covered, and covering an objective's observed range also
    widens the reference in objectives whose bad values come from unconverged trials, which
    costs on connected fronts (DTLZ2). A user's reference point, where known, is still better.
    """
    y = np.asarray(values, dtype=float)
    if y.ndim != 2 or y.shape[0] == 0:
        raise ValueError(f"values must be a non-empty (n, m) array, got shape {y.shape}")
    f = y[pareto_front_mask(y)] if front is None else np.asarray(front, dtype=float)
    lo = np.minimum(y.min(axis=0), f.min(axis=0))
    hi = np.array([_robust_top(y[:, k]) for k in range(y.shape[1])])
    hi = np.maximum(hi, f.max(axis=0))
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    if y.shape[1] == 2:
        # Two objectives: cover each objective's robust observed range (see above).
        return np.maximum(f.max(axis=0), hi) + margin * span
    z, fz = (y - lo) / span, (f - lo) / span

    # On the front when it ran: no earlier row dominates it (in blocks, to bound memory).
    n = len(z)
    was_on_front = np.ones(n, dtype=bool)
    for s in range(0, n, _BLOCK):
        zb = z[s : s + _BLOCK]
        le = np.all(z[:, None, :] <= zb[None, :, :], axis=2)
        lt = np.any(z[:, None, :] < zb[None, :, :], axis=2)
        earlier = np.arange(n)[:, None] < np.arange(s, s + len(zb))[None, :]
        was_on_front[s : s + len(zb)] = ~(le & lt & earlier).any(axis=0)
    # How far it is dominated now: the largest d such that some front point is better by d in
    # every objective.
    depth = np.max(np.min(z[:, None, :] - fz[None, :, :], axis=2), axis=1)
    witness = was_on_front & (depth >= left_behind) & np.all(y <= hi, axis=1)

    nadir, ideal = f.max(axis=0), f.min(axis=0)
    if witness.any():
        far = y[witness].max(axis=0)
        # A witness further beyond the front than the front's own extent: the front has found
        # too little of this objective to tell where it ends; cover its observed range.
        unknown = far - nadir > nadir - ideal
        nadir = np.where(unknown, np.maximum(far, hi), np.maximum(nadir, far))
    return nadir + margin * span


def _robust_top(v: np.ndarray) -> float:
    """The largest value that is not an outlier: a value further above the next one down than
    the whole range below that is dropped, from the top, one by one."""
    s = np.sort(v)
    n = s.size
    while n > 2 and s[n - 1] - s[n - 2] > s[n - 2] - s[0]:
        n -= 1
    return float(s[n - 1])


__all__ = ["ehvi_reference_point"]
