"""Theory: Hebb, Gibbs, Bayes-optimal and maximal-stability errors, the replica fixed-norm curve
and its α → ∞ limit (equations in the package docstring)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import integrate, optimize, special

from .losses import (
    REFINE_FRACTION,
    _field_density,
    _field_weights,
    _omega_grid,
    error_from_overlap,
    omega_grid_for,
)
from .settings import ASYMPTOTES


# ----------------------------------------------------------------------------------------------
# theory
# ----------------------------------------------------------------------------------------------
def hebb_overlap(alpha):
    alpha = np.asarray(alpha, dtype=float)
    return np.sqrt(2 * alpha / (2 * alpha + np.pi))


def hebb_error(alpha):
    """ε of the Hebb rule at finite α (Gaussian inputs, N → ∞); → 1/√(2πα)."""
    return error_from_overlap(hebb_overlap(alpha))


def _gibbs_integral(R: float) -> float:
    """∫ Dt e^(−Rt²/2)/H(−√R t), with H(−√R t) = Φ(√R t) taken in logs for stability."""
    def f(t):
        return math.exp(-(1 + R) * t * t / 2 - special.log_ndtr(math.sqrt(R) * t)) / math.sqrt(2 * math.pi)

    val, _ = integrate.quad(f, -np.inf, np.inf, limit=200, epsabs=1e-13, epsrel=1e-12)
    return val


def gibbs_overlap(alpha: float) -> float:
    """R of Gibbs learning (= q of the Bayes posterior): R/√(1−R) = (α/π) ∫Dt e^(−Rt²/2)/H(−√R t)."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    return optimize.brentq(lambda R: R / math.sqrt(1 - R) - alpha / math.pi * _gibbs_integral(R),
                           1e-14, 1 - 1e-14, xtol=1e-15, rtol=1e-14)


def gibbs_error(alpha: float) -> float:
    return float(error_from_overlap(gibbs_overlap(alpha)))


def bayes_error(alpha: float) -> float:
    """Bayes-optimal generalisation error, arccos(√R_Gibbs)/π (Opper & Haussler 1991)."""
    return float(error_from_overlap(math.sqrt(gibbs_overlap(alpha))))


_GL128 = np.polynomial.legendre.leggauss(128)


def _max_stability_equations(R, kappa, alpha):
    x, wq = _GL128
    lo = min(kappa, 0.0) - 12.0
    om = lo + (x + 1) / 2 * (kappa - lo)               # ψ = (κ − ω)₊ is smooth on (−∞, κ]
    wq = wq * (kappa - lo) / 2
    p, m, s = _field_weights(R, om)
    psi = kappa - om
    e1 = alpha * np.sum(wq * p * psi ** 2) - (1 - R * R)
    e2 = alpha / s ** 2 * np.sum(wq * psi * (m - R * om * p)) - R
    return e1, e2


def max_stability(alpha: float) -> dict:
    """The maximally stable perceptron: (R, κ_max, ε) from the hard-margin replica equations."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")

    def kappa_of(R):  # (∂x): α E(κ − ω)₊² = 1 − R², increasing in κ
        return optimize.brentq(lambda k: _max_stability_equations(R, k, alpha)[0], -10.0, 10.0,
                               xtol=1e-14)

    def resid(r):
        R = special.expit(r)
        return _max_stability_equations(R, kappa_of(R), alpha)[1] / R

    r = optimize.brentq(resid, -8.0, 20.0, xtol=1e-13)
    R = float(special.expit(r))
    return {"alpha": float(alpha), "overlap": R, "kappa": kappa_of(R),
            "test_error": float(error_from_overlap(R))}


def _prox_shift(omega, x, lam, tol=1e-13, maxit=400):
    """ψ(ω) = Δ* − ω for V(Δ) = log(1 + e^(−2λΔ)): the root of ψ = 2λx σ(−2λ(ω + ψ)) in [0, 2λx].

    Safeguarded Newton (bisection when a step leaves the bracket or is slow)."""
    c = 2 * lam * x
    lo = np.zeros_like(omega)
    hi = np.full_like(omega, c)
    psi = 0.5 * (lo + hi)
    dxold = hi - lo
    dx = dxold.copy()
    for _ in range(maxit):
        sg = special.expit(-2 * lam * (omega + psi))
        h = psi - c * sg
        dh = 1 + 2 * lam * c * sg * (1 - sg)
        lo = np.where(h < 0, psi, lo)
        hi = np.where(h >= 0, psi, hi)
        step = h / dh
        new = psi - step
        bad = (new <= lo) | (new >= hi) | (np.abs(2 * step) > np.abs(dxold))
        dxold = dx
        new = np.where(bad, 0.5 * (lo + hi), new)
        dx = np.abs(new - psi)
        psi = new
        if np.max(dx) < tol:
            break
    return psi


def _replica_residual(v, lam, alpha):
    # 1 − R² from expit(−v₀) keeps its digits as R → 1 (α → ∞); the clips keep a wild trial
    # step of the root finder finite
    v0, v1 = float(np.clip(v[0], -700, 700)), float(np.clip(v[1], -700, 700))
    R, x = special.expit(v0), math.exp(v1)
    s2 = max(special.expit(-v0) * (1 + R), 1e-300)
    om, wq = omega_grid_for(R, lam)
    p, k, s = _field_density(R, om)
    psi = _prox_shift(om, x, lam)
    e1 = alpha * np.sum(wq * p * psi ** 2) - s2
    e2 = alpha / s2 * np.sum(wq * psi * k) - R
    return [e1 / s2, e2 / R]


def replica_fixed_norm(alpha: float, lambdas, tol: float = 1e-9) -> pd.DataFrame:
    """The replica prediction of the fixed-norm curve: (λ, R, x, ε) for each λ (sorted up).

    Continuation from the Hebb solution R² = 2α/(2α+π), x = √(1−R²)/(λ√α) at the smallest λ;
    each λ starts from the extrapolation of the previous two solutions, then from the previous
    one, then with Levenberg–Marquardt. ``converged`` is max |residual| < tol."""
    lambdas = np.sort(np.asarray(lambdas, dtype=float))
    if np.any(lambdas <= 0):
        raise ValueError("λ values must be > 0")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    R0 = float(hebb_overlap(alpha))
    sols = []  # (log λ, v) of converged points
    rows = []
    for lam in lambdas:
        guesses = []
        if len(sols) >= 2:
            (l1, v1), (l2, v2) = sols[-2], sols[-1]
            guesses.append(v2 + (v2 - v1) * (math.log(lam) - l2) / (l2 - l1))
        if sols:
            guesses.append(sols[-1][1])
        guesses.append(np.array([special.logit(R0), math.log(math.sqrt(1 - R0 ** 2) / (lam * math.sqrt(alpha)))]))
        best = None
        for method in ("hybr", "lm"):
            for g in guesses:
                sol = optimize.root(_replica_residual, g, args=(lam, alpha), method=method,
                                    options={"xtol": 1e-12})
                res = float(np.max(np.abs(_replica_residual(sol.x, lam, alpha))))
                if best is None or res < best[1]:
                    best = (sol.x, res)
                if res < tol:
                    break
            if best[1] < tol:
                break
        v, res = best
        if res < tol:
            sols.append((math.log(lam), v))
        R = float(special.expit(v[0]))
        rows.append({"alpha": float(alpha), "lambda": float(lam), "overlap": R,
                     "x": math.exp(v[1]), "test_error": float(error_from_overlap(R)),
                     "residual": res, "converged": bool(res < tol)})
    return pd.DataFrame(rows)


# the α → ∞ limit of ε/ε_Hebb at fixed λ (module docstring, "The α → ∞ limit curve")
LIMIT_C = 2 ** 0.75 * math.pi ** -0.25 * math.sqrt(math.log(2) - 0.5)  # f(λ) ≈ c λ^(−½), λ → ∞


def limit_moments(lam: float) -> tuple[float, float]:
    """(A, B) = (E V''(|u|) − E[|u| V'(|u|)], E V'(|u|)²) for V(Δ) = log(1 + e^(−2λΔ)), u ~ N(0, 1).

    The integrands vary on the scale 1/λ at u = 0: the grid of ``_omega_grid`` refined to 1/(100λ),
    its nodes on u > 0 (the panels are split at 0), with the half-normal density 2φ(u)."""
    om, w = _omega_grid(refine=REFINE_FRACTION / lam)
    u, w = om[om > 0], w[om > 0]
    dens = 2 * np.exp(-u * u / 2) / math.sqrt(2 * math.pi)
    sm = special.expit(-2 * lam * u)                  # σ(−2λu); V' = −2λσ(−2λu)
    v2 = 4 * lam * lam * sm * (1 - sm)                # V'' = 4λ² σ(2λu) σ(−2λu)
    A = float(np.sum(w * dens * (v2 + 2 * lam * u * sm)))
    B = float(np.sum(w * dens * 4 * lam * lam * sm * sm))
    return A, B


def limit_curve(lambdas) -> np.ndarray:
    """f(λ) = lim_{α→∞} ε(α, λ)/ε_Hebb(α) = √(2/π) √B / A (module docstring); f(0+) = 1."""
    lambdas = np.asarray(lambdas, dtype=float)
    if np.any(lambdas <= 0):
        raise ValueError("λ values must be > 0")
    out = np.empty(lambdas.shape)
    for i, lam in np.ndenumerate(lambdas):
        A, B = limit_moments(float(lam))
        out[i] = math.sqrt(2 / math.pi) * math.sqrt(B) / A
    return out


def reference_curves(alphas) -> pd.DataFrame:
    """Hebb, Gibbs, Bayes and maximal-stability errors and their asymptotes on an α grid."""
    rows = []
    for a in np.asarray(alphas, dtype=float):
        row = {"alpha": a, "hebb": float(hebb_error(a)), "gibbs": gibbs_error(a),
               "bayes": bayes_error(a), "max_stability": max_stability(a)["test_error"]}
        for name, c in ASYMPTOTES.items():
            row[f"{name}_asymptote"] = c["coefficient"] / a ** c["power"]
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
def replica_exponents(replica: pd.DataFrame, window: dict) -> dict:
    """γ₁, γ₂, γ_meas that the N → ∞ fixed-norm curves predict for the given window (pooled OLS of
    log(ε/ε_opt) on log(λ/λ_opt) over x_left ≤ λ/λ_opt ≤ x_right, as fit.py does on the mean
    curves; γ₂, γ_meas: OLS of log λ_opt, log ε_opt on log α). The λ grid limits the resolution."""
    lo, hi = math.log(window["x_left"]), math.log(window["x_right"])
    X, Y, A, Lopt, Eopt = [], [], [], [], []
    for a, sub in replica[replica["converged"]].groupby("alpha"):
        sub = sub.sort_values("lambda")
        lam, eps = sub["lambda"].to_numpy(), sub["test_error"].to_numpy()
        i = int(np.argmin(eps))
        if i == 0 or i == len(eps) - 1:
            continue  # the minimum is not inside the λ grid
        x = np.log(lam / lam[i])
        m = (x >= lo) & (x <= hi)
        X += list(x[m])
        Y += list(np.log(eps[m] / eps[i]))
        A.append(a)
        Lopt.append(lam[i])
        Eopt.append(eps[i])
    out = {"window": window, "alphas": [float(a) for a in A], "gamma1": None, "gamma2": None,
           "gamma_meas": None}
    if len(set(X)) >= 2:
        out["gamma1"] = float(-np.polyfit(X, Y, 1)[0])
    if len(A) >= 2:
        out["gamma2"] = float(np.polyfit(np.log(A), np.log(Lopt), 1)[0])
        out["gamma_meas"] = float(-np.polyfit(np.log(A), np.log(Eopt), 1)[0])
    return out
