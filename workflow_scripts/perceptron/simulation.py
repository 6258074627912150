"""Teacher, inputs and free-norm gradient descent (the trajectories)."""
from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import pandas as pd

from .. import provenance
from .losses import (
    error_from_overlap,
    learning_rate,
    log_steps,
    loss_neg_derivative,
    loss_value,
    population_loss,
)
from .settings import (DATA_SPEC_VERSION, DATA_STREAM, DTYPES, INPUTS, LOSS_NAMES,
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
        out.update(gd_stack(N, P, alpha, chunk, steps, loss, inputs, lr, at, dtype))
    return out


def gd_stack(N, P, alpha, seeds, steps, loss, inputs, lr, at, dtype="float64") -> dict:
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
                rows[j].append(log_row(k, gd_time, w[j], T[j], tnorm[j], D[j], N, loss))
            if not alive.any():
                break
            t0 = time.perf_counter()
    out = {}
    for j, seed in enumerate(seeds):
        df = pd.DataFrame(rows[j], columns=list(ROW_COLUMNS))
        df["step"] = df["step"].astype("int64")
        out[seed] = (df, {"status": "diverged" if diverged[j] is not None else "completed",
                          "diverged_step": diverged[j], "lr": lr, "P": P, "stacked_seeds": seeds,
                          "dtype": dtype, "w": w[j].copy()})
    return out


ROW_COLUMNS = ("step", "epoch", "wall_time", "train_error", "train_loss", "val_error", "val_loss",
                "test_error", "test_loss", "lambda", "overlap")


def log_row(k, wall, w, T, tnorm, D, N, loss):
    wn = float(np.linalg.norm(w))
    lam = wn / math.sqrt(N)
    R = float(w @ T) / (wn * tnorm) if wn > 0 else math.nan
    return (k, float(k), wall, float(np.mean(D <= 0)), float(np.mean(loss_value(loss, D))),
            math.nan, math.nan, float(error_from_overlap(R)), population_loss(loss, lam, R),
            lam, R)
