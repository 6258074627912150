"""Least squares for the fit: row-wise OLS vectorised over bootstrap replicates (``ols_rows``,
``ols_from_sums``), and the point estimate's regressions summarised with statsmodels (slope,
intercept, standard error, R²) with the exponents' standard errors that follow from them.
"""
from __future__ import annotations

import math

import numpy as np


def ols_rows(x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Row-wise weighted least squares y = a + b x over the last axis (w = 0/1 masks).

    Returns slope b, intercept a (NaN where fewer than 2 points or no spread in x)."""
    x = np.where(w, x, 0.0)
    y = np.where(w, y, 0.0)
    n = w.sum(-1)
    sx, sy = x.sum(-1), y.sum(-1)
    sxx, sxy = (x * x).sum(-1), (x * y).sum(-1)
    return ols_from_sums(n, sx, sy, sxx, sxy)


def ols_from_sums(n, sx, sy, sxx, sxy):
    with np.errstate(divide="ignore", invalid="ignore"):
        den = n * sxx - sx * sx
        ok = (n >= 2) & (den > 1e-12 * np.maximum(n * sxx, 1e-300))
        b = np.where(ok, (n * sxy - sx * sy) / np.where(ok, den, 1), np.nan)
        a = np.where(ok, (sy - b * sx) / np.where(n > 0, n, 1), np.nan)
    return b, a


def ols_summary(x, y) -> dict:
    """One regression's statsmodels OLS summary: n, slope, intercept, the slope's standard error
    and R² (None where the design cannot give them: fewer than 2 distinct x, or for the error
    n − 2 = 0 residual degrees of freedom)."""
    import statsmodels.api as sm

    x, y = np.asarray(x, float), np.asarray(y, float)
    out = {"n": int(len(x)), "slope": None, "intercept": None, "se": None, "r2": None}
    if len(x) < 2 or np.ptp(x) == 0:
        return out
    res = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()
    out.update(slope=number_or_none(res.params[1]), intercept=number_or_none(res.params[0]))
    if len(x) >= 3:
        with np.errstate(divide="ignore", invalid="ignore"):
            out.update(se=number_or_none(res.bse[1]), r2=number_or_none(res.rsquared))
    return out


def ols_regressions(point: dict) -> dict:
    """The point estimate's regressions, each as an ``ols_summary`` (fit.json ``regressions``):
    gamma1 (ours: the pooled fit) or gamma1_per_P (authors: one per P, with its P), gamma2 and
    gamma_meas. Slopes are in the fit's own variables (log ε/ε_opt on log λ/λ_opt, log λ_opt and
    log ε_opt on log P), so γ₁ and γ_meas are minus theirs."""
    d = point["designs"] or {}
    out = {k: ols_summary(*d[k]) for k in ("gamma1", "gamma2", "gamma_meas") if k in d}
    if "gamma1_per_P" in d:
        out["gamma1_per_P"] = [{"P": int(P), **ols_summary(x, y)}
                               for P, (x, y) in zip(d.get("gamma1_P", []), d["gamma1_per_P"])]
    return out


def ols_standard_errors(regressions: dict, point: dict, estimator: str) -> dict:
    """Regression standard errors of the exponents from ``ols_regressions``.

    ours: the pooled γ₁ regression, γ₂, γ_meas. authors: γ₁'s error is sqrt(mean of the per-P slope
    variances) as in their notebook; γ₂ and γ_meas as ours. γ_pred by first-order propagation,
    sqrt((γ₂σ₁)² + (γ₁σ₂)²); γ_pred − γ_meas adds σ_meas in quadrature (treated as independent)."""
    def se(key):
        v = (regressions.get(key) or {}).get("se")
        return math.nan if v is None else v

    if estimator == "authors":
        var = [r["se"] ** 2 for r in regressions.get("gamma1_per_P", []) if r["se"] is not None]
        s1 = math.sqrt(sum(var) / len(var)) if var else math.nan
    else:
        s1 = se("gamma1")
    s2, sm_ = se("gamma2"), se("gamma_meas")
    g1, g2 = float(point["gamma1"][0]), float(point["gamma2"][0])
    sp = math.hypot(g2 * s1, g1 * s2)
    return {"gamma1": s1, "gamma2": s2, "gamma_meas": sm_, "gamma_pred": sp,
            "gamma_pred_minus_meas": math.hypot(sp, sm_)}


def number_or_none(a) -> float | None:
    """a as a float, None where it is not finite (JSON has no NaN)."""
    a = float(a)
    return a if math.isfinite(a) else None
