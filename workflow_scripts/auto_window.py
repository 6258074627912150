"""``window: auto``: the γ₁ window made concrete on the data, by a fixed rule (``resolve_window``).

The widest stretch of the descending branch where the local log-slope of ε̄/ε_opt stays within
AUTO_TOLERANCE (relative) of its median over the stretch; ``fit`` then keeps it for every
bootstrap replicate.
"""
from __future__ import annotations

import math

import numpy as np

from .fit_data import FitData, FitError
from .fit_settings import Settings

AUTO_TOLERANCE = 0.15
AUTO_X_MAX = 0.8        # the stretch ends at or before 0.8 λ_opt: clear of the minimum's curvature
AUTO_MIN_DECADES = 0.3  # and spans at least this many decades of λ/λ_opt


def resolve_window(data: FitData, st: Settings) -> Settings:
    """``window: auto`` made concrete on the full data (then fixed for every bootstrap replicate).

    Rule: on each P's mean curve (≥ min_seeds seeds per point; optimum at the grid minimum), take
    the local log-slopes d log ε̄ / d log λ between neighbouring grid points left of λ_opt with
    λ/λ_opt ≤ AUTO_X_MAX; pool them over P (those ≥ gamma1_P_min) and take their median in bins
    of log λ/λ_opt one (coarsest) grid step wide. The window is the widest run of ≥ 3 consecutive
    bins, spanning ≥ AUTO_MIN_DECADES decades, whose medians all lie within AUTO_TOLERANCE
    (relative) of the run's own median slope, which must be negative (a descending power law)."""
    if not st.auto:
        return st
    in_g1 = st.in_gamma1(data.P)
    xs, ss, steps = [], [], []
    for i in range(len(data.P)):
        Y, grid = data.curves[i], data.grids[i]
        if not in_g1[i] or Y.shape[1] < 3:
            continue
        F = np.isfinite(Y)
        with np.errstate(divide="ignore", invalid="ignore"):
            m = np.log(np.where(F, Y, 0.0).sum(0) / F.sum(0))
        ok = (F.sum(0) >= st.min_seeds) & np.isfinite(m)
        if not ok.any():
            continue
        j = int(np.where(ok, m, np.inf).argmin())
        k = np.flatnonzero(ok[:j + 1])
        if len(k) < 2:
            continue
        g, mk = grid[k], m[k]
        mid = (g[1:] + g[:-1]) / 2 - grid[j]
        keep = mid <= math.log(AUTO_X_MAX)
        xs.append(mid[keep])
        ss.append((np.diff(mk) / np.diff(g))[keep])
        steps.append(float(np.median(np.diff(grid))))
    if not xs or not sum(len(x) for x in xs):
        raise FitError("window: auto found no descending branch (no mean-curve points left of "
                       "λ_opt with ≥ min_seeds seeds)")
    x, slope = np.concatenate(xs), np.concatenate(ss)
    width = max(steps)
    edges = np.arange(math.log(AUTO_X_MAX), x.min() - width, -width)[::-1]
    idx = np.digitize(x, edges) - 1
    bins = [(edges[b], edges[b + 1], float(np.median(slope[idx == b])))
            for b in range(len(edges) - 1) if np.any(idx == b)]
    best = None
    for a_ in range(len(bins)):
        for b_ in range(a_ + 2, len(bins)):
            run = bins[a_:b_ + 1]
            if any(run[t + 1][0] != run[t][1] for t in range(len(run) - 1)):
                break  # a gap: the run must be contiguous
            med = float(np.median([r[2] for r in run]))
            span = (run[-1][1] - run[0][0]) / math.log(10)
            if med >= 0 or span < AUTO_MIN_DECADES:
                continue
            if all(abs(r[2] - med) <= AUTO_TOLERANCE * abs(med) for r in run):
                key = (span, run[-1][1])
                if best is None or key > best[0]:
                    best = (key, run[0][0], run[-1][1])
    if best is None:
        raise FitError(f"window: auto found no stretch of ≥ {AUTO_MIN_DECADES} decades left of "
                       f"{AUTO_X_MAX} λ_opt where the local log-slope stays within "
                       f"{AUTO_TOLERANCE:.0%} of its median")
    return st.with_(x_left=float(math.exp(best[1])), x_right=float(math.exp(best[2])))
