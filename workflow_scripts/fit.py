"""Fit the dynamical (γ₁), convergence (γ₂) and measured (γ_meas) exponents with bootstrap intervals.

Why: the paper's claim is γ_pred = γ₁·γ₂ ≈ γ_meas; this module turns one aggregate (schema in
``aggregate.py``; nothing else is read) into those exponents with percentile confidence intervals
from a bootstrap over seeds within each P, so every number in Table 1 has an error bar and a
provenance. Its helpers: ``fit_data`` (the input read from an aggregate, censored seeds left out),
``auto_window`` (``window: auto``), ``regressions`` (least squares and OLS standard errors).

Definitions (all logs natural; windows and P ranges come from the settings, nothing is tuned here)
    mean curve ε̄_P(λ)   per P, the mean over seeds of the interpolated test error at each grid
                        point where at least ``min_seeds`` seeds have a value (the "mean" rows of
                        the aggregate); other points are masked.
    λ_opt(P), ε_opt(P)  the minimum of the mean curve: the discrete minimum refined by the vertex of
                        the parabola through it and its two neighbours in (log λ, log ε̄), kept
                        within half a grid step (parameter-free; removes the grid's discreteness).
    γ₁, k₁              pooled over every P with a mean curve: ordinary least squares of
                        log(ε̄/ε_opt) on log(λ/λ_opt) over the unmasked grid points with
                        x_left ≤ λ/λ_opt ≤ x_right (``window``; x_right ≤ 1, the descending branch);
                        slope = −γ₁, intercept = log k₁. (The P range does not apply: law 1 is
                        independent of P.)
    γ₂, k₂              OLS of log λ_opt(P) on log P over P_min ≤ P ≤ P_max; slope γ₂, intercept log k₂.
    γ_meas, k_meas      OLS of log ε_opt(P) on log P over the same P range; slope = −γ_meas.
    γ_pred              γ₁·γ₂; also γ_pred − γ_meas.
    predicted line      log ε_opt = c − γ_pred log P with c fitted by least squares (slope fixed).
Why λ_opt of the mean curve for γ₂ rather than the mean of the per-seed λ*_s (the optima table,
still reported per P as ``lambda_star_geomean``): a seed's λ* is the argmin of one noisy curve; with
the binomial noise of a finite test set its relative noise grows as ε falls with P, which skews λ*
towards the flatter overfitting side more at large P and biased γ₂ upwards (+0.015 to +0.026 in
the simulation of ``synthetic_curves.simulate_seeds`` with 20 seeds, 10k test examples) where the
mean curve's optimum stayed within 0.005. Likewise the minimum of a noisy mean curve is biased low,
a little more where ε is small, so γ_meas can be inflated by a few 0.001 (same simulation: +0.001
to +0.003).

Censored minima (``analysis.censored``, default ``exclude``): a seed whose minimum is censored by
the end of training (the aggregate's ``censored`` column, ``aggregate.censored_optimum``) has λ*, ε*
where training stopped, not where the error is lowest, and its curve's λ/λ_opt coordinates would be
wrong too. With ``exclude`` such seeds are left out of every quantity above (the mean curves, hence
λ_opt, ε_opt, γ₁, γ₂, γ_meas), and a P left with fewer than ``min_seeds`` uncensored seeds is dropped,
with the reason, under ``censored`` in fit.json. ``include`` keeps them (the behaviour before). The
authors' estimator always includes them, as their notebook did, and says so in its ``censored``
block.

Bootstrap: for each replicate, the seeds of each P are resampled with replacement (same count) and
every quantity above is recomputed; the masking pattern (which grid points have ≥ min_seeds seeds)
is that of the full data, so resamples vary the values, not the domain. Intervals are percentile
intervals at ``level`` (settings.bootstrap.level, default 0.95) over the replicates where the
quantity is defined; the count of undefined replicates is reported. A P with one seed contributes
no sampling variance.

Validation (tests/test_fit.py; ``synthetic_curves.simulate_seeds``): pooled over 1,200 synthetic
groups (8 P × 20 seeds, 5% seed jitter of λ_opt, 10% of ε_opt, 5% noise per evaluation, 200
resamples) the 95% intervals covered the truth in 94% (γ₁), 98% (γ₂), 92% (γ_meas), 98% (γ_pred) and
96% (γ_pred − γ_meas) of the groups, with mean errors below 0.003. Known limits: γ_meas is a little
under-covered because ε_opt on a per-P grid carries a P-level discretisation error that resampling
seeds cannot reproduce; γ₁ is biased low when the seeds' own optima scatter so much that some seeds
are past their minimum inside the window (−0.013 for a 20% scatter of λ_opt with x_right = 0.8):
keep x_right clear of the seeds' spread.

Impossible fits: ``estimate`` raises ``FitError`` (and only that, for any data) when a point
estimate is undefined: no usable mean curve, fewer than 2 distinct points in the γ₁ window, fewer
than 2 P values with an optimum in the P range. The CLI catches it and writes fit.json with
``"status": "impossible"`` and ``"reason"`` (the message), exit status 0, so the workflow goes on
and Table 1 shows the reason. Invalid settings (e.g. x_left ≥ x_right) are a ValueError: a
configuration bug that must stop the run.

fit.json: schema "fit/1", status, reason, group {experiment, arch, dataset, measure}, settings used
(window, P_min, P_max, min_seeds, censored, bootstrap n, seed, level), censored (the setting
applied, per P the seeds and censored seeds, the P values dropped and why), P_used per exponent, estimates
{name: {value, ci_low, ci_high, se, n_valid}} for gamma1, gamma2, gamma_meas, gamma_pred,
gamma_pred_minus_meas, k1, k2, k_meas, pred_log_intercept; per_P rows (λ_opt, ε_opt with bootstrap
intervals, geometric mean of λ*_s, seeds, window points); lines (the fitted and predicted lines the
figures draw, in log-log form); bootstrap (n, seed, level, method, failures); provenance (inputs with
sha256).
"""
from __future__ import annotations

import argparse
import math
import sys
import warnings

import numpy as np

from . import io, provenance
from .aggregate import SCHEMA
from .auto_window import AUTO_TOLERANCE, resolve_window
from .config import parse_settings
from .fit_data import FitData, FitError, apply_censoring, load_fit_data
from .fit_settings import ESTIMATORS, Settings
from .regressions import (number_or_none, ols_from_sums, ols_regressions, ols_rows,
                          ols_standard_errors)

FIT_SCHEMA = "fit/1"
ESTIMATES = ("gamma1", "gamma2", "gamma_meas", "gamma_pred", "gamma_pred_minus_meas", "k1", "k2",
             "k_meas", "pred_log_intercept")


# ---------------------------------------------------------------------------------------------
# the estimator, vectorised over bootstrap replicates

def _log_window(st: Settings) -> tuple[float, float]:
    if st.auto:
        raise ValueError("window: auto must be resolved on the data first (resolve_window)")
    return (math.log(st.x_left) if st.x_left > 0 else -math.inf), math.log(st.x_right)


def _replicates(data: FitData, st: Settings, weights: list[np.ndarray], estimator: str | None = None) -> dict:
    """All statistics for B replicates; weights[i] is (B, S_i) seed multiplicities for P index i.

    The point estimate is the replicate whose weights are all 1. ``estimator`` defaults to the
    settings' primary one; it decides only what its definitions decide (``_Ours``, ``_Authors``).
    With B = 1 the regressions' inputs are kept (``designs``) for the OLS standard errors."""
    B = weights[0].shape[0] if weights else 1
    nP = len(data.P)
    est = _RULES[estimator or st.estimator](data, st, B)
    lo, hi = _log_window(st)
    in_g1 = st.in_gamma1(data.P)
    log_eps_opt = np.full((B, nP), np.nan)
    log_lam_opt = np.full((B, nP), np.nan)
    n_win = np.zeros((B, nP))
    rows = np.arange(B)
    for i in range(nP):
        C = weights[i].astype(float)
        Y, grid = data.curves[i], data.grids[i]
        if not Y.shape[1]:
            continue
        F = np.isfinite(Y)
        cnt = C @ F.astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_mean = np.log((C @ np.where(F, Y, 0.0)) / cnt)
        valid = est.usable(F.sum(0) >= st.min_seeds, log_mean)
        masked = np.where(valid, log_mean, np.inf)
        j = masked.argmin(1)
        has = np.isfinite(masked[rows, j])
        xv, yv = est.optimum(grid, masked, j)
        log_eps_opt[has, i] = yv[has]
        log_lam_opt[has, i] = xv[has]
        x = grid[None, :] - log_lam_opt[:, i:i + 1]
        y = log_mean - log_eps_opt[:, i:i + 1]
        # tolerance: a window edge on a grid point up to rounding is inside
        win = valid & has[:, None] & (x >= lo - 1e-9) & (x <= hi + 1e-9) & in_g1[i]
        n_win[:, i] = win.sum(1)
        if in_g1[i]:  # below gamma1_P_min a P adds nothing to γ₁
            est.add_window(i, x, y, win)
    g1, k1, log_k1, P_g1 = est.gamma1(n_win)
    logP = np.broadcast_to(np.log(data.P.astype(float))[None, :], (B, nP))
    target2 = est.gamma2_target(log_lam_opt, weights)
    w2 = st.in_range(data.P)[None, :] & np.isfinite(target2)
    slope2, icpt2 = ols_rows(logP, np.where(w2, target2, 0.0), w2)
    wm = est.meas_P()[None, :] & np.isfinite(log_eps_opt)
    slopem, icptm = ols_rows(logP, np.where(wm, log_eps_opt, 0.0), wm)
    g2, gm = slope2, -slopem
    gp = g1 * g2
    # the predicted line: slope fixed at -γ_pred, intercept by least squares = mean residual
    npts = wm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(wm, log_eps_opt + gp[:, None] * logP, 0.0).sum(1) / npts
    c = np.where((npts > 0) & np.isfinite(gp), c, np.nan)
    with np.errstate(over="ignore"):  # absurd intercepts (property tests) become inf -> null
        k2, km = np.exp(icpt2), np.exp(icptm)
    designs = None
    if B == 1:
        designs = {**est.gamma1_designs(log_lam_opt[0], log_eps_opt[0]),
                   "gamma2": (logP[0][w2[0]], target2[0][w2[0]]),
                   "gamma_meas": (logP[0][wm[0]], log_eps_opt[0][wm[0]])}
    return {"gamma1": g1, "gamma2": g2, "gamma_meas": gm, "gamma_pred": gp,
            "gamma_pred_minus_meas": gp - gm, "k1": k1, "k2": k2, "k_meas": km,
            "pred_log_intercept": c, "log_k1": log_k1, "log_k2": icpt2, "log_k_meas": icptm,
            "log_eps_opt": log_eps_opt, "log_lambda_opt": log_lam_opt,
            "mean_log_lambda_star": _mean_log_lambda_star(data, weights), "n_window": n_win,
            "n_window_total": n_win.sum(1), "P_gamma1": P_g1, "P_gamma2": w2, "P_meas": wm,
            "designs": designs}


class _Ours:
    """Our estimator (module docstring): mean-curve points need >= min_seeds seeds, optima refined
    by ``vertex``, γ₁ one regression pooled over P, γ₂ on λ_opt, γ_meas over the P range."""

    def __init__(self, data: FitData, st: Settings, B: int):
        self.data, self.st = data, st
        self.sums = np.zeros((B, 5))  # n, Σx, Σy, Σx², Σxy of the pooled γ₁ window

    def usable(self, enough_seeds: np.ndarray, log_mean: np.ndarray) -> np.ndarray:
        return enough_seeds[None, :] & np.isfinite(log_mean)  # the full-data mask (module docstring)

    def optimum(self, grid, masked, j):
        return vertex(grid, masked, j)

    def add_window(self, i, x, y, win) -> None:
        xw, yw = np.where(win, x, 0.0), np.where(win, y, 0.0)
        self.sums += np.stack([win.sum(1), xw.sum(1), yw.sum(1), (xw * xw).sum(1), (xw * yw).sum(1)],
                              axis=1)

    def gamma1(self, n_win):
        slope, icpt = ols_from_sums(*self.sums.T)
        with np.errstate(over="ignore"):
            return -slope, np.exp(icpt), icpt, n_win > 0

    def gamma2_target(self, log_lam_opt, weights):
        return log_lam_opt

    def meas_P(self) -> np.ndarray:
        return self.st.in_range(self.data.P)

    def gamma1_designs(self, log_lam_opt, log_eps_opt) -> dict:
        """The pooled γ₁ regression's points, from each P's full-data mean curve."""
        in_g1 = self.st.in_gamma1(self.data.P)
        parts = [_window_points(self.data, self.st, i, log_lam_opt[i], log_eps_opt[i])
                 for i in range(len(self.data.P)) if in_g1[i] and np.isfinite(log_lam_opt[i])]
        return {"gamma1": [np.concatenate([p[k] for p in parts]) if parts else np.zeros(0)
                           for k in (0, 1)]}


class _Authors:
    """The authors' estimator (their analysis notebook): nanmean curves, grid-argmin optima, γ₁ the
    mean of per-P slopes over P >= gamma1_P_min, γ₂ on the arithmetic mean of the seeds' λ*,
    γ_meas over all P (the P range is ignored)."""

    def __init__(self, data: FitData, st: Settings, B: int):
        self.data = data
        self.slopes = np.full((B, len(data.P)), np.nan)
        self.icpts = np.full((B, len(data.P)), np.nan)
        self.per_P = {"gamma1_per_P": [], "gamma1_P": []} if B == 1 else None

    def usable(self, enough_seeds: np.ndarray, log_mean: np.ndarray) -> np.ndarray:
        return np.isfinite(log_mean)  # nanmean over the seeds: no seed threshold

    def optimum(self, grid, masked, j):
        return grid[j], masked[np.arange(len(j)), j]

    def add_window(self, i, x, y, win) -> None:
        self.slopes[:, i], self.icpts[:, i] = ols_rows(x, np.where(win, y, 0.0), win)
        if self.per_P is not None and win[0].sum():
            self.per_P["gamma1_per_P"].append((x[0][win[0]], y[0][win[0]]))
            self.per_P["gamma1_P"].append(self.data.P[i])

    def gamma1(self, n_win):
        # numpy's 'Mean of empty slice' warning is expected where no P enters γ₁
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            g1 = -np.nanmean(np.where(np.isfinite(self.slopes), self.slopes, np.nan), axis=1)
            k1 = np.nanmean(np.exp(self.icpts), axis=1)
            return g1, k1, np.log(k1), np.isfinite(self.slopes)

    def gamma2_target(self, log_lam_opt, weights):
        return _mean_log_lambda_star(self.data, weights, geometric=False)

    def meas_P(self) -> np.ndarray:
        return np.ones(len(self.data.P), dtype=bool)

    def gamma1_designs(self, log_lam_opt, log_eps_opt) -> dict:
        return self.per_P


_RULES = dict(zip(ESTIMATORS, (_Ours, _Authors)))  # each estimator's own definitions


def _window_points(data: FitData, st: Settings, i: int, log_lam_opt: float,
                   log_eps_opt: float) -> tuple[np.ndarray, np.ndarray]:
    """(log λ/λ_opt, log ε̄/ε_opt) of P index i's full-data mean curve inside the γ₁ window."""
    Y, grid = data.curves[i], data.grids[i]
    F = np.isfinite(Y)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_mean = np.log(np.where(F, Y, 0.0).sum(0) / F.sum(0))
    lo, hi = _log_window(st)
    x, y = grid - log_lam_opt, log_mean - log_eps_opt
    win = (F.sum(0) >= st.min_seeds) & np.isfinite(y) & (x >= lo - 1e-9) & (x <= hi + 1e-9)
    return x[win], y[win]


def _mean_log_lambda_star(data: FitData, weights, geometric: bool = True) -> np.ndarray:
    """(B, nP) log of the mean over seeds of λ*_s: geometric (the mean of log λ*_s, reported per P
    as lambda_star_geomean) or arithmetic (the authors' γ₂ target)."""
    out = []
    for L, W in zip(data.log_lambda_star, weights):
        f = np.isfinite(L)
        C = W.astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            if geometric:
                out.append((C @ np.where(f, L, 0.0)) / (C @ f.astype(float)))
            else:
                out.append(np.log((C @ np.where(f, np.exp(np.where(f, L, 0.0)), 0.0))
                                  / (C @ f.astype(float))))
    return np.stack(out, axis=1) if out else np.zeros((1, 0))


def curve_minimum(lam: np.ndarray, err: np.ndarray) -> tuple[float, float]:
    """(λ, ε) at the minimum of one mean curve, refined as the fit refines it (``vertex`` in log-log
    around the grid minimum); NaNs when no point has a positive finite error. What a figure drawn
    without a fit marks (``figures.Panel.optimum``, which the audit reruns)."""
    lam, err = np.asarray(lam, float), np.asarray(err, float)
    ok = np.isfinite(err) & (err > 0)
    if not ok.any():
        return math.nan, math.nan
    logy = np.where(ok, np.log(np.where(ok, err, 1.0)), np.inf)[None, :]
    x, y = vertex(np.log(lam), logy, np.array([int(np.argmin(logy[0]))]))
    return float(np.exp(x[0])), float(np.exp(y[0]))


def vertex(grid: np.ndarray, values: np.ndarray, j: np.ndarray):
    """Sub-grid minimum: the vertex of the parabola through the discrete minimum j and its two
    neighbours (rows of ``values``; +inf = masked), kept within half a grid step of grid[j].
    Where a neighbour is masked or the three points are not convex, the grid point itself."""
    B, G = values.shape
    rows = np.arange(B)
    x1, y1 = grid[j], values[rows, j]
    if G < 3:
        return x1, y1
    jl, jr = np.clip(j - 1, 0, G - 1), np.clip(j + 1, 0, G - 1)
    x0, y0, x2, y2 = grid[jl], values[rows, jl], grid[jr], values[rows, jr]
    ok = (j > 0) & (j < G - 1) & np.isfinite(y0) & np.isfinite(y1) & np.isfinite(y2)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        d0, d2 = x1 - x0, x1 - x2
        num = d0 ** 2 * (y1 - y2) - d2 ** 2 * (y1 - y0)
        den = d0 * (y1 - y2) - d2 * (y1 - y0)
        # the parabola through the 3 points: curvature a > 0 means a minimum
        a = ((y0 - y1) / (x0 - x1) - (y2 - y1) / (x2 - x1)) / (x0 - x2)
        ok &= np.isfinite(a) & (a > 0) & (den != 0)
        xv = np.where(ok, x1 - 0.5 * num / np.where(den != 0, den, 1), x1)
        xv = np.clip(xv, (x0 + x1) / 2, (x1 + x2) / 2)
        slope1 = (y2 - y1) / (x2 - x1) - a * (x2 - x1)  # derivative of the parabola at x1
        yv = np.where(ok, y1 + slope1 * (xv - x1) + a * (xv - x1) ** 2, y1)
    return np.where(ok, xv, x1), np.where(ok, np.minimum(yv, y1), y1)


def _check_point(rep: dict, data: FitData, st: Settings) -> None:
    """Raise FitError naming the first reason the point estimate is undefined."""
    if len(data.P) == 0:
        raise FitError("no P values with data in the aggregate")
    if not np.isfinite(rep["log_eps_opt"][0]).any():
        raise FitError(f"no P has a mean curve point with >= min_seeds={st.min_seeds} seeds and a "
                       "positive test error")
    if rep["n_window_total"][0] < 2 or not np.isfinite(rep["gamma1"][0]):
        over = "all P" if st.gamma1_P_min is None else f"P >= {st.gamma1_P_min}"
        raise FitError(f"the γ₁ window x_left={st.x_left} <= λ/λ_opt <= x_right={st.x_right} holds "
                       f"{int(rep['n_window_total'][0])} mean-curve points over {over} "
                       "(need >= 2 at distinct λ/λ_opt)")
    rng = f"P range [{st.P_min}, {st.P_max}]"
    n2 = int(rep["P_gamma2"][0].sum())
    if n2 < 2 or not np.isfinite(rep["gamma2"][0]):
        raise FitError(f"γ₂ needs λ_opt for >= 2 P values in the {rng}; got {n2}")
    nm = int(rep["P_meas"][0].sum())
    if nm < 2 or not np.isfinite(rep["gamma_meas"][0]):
        raise FitError(f"γ_meas needs ε_opt for >= 2 P values in the {rng}; got {nm}")


def bootstrap_weights(data: FitData, n: int, seed: int) -> list[np.ndarray]:
    """(n, S_P) multiplicities per P: seeds resampled with replacement within each P."""
    rng = np.random.default_rng(seed)
    out = []
    for lam in data.log_lambda_star:
        S = len(lam)
        out.append(rng.multinomial(S, np.full(S, 1.0 / S), size=n) if S else np.zeros((n, 0)))
    return out


def per_P_rows(data: FitData, st: Settings, point: dict, boot: dict | None = None) -> list[dict]:
    """The per-P table of fit.json: optima of the mean curve (with bootstrap intervals if given)."""
    alpha = (1 - st.level) / 2
    rows = []
    for i, P in enumerate(data.P):
        ci = {}
        for key, name in (("log_eps_opt", "eps_opt"), ("log_lambda_opt", "lambda_opt")):
            b = boot[key][:, i] if boot is not None else np.zeros(0)
            b = b[np.isfinite(b)]
            ci[name] = ([float(q) for q in np.exp(np.quantile(b, [alpha, 1 - alpha]))]
                        if len(b) else None)
        rows.append({
            "P": int(P), "n_seeds": int(len(data.log_lambda_star[i])),
            "n_seeds_with_lambda_star": int(np.isfinite(data.log_lambda_star[i]).sum()),
            "eps_opt": number_or_none(np.exp(point["log_eps_opt"][0, i])), "eps_opt_ci": ci["eps_opt"],
            "lambda_opt": number_or_none(np.exp(point["log_lambda_opt"][0, i])),
            "lambda_opt_ci": ci["lambda_opt"],
            "lambda_star_geomean": number_or_none(np.exp(point["mean_log_lambda_star"][0, i])),
            "n_window_points": int(point["n_window"][0, i]),
            "in_P_range": bool(st.in_range(data.P[i:i + 1])[0]),
        })
    return rows


def describe(data: FitData, settings: dict | Settings) -> list[dict]:
    """Per-P optima without fitting or bootstrap (what an impossible fit can still report)."""
    st = settings_for_data(data, settings if isinstance(settings, Settings)
                           else Settings.from_dict(settings))
    if len(data.P) == 0:
        return []
    if st.auto:  # optima do not depend on the window; any concrete one will do here
        st = st.with_(x_left=0.0, x_right=1.0)
    return per_P_rows(data, st, _replicates(data, st, _unit_weights(data)))


def _unit_weights(data: FitData) -> list[np.ndarray]:
    return [np.ones((1, len(s))) for s in data.log_lambda_star]


def settings_for_data(data: FitData, st: Settings) -> Settings:
    """The settings a fit of data uses: published seed means have one curve per P, so no seed
    threshold and nothing to resample."""
    return st.with_(min_seeds=1, n_boot=0) if data.published else st


NO_BOOTSTRAP_PUBLISHED = ("published seed means: the files hold no per-seed curves, so there is "
                          "nothing to resample and the intervals are null")


def estimate(data: FitData, settings: dict | Settings) -> dict:
    """Point estimates, bootstrap intervals and per-P values; raises FitError if impossible.

    With estimator "both" the result is ours, and ``by_estimator`` holds each estimator's result
    (an impossible one as {"status": "impossible", "reason": ...})."""
    st = settings_for_data(data, settings if isinstance(settings, Settings)
                           else Settings.from_dict(settings))
    if len(data.P) == 0:
        raise FitError("no P values with data in the aggregate")
    if not st.also:
        return estimate_one(data, st, st.estimator)
    results: dict[str, dict | FitError] = {}
    for name in (st.estimator, *st.also):
        try:
            results[name] = estimate_one(data, st, name)
        except FitError as exc:
            results[name] = exc
    by = {name: _strip(r) if isinstance(r, dict) else {"status": "impossible", "reason": str(r)}
          for name, r in results.items()}
    out = results[st.estimator]
    if isinstance(out, FitError):
        out.by_estimator = by
        raise out
    out["by_estimator"] = by
    return out


def _strip(res: dict) -> dict:
    return {k: v for k, v in res.items() if k not in ("settings", "by_estimator")}


def estimate_one(data: FitData, st: Settings, estimator: str) -> dict:
    """One estimator's fit (``estimate`` without "both"), for callers that vary the settings
    themselves (sensitivity.py); st as ``settings_for_data`` made it. Raises FitError."""
    st_in = st
    data, censored = apply_censoring(data, st, estimator)
    st = resolve_window(data, st)
    point = _replicates(data, st, _unit_weights(data), estimator)
    _check_point(point, data, st)
    regressions = ols_regressions(point)
    se_ols = ols_standard_errors(regressions, point, estimator)
    boot = _replicates(data, st, bootstrap_weights(data, st.n_boot, st.seed), estimator) \
        if st.n_boot else None
    alpha = (1 - st.level) / 2
    estimates = {}
    for name in ESTIMATES:
        e = {"value": number_or_none(point[name][0]), "ci_low": None, "ci_high": None, "se": None,
             "n_valid": 0}
        if boot is not None:
            b = boot[name][np.isfinite(boot[name])]
            e["n_valid"] = int(len(b))
            if len(b):
                e["ci_low"], e["ci_high"] = (float(q) for q in np.quantile(b, [alpha, 1 - alpha]))
                with np.errstate(over="ignore", invalid="ignore"):
                    e["se"] = number_or_none(b.std(ddof=1)) if len(b) > 1 else 0.0
        if name in se_ols:
            e["se_ols"] = number_or_none(se_ols[name])
        estimates[name] = e
    per_P = per_P_rows(data, st, point, boot)
    P_used = {"gamma1": [int(P) for P, w in zip(data.P, point["P_gamma1"][0]) if w],
              "gamma2": [int(P) for P, w in zip(data.P, point["P_gamma2"][0]) if w],
              "gamma_meas": [int(P) for P, w in zip(data.P, point["P_meas"][0]) if w]}
    v = {k: estimates[k]["value"] for k in estimates}
    lo, hi = _log_window(st)
    lines = {
        "collapse": {"x": "log(lambda/lambda_opt)", "y": "log(eps/eps_opt)",
                     "slope": -v["gamma1"], "intercept": number_or_none(point["log_k1"][0]),
                     "x_range": [number_or_none(lo) if math.isfinite(lo) else _min_x(data, point), hi]},
        "lambda_opt": {"x": "log(P)", "y": "log(lambda_opt)", "slope": v["gamma2"],
                        "intercept": number_or_none(point["log_k2"][0])},
        "eps_opt": {"x": "log(P)", "y": "log(eps_opt)", "slope": -v["gamma_meas"],
                    "intercept": number_or_none(point["log_k_meas"][0])},
        "predicted": {"x": "log(P)", "y": "log(eps_opt)", "slope": -v["gamma_pred"],
                      "intercept": v["pred_log_intercept"]},
    }
    bootstrap = {"n": st.n_boot, "seed": st.seed, "level": st.level,
                 "method": "percentile; seeds resampled with replacement within each P",
                 "n_failed": {k: st.n_boot - estimates[k]["n_valid"] for k in ESTIMATES}
                 if st.n_boot else {}}
    if data.published:
        bootstrap["skipped"] = NO_BOOTSTRAP_PUBLISHED
    settings = st_in.as_dict()
    if st_in.auto:
        settings["window_resolved"] = {"x_left": st.x_left, "x_right": st.x_right,
                                       "rule": "auto", "tolerance": AUTO_TOLERANCE}
    return {"status": "ok", "reason": None, "estimator": estimator, "settings": settings,
            "censored": censored, "P_used": P_used, "estimates": estimates, "per_P": per_P, "lines": lines,
            "regressions": regressions, "bootstrap": bootstrap}


def _impossible_data(data: FitData, st: Settings) -> tuple[FitData, dict]:
    """What an impossible fit describes: the seeds censoring leaves and its ``censored`` block,
    like a fit that ran; when exclusion leaves no P (perhaps why it is impossible), every seed,
    each P listed as dropped, so that no reader takes its optima for uncensored ones."""
    try:
        return apply_censoring(data, st, st.estimator)
    except FitError as exc:
        return data, exc.censored


def _min_x(data: FitData, point: dict) -> float | None:
    """The smallest log λ/λ_opt any mean curve reaches (the left end of an unbounded window)."""
    xs = [data.grids[i][0] - point["log_lambda_opt"][0, i] for i in range(len(data.P))
          if len(data.grids[i]) and np.isfinite(point["log_lambda_opt"][0, i])]
    return number_or_none(min(xs)) if xs else None


def run(curves_path, optima_path, settings: dict, out) -> dict:
    """Fit one aggregate and write fit.json (status "impossible" + reason on FitError)."""
    data, cmeta = load_fit_data(curves_path, optima_path)
    st = settings_for_data(data, Settings.from_dict(settings))
    try:
        result = estimate(data, st)
    except FitError as exc:
        described, censored = _impossible_data(data, st)
        result = {"status": "impossible", "reason": str(exc), "settings": st.as_dict(),
                  "censored": censored,
                  "estimates": None, "per_P": describe(described, st), "lines": None, "P_used": None,
                  "bootstrap": {"n": st.n_boot, "seed": st.seed, "level": st.level}}
        if exc.by_estimator:
            result["by_estimator"] = exc.by_estimator
        if st.auto:  # the rule found no window: say so where a resolved one would be
            result["settings"]["window_resolved"] = None
    result["schema"] = FIT_SCHEMA
    result["group"] = cmeta.get("group", {})
    result.update(provenance.record("fit", result["group"].get("experiment")))
    if cmeta.get("published"):  # the source file and the values its authors stored
        result["published"] = cmeta["published"]
    result["aggregate_schema"] = cmeta.get("schema", SCHEMA)
    result["provenance"] = provenance.provenance(config=settings, inputs=[curves_path, optima_path],
                                                 stage="fit")
    io.write_json(result, out)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.fit",
                                 description="Fit γ₁, γ₂, γ_meas (and γ_pred = γ₁γ₂) with bootstrap "
                                             "intervals from one aggregate (curves + optima).")
    ap.add_argument("--curves", required=True, help="aggregate curves Parquet")
    ap.add_argument("--optima", required=True, help="aggregate optima Parquet")
    ap.add_argument("--settings", required=True,
                    help="the analysis section as JSON (or @file.json / @file.yaml)")
    ap.add_argument("--out", required=True, help="fit.json to write")
    args = ap.parse_args(argv)
    res = run(args.curves, args.optima, parse_settings(args.settings), args.out)
    if res["status"] != "ok":
        print(f"fit impossible: {res['reason']}", file=sys.stderr)
    else:
        e = res["estimates"]

        def bound(v):  # an interval end, rounded; None where there is no interval
            return v if v is None else round(v, 3)

        print("  ".join(f"{k}={e[k]['value']:.3f} [{bound(e[k]['ci_low'])}, {bound(e[k]['ci_high'])}]"
                        for k in ("gamma1", "gamma2", "gamma_pred", "gamma_meas")), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
