"""Synthetic learning curves with known exponents, for tests and benches only (no rule runs this).

The validation study of ``fit.py`` (its docstring), the tests and bench/bench_bootstrap.py draw
curves here: ``simulate_seeds`` yields raw (λ, test error) runs, ``simulate_trajectories`` wraps
them as trajectory files would hold them, ``simulate_fit_data`` takes them through the aggregation
code straight into a ``fit_data.FitData``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import provenance
from .aggregate import interpolate_seeds, reduce_arrays
from .fit_data import FitData


def synthetic_shape(x: np.ndarray, gamma1: float, x_c: float = 0.85, rise: float = 0.3) -> np.ndarray:
    """ε/ε_opt against x = λ/λ_opt: exactly k₁ x^(−γ₁) for x <= x_c, a smooth (C¹) quadratic
    minimum (in log-log) equal to 1 at x = 1, then a rise of log-slope rise·γ₁ (overfitting).

    k₁ = exp(−b log²x_c) with b = γ₁ / (2 |log x_c|)."""
    u = np.log(np.asarray(x, dtype=float))
    uc = math.log(x_c)
    b = gamma1 / (2 * abs(uc))
    s_r = rise * gamma1
    u1 = s_r / (2 * b)
    h = np.where(u <= uc, -gamma1 * u - b * uc ** 2,
                 np.where(u <= 0, -gamma1 * u + b * (u - uc) ** 2 - b * uc ** 2,
                          np.where(u <= u1, b * u ** 2, b * u1 ** 2 + s_r * (u - u1))))
    return np.exp(h)


def simulate_seeds(rng: np.random.Generator, Ps, n_seeds: int, gamma1: float, gamma2: float,
                   eps0: float = 0.2, lam0: float = 2.0, sigma_lambda: float = 0.05,
                   sigma_eps: float = 0.05, noise: float = 0.03, n_eval: int = 40,
                   x_range=(0.03, 5.0), nonmonotone: bool = False, n_test: int | None = None):
    """Synthetic learning curves with known exponents: yields (P, seed, steps, λ, test error).

    λ_opt(P) = lam0·P^γ₂ and ε_opt(P) = eps0·(P/P₀)^(−γ₁γ₂) (P₀ the smallest P), so γ_meas = γ₁γ₂;
    each seed's λ_opt and ε_opt get log-normal jitter (sigma_lambda, sigma_eps), its curve follows
    ``synthetic_shape`` along n_eval log-spaced λ values in x_range·λ_opt (offset at random), and
    each evaluation gets multiplicative noise (noise) and, with n_test, the binomial noise of a
    test set of that size (the error counted on n_test examples). nonmonotone: λ dips for 3 rows mid-run."""
    Ps = sorted(int(P) for P in Ps)
    steps = np.geomspace(1, 1e5, n_eval).astype(np.int64) + np.arange(n_eval)  # increasing
    for P in Ps:
        lam_opt = lam0 * P ** gamma2
        eps_opt = eps0 * (P / Ps[0]) ** (-gamma1 * gamma2)
        for s in range(n_seeds):
            lo_s = lam_opt * math.exp(sigma_lambda * rng.standard_normal())
            e_s = eps_opt * math.exp(sigma_eps * rng.standard_normal())
            lam = lo_s * np.geomspace(x_range[0], x_range[1], n_eval) * math.exp(0.05 * rng.standard_normal())
            if nonmonotone:  # a dip of λ in the middle of training, as after a loss spike
                k = n_eval // 2
                lam[k:k + 3] = lam[k - 1] * np.array([0.9, 0.95, 0.99])
            err = np.clip(e_s * synthetic_shape(lam / lo_s, gamma1)
                          * np.exp(noise * rng.standard_normal(n_eval)), 0, 1)
            if n_test:
                err = rng.binomial(n_test, err) / n_test
            yield P, s, steps, lam, err


def simulate_trajectories(rng: np.random.Generator, Ps, n_seeds: int, gamma1: float, gamma2: float,
                          experiment="synthetic", arch="cnn", dataset="digits", **kw):
    """``simulate_seeds`` as (DataFrame, meta) pairs valid under the trajectory contract."""
    out = []
    for P, s, steps, lam, err in simulate_seeds(rng, Ps, n_seeds, gamma1, gamma2, **kw):
        df = pd.DataFrame({"step": steps, "epoch": steps / 10.0, "wall_time": steps * 1e-3,
                           "train_error": err * 0.5, "train_loss": err, "val_error": err,
                           "val_loss": err, "test_error": err, "test_loss": err, "lambda": lam,
                           "spectral_complexity": lam})
        cfg = {"experiment": experiment, "arch": arch, "dataset": dataset, "P": P, "seed": s}
        meta = {"cell_id": f"{experiment}/{arch}/{dataset}/P{P}/seed{s}", "status": "completed",
                "diverged_step": None, "config": cfg, "config_hash": provenance.config_hash(cfg),
                "code": {"git_commit": None}, "dataset_sha256": "0" * 64}
        out.append((df, meta))
    return out


def simulate_fit_data(rng: np.random.Generator, Ps, n_seeds: int, gamma1: float, gamma2: float,
                      grid_points: int = 60, **kw) -> FitData:
    """FitData of ``simulate_seeds`` through the aggregation code (``aggregate.reduce_arrays`` and
    ``interpolate_seeds``; no files: fast enough for a simulation study)."""
    seeds = [reduce_arrays(lam, err, steps, P, s)
             for P, s, steps, lam, err in simulate_seeds(rng, Ps, n_seeds, gamma1, gamma2, **kw)]
    return fit_data_from_seed_curves(seeds, grid_points)


def fit_data_from_seed_curves(seeds, grid_points: int) -> FitData:
    """FitData straight from aggregate.SeedCurve objects (same numbers as the written aggregate)."""
    interp = interpolate_seeds(seeds, grid_points)
    Ps = sorted(interp)
    lam, eps, cens = [], [], []
    for P in Ps:
        by_seed = {c.seed: c for c in seeds if c.used and c.P == P}
        ids = interp[P][2]
        lam.append(np.log(np.array([by_seed[s].lambda_star for s in ids])))
        eps.append(np.array([by_seed[s].eps_star for s in ids]))
        cens.append(np.array([by_seed[s].censored for s in ids], dtype=bool))
    return FitData(P=np.array(Ps), grids=[interp[P][0] for P in Ps], curves=[interp[P][1] for P in Ps],
                   log_lambda_star=lam, eps_star=eps, seeds=[interp[P][2] for P in Ps], censored=cens)
