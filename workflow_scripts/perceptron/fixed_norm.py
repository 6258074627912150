"""The fixed-norm curve: the minimiser of the sharpness-λ loss on ‖w‖ = √N, certified by KKT."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize, special

from .losses import error_from_overlap
from .settings import n_examples
from .simulation import signed_inputs


# ----------------------------------------------------------------------------------------------
# fixed-norm curve
# ----------------------------------------------------------------------------------------------
def lambda_grid(spec: dict) -> np.ndarray:
    """Log-spaced λ grid from {min, max, num}."""
    lo, hi, num = float(spec["min"]), float(spec["max"]), int(spec["num"])
    if not 0 < lo < hi or num < 2:
        raise ValueError(f"lambda grid needs 0 < min < max and num >= 2, got {spec}")
    return np.geomspace(lo, hi, num)


def fixed_norm_curve(N: int, alpha: float, seed: int, lambdas, *, inputs: str = "gaussian",
                     max_iter: int = 5000, gtol: float = 1e-8, grad_rtol: float = 1e-4) -> pd.DataFrame:
    """Minimiser of the sharpness-λ logistic loss on ‖w‖ = √N for each λ (increasing), one sample.

    ``converged``: the tangential gradient is below grad_rtol of the gradient and the KKT
    multiplier is positive (L-BFGS's own flag, ``lbfgs_success``, can be false at large λ where the
    loss is exponentially flat although the point is stationary to 1e-6)."""
    lambdas = np.sort(np.asarray(lambdas, dtype=float))
    if np.any(lambdas <= 0):
        raise ValueError("fixed-norm λ values must be > 0")
    P = n_examples(N, alpha)
    A, T = signed_inputs(N, P, seed, inputs)
    sqN = math.sqrt(N)
    u = A.sum(axis=0)                                  # Hebb direction: the λ → 0 minimiser
    u *= sqN / np.linalg.norm(u)
    rows = []
    for lam in lambdas:
        def f_and_grad(v, lam=lam):
            nv = np.linalg.norm(v)
            w = sqN * v / nv
            D = A @ w
            f = np.mean(np.logaddexp(0.0, -2 * lam * D))
            gw = A.T @ (-2 * lam * special.expit(-2 * lam * D)) / P
            gv = (sqN / nv) * (gw - (gw @ v) / nv ** 2 * v)   # tangential part, chain rule
            return f / scale, gv / scale

        scale = float(np.mean(np.logaddexp(0.0, -2 * lam * (A @ u))))  # O(1) objective for L-BFGS
        res = optimize.minimize(f_and_grad, u, jac=True, method="L-BFGS-B",
                                options={"maxiter": max_iter, "gtol": gtol, "ftol": 1e-15,
                                         "maxcor": 20})
        u = res.x * sqN / np.linalg.norm(res.x)
        D = A @ u
        gw = A.T @ (-2 * lam * special.expit(-2 * lam * D)) / P
        mu = -float(gw @ u) / N                        # KKT multiplier: ≥ 0 on the ball's boundary
        tangential = gw + mu * u
        R = float(u @ T) / (sqN * np.linalg.norm(T))
        grad_rel = float(np.linalg.norm(tangential) / np.linalg.norm(gw))
        rows.append({"alpha": float(alpha), "N": int(N), "P": P, "seed": int(seed),
                     "lambda": float(lam), "overlap": R, "test_error": float(error_from_overlap(R)),
                     "train_error": float(np.mean(D <= 0)),
                     "train_loss": float(np.mean(np.logaddexp(0.0, -2 * lam * D))),
                     "kkt_multiplier": mu,
                     "grad_tangential_rel": grad_rel, "n_iter": int(res.nit),
                     "lbfgs_success": bool(res.success),
                     "converged": bool(grad_rel < grad_rtol and mu > 0)})
    return pd.DataFrame(rows)
