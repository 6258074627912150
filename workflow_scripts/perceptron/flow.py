"""The hybrid integrator: K₀ exact GD steps, then the gradient flow of the same loss with BDF.

Why: ε(λ) is a property of GD's path, not of its speed, and λ = ‖w‖/√N grows only like t^(1/3),
so fixed-step GD needs 10⁵–10⁶ steps to pass λ_opt at α ≥ 20. After the first steps GD with the
1/L step follows the flow dw/dt = −∇L (t = steps × η) to within its discretisation error, which
is first order in η times the curvature and decays as the logistic loss flattens; an implicit
integrator takes steps as long as the path allows. The first steps are GD's own (the flow from
w = 0 differs from GD by 14–24% in ε at λ ≈ 0.5, a finite-step effect), hence K₀.

The flow's Jacobian is the loss Hessian with its sign, −(1/α) Aᵀ diag(ℓ''(Aw)) A (L = (1/α) Σ ℓ,
losses.py), summed over the rows with ℓ'' ≥ ``HESSIAN_ROW_FLOOR`` only (at large λ most examples
have Δ ≫ 1 and ℓ'' ~ e^(−2Δ)). Every logged GD step k is read at t = kη from the solver's dense
output, so the trajectory's step column is the equivalent GD step and the logging grid is GD's.
"""
from __future__ import annotations

import bisect
import math
import time

import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp

from .losses import learning_rate, log_steps, loss_neg_derivative, loss_second_derivative
from .settings import n_examples
from .simulation import ROW_COLUMNS, checked_run_arguments, gd_stack, log_row, signed_inputs

HESSIAN_ROW_FLOOR = 1e-13  # rows with ℓ'' below this add nothing a relative 1e-6 solve can see
HESSIAN_CHUNK_ROWS = 4096  # rows per block of AᵀDA: bounded memory at P = 5·10⁴, N = 1000
FLOW_DEFAULTS = {"k0": 100, "rtol": 1e-6, "atol": 1e-9, "lambda_stop_over_alpha": None}


def flow_settings(flow: dict | None) -> dict:
    """The flow settings with defaults; ValueError naming the key for a bad value."""
    unknown = set(flow or {}) - set(FLOW_DEFAULTS)
    if unknown:
        raise ValueError(f"perceptron.flow: unknown keys {sorted(unknown)}")
    s = {**FLOW_DEFAULTS, **(flow or {})}
    if int(s["k0"]) != s["k0"] or s["k0"] < 0:
        raise ValueError(f"perceptron.flow.k0 must be an integer >= 0, got {s['k0']}")
    for key in ("rtol", "atol"):
        if not s[key] > 0:
            raise ValueError(f"perceptron.flow.{key} must be > 0, got {s[key]}")
    stop = s["lambda_stop_over_alpha"]
    if stop is not None and not stop > 0:
        raise ValueError(f"perceptron.flow.lambda_stop_over_alpha must be > 0 or null, got {stop}")
    return {"k0": int(s["k0"]), "rtol": float(s["rtol"]), "atol": float(s["atol"]),
            "lambda_stop_over_alpha": None if stop is None else float(stop)}


def simulate_flow(N: int, alpha: float, seeds, steps: int, *, flow: dict | None = None,
                  loss: str = "logistic", inputs: str = "gaussian", lr_scale: float = 1.0,
                  n_log: int = 100) -> dict:
    """GD for min(K₀, steps) steps, then BDF on the flow up to equivalent step ``steps`` or, when
    flow.lambda_stop_over_alpha is set, until λ reaches that times α (a terminal event).

    Returns {seed: (DataFrame of logged rows, info dict)} like ``simulate``; the rows are those
    of GD's logging grid (``log_steps(steps, n_log)``) up to the end, plus the last whole
    equivalent step before a terminal event. Raises RuntimeError with the solver's message if
    BDF fails (never a silently truncated curve)."""
    seeds = checked_run_arguments(loss, inputs, seeds)
    fs = flow_settings(flow)
    P = n_examples(N, alpha)
    lr = learning_rate(alpha, lr_scale)
    at = log_steps(steps, n_log)
    k0 = min(fs["k0"], steps)
    lam_stop = None if fs["lambda_stop_over_alpha"] is None else fs["lambda_stop_over_alpha"] * alpha
    out = {}
    for seed in seeds:  # one seed at a time: each has its own adaptive steps
        t_start = time.perf_counter()
        if k0 > 0:
            (gd_rows, gd_info), = gd_stack(N, P, alpha, [seed], k0, loss, inputs, lr,
                                            at[at <= k0]).values()
            if gd_info["status"] != "completed":
                raise RuntimeError(f"GD diverged at step {gd_info['diverged_step']} of the first "
                                   f"k0 = {k0} (N={N}, alpha={alpha}, seed={seed})")
            w0 = gd_info["w"]
        else:
            gd_rows, w0 = pd.DataFrame(columns=list(ROW_COLUMNS)), np.zeros(N)
        A, T = signed_inputs(N, P, seed, inputs)
        tnorm = float(np.linalg.norm(T))
        counts = {"gradients": 0, "hessians": 0}
        clock = {"t": [], "wall": []}  # first time the solver reached each t (wall_time column)

        def grad_flow(t, w):
            counts["gradients"] += 1
            if not clock["t"] or t > clock["t"][-1]:
                clock["t"].append(t)
                clock["wall"].append(time.perf_counter() - t_start)
            return (A.T @ loss_neg_derivative(loss, A @ w)) / alpha     # −∇L

        def hessian_flow(t, w):
            counts["hessians"] += 1
            h = loss_second_derivative(loss, A @ w)
            J = np.zeros((N, N))
            for i in range(0, P, HESSIAN_CHUNK_ROWS):
                hc = h[i:i + HESSIAN_CHUNK_ROWS]
                keep = hc >= HESSIAN_ROW_FLOOR
                if keep.any():
                    Ak = A[i:i + HESSIAN_CHUNK_ROWS][keep]
                    J -= Ak.T @ (Ak * hc[keep, None])
            return J / alpha                                             # −∇²L

        events = None
        if lam_stop is not None:
            def reached_stop(t, w):
                return np.linalg.norm(w) / math.sqrt(N) - lam_stop
            reached_stop.terminal, reached_stop.direction = True, 1
            events = [reached_stop]
        t0, t1 = k0 * lr, steps * lr
        rows = list(gd_rows.itertuples(index=False, name=None))
        info = {"status": "completed", "diverged_step": None, "lr": lr, "P": P,
                "stacked_seeds": [seed], "dtype": "float64"}
        stopped, t_end, n_flow_steps, message = "steps", t0, 0, "no flow (k0 >= steps)"
        if lam_stop is not None and np.linalg.norm(w0) / math.sqrt(N) >= lam_stop:
            stopped, message = "lambda_stop", "lambda_stop reached within the first k0 GD steps"
        elif t1 > t0:
            sol = solve_ivp(grad_flow, (t0, t1), w0, method="BDF", rtol=fs["rtol"],
                            atol=fs["atol"], jac=hessian_flow, events=events, dense_output=True)
            if sol.status < 0:
                raise RuntimeError(f"BDF failed (N={N}, alpha={alpha}, seed={seed}) at t = "
                                   f"{sol.t[-1]:.6g} (equivalent GD step {sol.t[-1] / lr:.1f}): "
                                   f"{sol.message}")
            t_end, n_flow_steps, message = float(sol.t[-1]), len(sol.t) - 1, sol.message
            stopped = "lambda_stop" if sol.status == 1 else "steps"
            ks = [int(k) for k in at if k > k0 and k * lr <= t_end * (1 + 1e-12)]
            last = int(math.floor(t_end / lr * (1 + 1e-12)))
            if stopped == "lambda_stop" and last > max([k0, *ks]):
                ks.append(last)
            if ks:
                W = sol.sol(np.array(ks, dtype=float) * lr)
                for j, k in enumerate(ks):
                    w = W[:, j]
                    i = min(bisect.bisect_left(clock["t"], k * lr), len(clock["t"]) - 1)
                    rows.append(log_row(k, clock["wall"][i], w, T, tnorm, A @ w, N, loss))
        df = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
        df["step"] = df["step"].astype("int64")
        info["integrator"] = {
            "name": "gd_then_flow", **fs, "method": "scipy.integrate.solve_ivp BDF",
            "lambda_stop": lam_stop, "stopped": stopped, "message": message,
            "t_end": t_end, "equivalent_steps": t_end / lr, "flow_steps": n_flow_steps,
            "gd_steps": k0, "gradients": k0 + counts["gradients"], "hessians": counts["hessians"],
            "hessian_row_floor": HESSIAN_ROW_FLOOR}
        out[seed] = (df, info)
    return out
