"""Teacher, inputs and free-norm gradient descent (the trajectories)."""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import provenance
from ..trajectory import write_trajectory
from .losses import (
    error_from_overlap,
    learning_rate,
    log_steps,
    loss_neg_derivative,
    loss_value,
    population_loss,
)
from .flow import flow_settings, simulate_flow
from .settings import (DATA_SPEC_VERSION, DATA_STREAM, DTYPES, INPUTS, INTEGRATORS, LOSS_NAMES,
                       TEACHER_STREAM, n_examples)


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------

def checked_run_arguments(loss: str, inputs: str, seeds) -> list[int]:
    """The loss, inputs and seeds of a run, checked (GD and the hybrid integrator alike); the seeds
    as a list of distinct ints."""
    if loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {LOSS_NAMES}, got {loss!r}")
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    return seeds


def data_spec(N: int, P: int, seed: int, inputs: str) -> dict:
    """What generates a cell's data; its canonical-JSON sha256 is the cell's dataset_sha256."""
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
    return {"kind": "teacher_student_perceptron", "version": DATA_SPEC_VERSION, "N": int(N),
            "P": int(P), "seed": int(seed), "inputs": inputs, "teacher": "gaussian",
            "generator": f"numpy.random.default_rng (PCG64), numpy {np.__version__.split('.')[0]}.x",
            "streams": {"teacher": [int(seed), TEACHER_STREAM], "inputs": [int(seed), DATA_STREAM]},
            "labels": "sign(x . w*), 0 -> +1"}


def dataset_sha256(spec: dict) -> str:
    return hashlib.sha256(provenance.canonical_json(spec).encode()).hexdigest()


def make_teacher(N: int, seed: int) -> np.ndarray:
    return np.random.default_rng([int(seed), TEACHER_STREAM]).standard_normal(N)


def make_inputs(N: int, P: int, seed: int, inputs: str, out: np.ndarray | None = None) -> np.ndarray:
    """The (P, N) inputs of ``seed``; rows are drawn in order (nested across P)."""
    rng = np.random.default_rng([int(seed), DATA_STREAM])
    if out is None:
        out = np.empty((P, N))
    if inputs == "gaussian":
        rng.standard_normal(out=out)
    elif inputs == "binary":
        out[...] = rng.integers(0, 2, size=(P, N), dtype=np.int8)
        out *= 2
        out -= 1
    else:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
    return out


def labels(X: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    return np.where(X @ teacher >= 0, 1.0, -1.0)


def signed_inputs(N: int, P: int, seed: int, inputs: str, out: np.ndarray | None = None):
    """(A, teacher) with A_μ = y_μ x_μ/√N, so that Δ = A w."""
    teacher = make_teacher(N, seed)
    A = make_inputs(N, P, seed, inputs, out)
    y = labels(A, teacher)
    A *= (y / math.sqrt(N))[:, None]
    return A, teacher


# ----------------------------------------------------------------------------------------------
# free-norm gradient descent
# ----------------------------------------------------------------------------------------------
def simulate(N: int, alpha: float, seeds, steps: int, *, loss: str = "logistic",
             inputs: str = "gaussian", lr_scale: float = 1.0, n_log: int = 100,
             max_batch_mb: float = 1024.0, dtype: str = "float64") -> dict:
    """Full-batch GD for every seed; returns {seed: (DataFrame of logged rows, info dict)}.

    Seeds are stacked (at most max_batch_mb of inputs per stack); results do not depend on the
    stacking (each seed's arithmetic is independent). ``dtype`` is the precision of the inputs
    and of the two matrix-vector products per step (float32 halves the memory traffic, the
    bottleneck); the weights are always accumulated in float64."""
    seeds = checked_run_arguments(loss, inputs, seeds)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    P = n_examples(N, alpha)
    lr = learning_rate(alpha, lr_scale)
    at = log_steps(steps, n_log)
    per_seed_bytes = P * N * np.dtype(dtype).itemsize
    stack = max(1, int(max_batch_mb * 2 ** 20 // per_seed_bytes))
    out = {}
    for i in range(0, len(seeds), stack):
        chunk = seeds[i:i + stack]
        out.update(_gd_stack(N, P, alpha, chunk, steps, loss, inputs, lr, at, dtype))
    return out


def _gd_stack(N, P, alpha, seeds, steps, loss, inputs, lr, at, dtype="float64") -> dict:
    S = len(seeds)
    A = np.empty((S, P, N), dtype=dtype)
    T = np.empty((S, N))
    for j, seed in enumerate(seeds):
        if dtype == "float64":
            _, T[j] = signed_inputs(N, P, seed, inputs, out=A[j])
        else:  # drawn in float64 (the same numbers), then rounded
            A[j], T[j] = signed_inputs(N, P, seed, inputs)
    tnorm = np.linalg.norm(T, axis=1)
    w = np.zeros((S, N))
    D = np.zeros((S, P), dtype=dtype)
    rows = [[] for _ in range(S)]
    diverged = [None] * S
    alive = np.ones(S, dtype=bool)
    next_log = 0
    gd_time = 0.0
    step_coef = lr / alpha
    t0 = time.perf_counter()
    for k in range(1, steps + 1):
        c = loss_neg_derivative(loss, D)            # −ℓ'(Δ) at the current w
        g = np.einsum("sp,spn->sn", c, A)                      # Σ_μ −ℓ'(Δ_μ) A_μ
        w += step_coef * g                                     # w − η ∇L, ∇L = −(1/α) Σ ...
        np.einsum("spn,sn->sp", A, w.astype(dtype, copy=False), out=D)  # Δ at the new w
        if next_log < len(at) and k == at[next_log]:  # ``at`` may end before ``steps`` (flow.py)
            gd_time += time.perf_counter() - t0
            next_log += 1
            for j in np.flatnonzero(alive):
                if not np.all(np.isfinite(w[j])):
                    alive[j] = False
                    diverged[j] = k
                    continue
                rows[j].append(_log_row(k, gd_time, w[j], T[j], tnorm[j], D[j], N, loss))
            if not alive.any():
                break
            t0 = time.perf_counter()
    out = {}
    for j, seed in enumerate(seeds):
        df = pd.DataFrame(rows[j], columns=list(_ROW_COLUMNS))
        df["step"] = df["step"].astype("int64")
        out[seed] = (df, {"status": "diverged" if diverged[j] is not None else "completed",
                          "diverged_step": diverged[j], "lr": lr, "P": P, "stacked_seeds": seeds,
                          "dtype": dtype, "w": w[j].copy()})
    return out


_ROW_COLUMNS = ("step", "epoch", "wall_time", "train_error", "train_loss", "val_error", "val_loss",
                "test_error", "test_loss", "lambda", "overlap")


def _log_row(k, wall, w, T, tnorm, D, N, loss):
    wn = float(np.linalg.norm(w))
    lam = wn / math.sqrt(N)
    R = float(w @ T) / (wn * tnorm) if wn > 0 else math.nan
    return (k, float(k), wall, float(np.mean(D <= 0)), float(np.mean(loss_value(loss, D))),
            math.nan, math.nan, float(error_from_overlap(R)), population_loss(loss, lam, R),
            lam, R)


def cell_config(N: int, alpha: float, seed: int, *, steps: int, loss: str, inputs: str,
                lr_scale: float, n_log: int, experiment: str = "perceptron",
                dtype: str = "float64", integrator: str = "gd", flow: dict | None = None) -> dict:
    """The cell's config (hashed into config_hash); the flow settings only with gd_then_flow."""
    P = n_examples(N, alpha)
    cfg = {"experiment": experiment, "arch": "perceptron", "dataset": f"teacher_N{N}",
           "P": P, "seed": int(seed), "N": int(N), "alpha": float(alpha), "inputs": inputs,
           "loss": loss, "steps": int(steps), "lr": learning_rate(alpha, lr_scale),
           "lr_scale": float(lr_scale), "n_log": int(n_log), "optimizer": "full-batch GD",
           "init": "w = 0", "teacher": "gaussian", "dtype": dtype, "integrator": integrator}
    if integrator == "gd_then_flow":
        cfg["flow"] = flow_settings(flow)
    return cfg


def cell_id(cfg: dict) -> str:
    return f"{cfg['experiment']}/{cfg['arch']}/{cfg['dataset']}/P{cfg['P']}/seed{cfg['seed']}"


_NOTES = {
    "gd": "step 0 (w = 0, overlap undefined) is not logged; step 1 is the Hebb vector; wall_time is "
          "shared by the stacked seeds; test_loss is the exact Gaussian-input population loss",
    "gd_then_flow": "step 0 (w = 0, overlap undefined) is not logged; steps up to flow.k0 are exact "
                    "GD (step 1 the Hebb vector if k0 >= 1), later rows the BDF gradient flow at "
                    "t = step * lr (the equivalent GD step); wall_time counts from the seed's "
                    "start, data generation included; test_loss is the exact Gaussian-input "
                    "population loss"}


def train(N: int, alpha: float, seeds, out_dir, *, steps: int, loss: str = "logistic",
          inputs: str = "gaussian", lr_scale: float = 1.0, n_log: int = 100,
          experiment: str = "perceptron", max_batch_mb: float = 1024.0,
          dtype: str = "float64", integrator: str = "gd", flow: dict | None = None) -> list[Path]:
    """Simulate and write out_dir/seed{seed}.parquet per seed (trajectory contract).

    ``integrator`` "gd": fixed-step GD (``simulate``); "gd_then_flow": flow.k0 GD steps, then BDF
    on the gradient flow (``flow.simulate_flow``; float64 only), its settings and counts of
    gradients and Hessians in the footer's ``integrator``."""
    if integrator == "gd":
        results = simulate(N, alpha, seeds, steps, loss=loss, inputs=inputs, lr_scale=lr_scale,
                           n_log=n_log, max_batch_mb=max_batch_mb, dtype=dtype)
    elif integrator == "gd_then_flow":
        if dtype != "float64":
            raise ValueError(f"integrator gd_then_flow runs in float64, got dtype={dtype!r}")
        results = simulate_flow(N, alpha, seeds, steps, flow=flow, loss=loss, inputs=inputs,
                                lr_scale=lr_scale, n_log=n_log)
    else:
        raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
    paths = []
    for seed, (df, info) in results.items():
        cfg = cell_config(N, alpha, seed, steps=steps, loss=loss, inputs=inputs,
                          lr_scale=lr_scale, n_log=n_log, experiment=experiment, dtype=dtype,
                          integrator=integrator, flow=flow)
        extra = {"integrator": info["integrator"]} if "integrator" in info else {}
        spec = data_spec(N, cfg["P"], seed, inputs)
        meta = provenance.provenance(
            config=cfg, cell_id=cell_id(cfg), status=info["status"],
            diverged_step=info["diverged_step"], dataset_sha256=dataset_sha256(spec),
            dataset_spec=spec, stacked_seeds=info["stacked_seeds"], **extra,
            notes=_NOTES[integrator])
        path = Path(out_dir) / f"seed{seed}.parquet"
        write_trajectory(df, meta, path)
        paths.append(path)
    return paths
