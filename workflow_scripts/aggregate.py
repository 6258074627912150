"""Aggregate the trajectories of one (experiment, arch, dataset) into curves on a log-λ grid.

Why: the fits (``fit.py``) need every seed's test error as a function of the complexity λ on a
common grid (the bootstrap resamples seeds, so per-seed curves are kept, not only their mean), and
every seed's optimum (λ*, ε*, step*). This module reads trajectory Parquet files, re-parametrises
each seed's learning curve by λ, and writes two Parquet files whose schema is the contract below;
any pair of files in this schema can be fitted by ``python -m workflow_scripts.fit`` outside the
workflow.

How each seed is treated
    * Trajectories whose footer status is ``"diverged"`` are excluded (counted per P).
    * Rows with a non-finite or non-positive λ, or a non-finite test error, are dropped.
    * λ must increase along training to be used as a coordinate. Where it does not (a non-monotone
      stretch), only the increasing envelope is kept: a row is kept iff its λ is strictly larger than
      that of every earlier kept row. The number of dropped rows is recorded per seed
      (``n_dropped_nonmonotone``) and summed per P in the footer; nothing is interpolated across a
      decrease.
    * A seed with fewer than 2 envelope rows cannot be interpolated and is excluded.
    * The seed's test error is interpolated linearly in log λ onto the grid of its P; grid points
      outside the seed's own λ range are NaN (never extrapolated).
    * The optimum (λ*, ε*, step*) is the evaluation row with the smallest test error among the
      rows with finite λ > 0 and finite test error (earliest row on ties), read from the raw rows.
    * The optimum is ``censored`` (``censored_optimum``) when it is the last logged point, or its λ*
      is within CENSOR_TOLERANCE (5%) of the last logged point's λ: training stopped before the
      error was seen to turn up in λ. λ* and ε* are then where training
      ended, not where the error is lowest; the fits leave such seeds out by default
      (``analysis.censored`` in fit.py).

The grid: for each P, ``grid_points`` points evenly spaced in log λ between the smallest and the
largest λ reached by any used seed of that P (so every P gets the full resolution).

Aggregate schema (version ``aggregate/1``)
------------------------------------------
``curves.parquet`` -- long form, one row per (kind, P, seed, grid point):
    kind        str      "seed": one used seed's interpolated curve; "mean": the summary over seeds
    P           int64    sample size
    seed        int64    the seed (-1 on "mean" rows)
    grid_index  int64    0 .. grid_points-1 (the grid is per P)
    log_lambda  float64  natural log of λ at the grid point
    lambda      float64  λ = exp(log_lambda)
    test_error  float64  "seed": interpolated test error, NaN where the seed does not reach this λ;
                         "mean": mean over the seeds with a finite value
    sem         float64  "mean": standard error (sample std, ddof=1, / sqrt(n_seeds)); NaN if
                         n_seeds < 2. "seed": NaN
    n_seeds     int64    "mean": seeds with a finite value here; "seed": 1 if finite else 0
    masked      bool     "mean": n_seeds < min_seeds (do not plot or fit); "seed": value is NaN
The "mean" rows are ``summarise_curves(seed_rows, min_seeds)`` of the "seed" rows; the fit
recomputes them from the "seed" rows (it needs them per bootstrap resample).

``optima.parquet`` -- one row per input trajectory (P, seed), used or not:
    P, seed               int64
    lambda_star           float64  λ at the seed's minimum test error (NaN if excluded)
    eps_star              float64  the minimum test error (NaN if excluded)
    step_star             Int64    optimiser step of that evaluation (null if excluded)
    status                str      the trajectory's footer status ("completed" | "diverged")
    used                  bool     the seed enters curves and fits
    excluded              str      "" if used, else the reason ("diverged", "no finite rows", ...)
    n_rows                int64    rows in the trajectory
    n_dropped_nonmonotone int64    rows dropped to keep λ increasing
    censored              bool     the minimum is censored by the end of training
                                   (``censored_optimum``; False if excluded)
    lambda_min, lambda_max float64 the λ range of the kept (envelope) rows
    cell_id, path         str      the trajectory's cell id and the file it was read from

Both footers (key ``scaling_dynamics``, see ``io.write_parquet``) hold the provenance block
(``provenance.provenance``: the analysis settings as ``config``, every input file with its sha256)
plus ``schema`` ("aggregate/1"), ``group`` ({experiment, arch, dataset, measure}) and ``per_P``
(files, used, diverged, other exclusions, dropped non-monotone rows and censored used seeds for
each P) and ``censor_tolerance``.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import io, provenance
from .config import parse_settings
from .trajectory import read_trajectory

SCHEMA = "aggregate/1"
# A minimum within this (relative) distance in λ of the last logged point is censored: less than one
# evaluation interval late in training (λ grows ~5-10% between the last logged points of a quick run).
CENSOR_TOLERANCE = 0.05
CURVE_COLUMNS = ("kind", "P", "seed", "grid_index", "log_lambda", "lambda", "test_error", "sem",
                 "n_seeds", "masked")
OPTIMA_COLUMNS = ("P", "seed", "lambda_star", "eps_star", "step_star", "status", "used", "excluded",
                  "n_rows", "n_dropped_nonmonotone", "censored", "lambda_min", "lambda_max", "cell_id",
                  "path")
GROUP_KEYS = ("experiment", "arch", "dataset")


def require(settings: dict, key: str):
    """settings[key], or a ValueError naming the missing key."""
    if settings.get(key) is None:
        raise ValueError(f"analysis settings lack {key!r} (got keys {sorted(settings)})")
    return settings[key]


def expand_inputs(inputs, allow_empty: bool = False) -> list[Path]:
    """Files given, plus every *.parquet under directories given (recursively), sorted, unique;
    the one way trajectories are found (the deep nets' aggregation and the perceptron's)."""
    files: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.update(q for q in p.rglob("*.parquet") if not q.name.startswith("."))
        elif p.is_file():
            files.add(p)
        else:
            raise ValueError(f"input {item!s} is neither a file nor a directory")
    if not files and not allow_empty:
        raise ValueError(f"no trajectory files found in {list(map(str, inputs))}")
    return sorted(files)


@dataclass
class SeedCurve:
    """One trajectory reduced to what the aggregate needs."""
    P: int
    seed: int
    status: str
    cell_id: str
    path: str
    n_rows: int
    log_lambda: np.ndarray      # increasing envelope, strictly increasing
    test_error: np.ndarray      # matching test errors
    n_dropped_nonmonotone: int
    censored: bool = False
    lambda_star: float = math.nan
    eps_star: float = math.nan
    step_star: int | None = None
    excluded: str = ""
    lambda_min: float = math.nan     # λ range of the kept rows, exact (not exp(log λ))
    lambda_max: float = math.nan

    @property
    def used(self) -> bool:
        return self.excluded == ""


def censored_optimum(lam, err, tolerance: float = CENSOR_TOLERANCE) -> bool:
    """Whether the test-error minimum of one learning curve is censored by the end of training.

    ``lam`` and ``err`` are the logged λ and test error in training order (rows with non-finite or
    non-positive λ or non-finite error are ignored). The minimum (earliest on ties) is censored when
    it is the last usable row, or |log(λ_last/λ*)| ≤ log(1 + tolerance), λ_last the last usable
    row's λ: training stopped (or λ stalled) too close to it in λ for the error to be seen rising.
    A minimum that λ later fell well below (weight decay) is not censored: the error rose after it. The one
    definition: the aggregate calls it per seed, and an import of external curves (the authors'
    published seed means) should call it on each curve too. False when no row is usable."""
    if tolerance < 0:
        raise ValueError(f"censor tolerance must be >= 0, got {tolerance}")
    lam, err = np.asarray(lam, dtype=float), np.asarray(err, dtype=float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(lam) & (lam > 0) & np.isfinite(err)
    if not ok.any():
        return False
    lam, err = lam[ok], err[ok]
    i = int(np.argmin(err))
    return bool(i == len(lam) - 1 or abs(math.log(lam[-1] / lam[i])) <= math.log1p(tolerance))


def increasing_envelope(log_lam: np.ndarray) -> np.ndarray:
    """Boolean mask of rows whose value is strictly above every earlier kept value."""
    if len(log_lam) == 0:
        return np.zeros(0, dtype=bool)
    prev_max = np.concatenate([[-np.inf], np.maximum.accumulate(log_lam)[:-1]])
    return log_lam > prev_max


def reduce_trajectory(df: pd.DataFrame, meta: dict, measure: str, path: str = "") -> SeedCurve:
    """Reduce one trajectory (DataFrame + footer) to a SeedCurve; never raises on bad values."""
    for key in ("config", "status", "cell_id"):  # no default: a footer without them is no trajectory
        if key not in meta:
            raise ValueError(f"{path}: trajectory footer lacks {key!r}")
    cfg = meta["config"]
    for key in ("P", "seed"):
        if key not in cfg:
            raise ValueError(f"{path}: trajectory config lacks {key!r}")
    if measure not in df.columns:
        raise ValueError(f"{path}: trajectory has no column {measure!r} "
                         f"(columns: {', '.join(map(str, df.columns))})")
    return reduce_arrays(df[measure].to_numpy(dtype=float), df["test_error"].to_numpy(dtype=float),
                         df["step"].to_numpy(), P=int(cfg["P"]), seed=int(cfg["seed"]),
                         status=meta["status"], cell_id=str(meta["cell_id"]),
                         path=str(path))


def reduce_arrays(lam, err, steps, P: int, seed: int, status: str = "completed", cell_id: str = "",
                  path: str = "") -> SeedCurve:
    """The reduction of ``reduce_trajectory`` on plain arrays (λ, test error, step per row)."""
    lam, err = np.asarray(lam, dtype=float), np.asarray(err, dtype=float)
    sc = SeedCurve(P=int(P), seed=int(seed), status=status, cell_id=cell_id, path=path,
                   n_rows=len(lam), log_lambda=np.zeros(0), test_error=np.zeros(0),
                   n_dropped_nonmonotone=0)
    if status == "diverged":
        sc.excluded = "diverged"
        return sc
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.isfinite(lam) & (lam > 0) & np.isfinite(err)
    if not ok.any():
        sc.excluded = "no finite rows"
        return sc
    i = int(np.argmin(np.where(ok, err, np.inf)))  # argmin returns the earliest on ties
    sc.lambda_star, sc.eps_star, sc.step_star = float(lam[i]), float(err[i]), int(steps[i])
    sc.censored = censored_optimum(lam, err)
    ll, ee = np.log(lam[ok]), err[ok]
    keep = increasing_envelope(ll)
    sc.n_dropped_nonmonotone = int((~keep).sum())
    sc.log_lambda, sc.test_error = ll[keep], ee[keep]
    sc.lambda_min, sc.lambda_max = float(lam[ok][keep][0]), float(lam[ok][keep][-1])
    if len(sc.log_lambda) < 2:
        sc.excluded = "fewer than 2 increasing-λ rows"
    return sc


def load(inputs, measure: str) -> tuple[list[SeedCurve], dict, list[Path]]:
    """Read every trajectory file; return the seed curves, the group and the file list."""
    files = expand_inputs(inputs)
    curves, groups = [], set()
    for f in files:
        df, meta = read_trajectory(f)
        cfg = meta.get("config", {})
        missing = [k for k in GROUP_KEYS if k not in cfg]
        if missing:
            raise ValueError(f"{f}: trajectory config lacks {missing}")
        groups.add(tuple(str(cfg[k]) for k in GROUP_KEYS))
        curves.append(reduce_trajectory(df, meta, measure, str(f)))
    if len(groups) > 1:
        raise ValueError(f"inputs mix (experiment, arch, dataset) groups: {sorted(groups)}; "
                         "aggregate one group at a time")
    seen: dict[tuple[int, int], str] = {}
    for c in curves:
        if (c.P, c.seed) in seen:
            raise ValueError(f"P={c.P} seed={c.seed} appears twice: {seen[(c.P, c.seed)]} and {c.path}")
        seen[(c.P, c.seed)] = c.path
    group = dict(zip(GROUP_KEYS, groups.pop()))
    group["measure"] = measure
    return curves, group, files


def interpolate_seeds(curves: list[SeedCurve], grid_points: int):
    """Per P: (log-λ grid, matrix seeds × grid of interpolated test errors, seed ids)."""
    out = {}
    for P in sorted({c.P for c in curves if c.used}):
        used = sorted((c for c in curves if c.used and c.P == P), key=lambda c: c.seed)
        lo = min(c.log_lambda[0] for c in used)
        hi = max(c.log_lambda[-1] for c in used)
        grid = np.linspace(lo, hi, grid_points) if hi > lo else np.full(grid_points, lo)
        mat = np.full((len(used), grid_points), np.nan)
        for j, c in enumerate(used):
            inside = (grid >= c.log_lambda[0]) & (grid <= c.log_lambda[-1])
            mat[j, inside] = np.interp(grid[inside], c.log_lambda, c.test_error)
        out[P] = (grid, mat, np.array([c.seed for c in used], dtype=np.int64))
    return out


def summarise_curves(seed_rows: pd.DataFrame, min_seeds: int) -> pd.DataFrame:
    """The "mean" rows of the schema from its "seed" rows: mean, sem, n_seeds, masked per (P, grid point)."""
    if min_seeds < 1:
        raise ValueError(f"min_seeds must be >= 1, got {min_seeds}")
    rows = seed_rows[seed_rows["kind"] == "seed"] if "kind" in seed_rows else seed_rows
    g = rows.groupby(["P", "grid_index"], sort=True)
    n = g["test_error"].count()
    mean = g["test_error"].mean()
    std = g["test_error"].std(ddof=1)
    lam = g["log_lambda"].first()
    out = pd.DataFrame({"log_lambda": lam, "test_error": mean, "n_seeds": n.astype("int64")})
    out["sem"] = np.where(n >= 2, std / np.sqrt(n.clip(lower=1)), np.nan)
    out["masked"] = out["n_seeds"] < min_seeds
    out = out.reset_index()
    out["kind"] = "mean"
    out["seed"] = np.int64(-1)
    out["lambda"] = np.exp(out["log_lambda"])
    return out[list(CURVE_COLUMNS)]


def aggregate(curves: list[SeedCurve], settings: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Build the curves and optima tables (schema above) and the per-P counts."""
    grid_points = int(require(settings, "grid_points"))
    min_seeds = int(require(settings, "min_seeds"))
    if grid_points < 2:
        raise ValueError(f"grid_points must be >= 2, got {grid_points}")
    per_seed = []
    for P, (grid, mat, seeds) in interpolate_seeds(curves, grid_points).items():
        S, G = mat.shape
        per_seed.append(pd.DataFrame({
            "kind": "seed", "P": np.int64(P), "seed": np.repeat(seeds, G),
            "grid_index": np.tile(np.arange(G, dtype=np.int64), S),
            "log_lambda": np.tile(grid, S), "lambda": np.tile(np.exp(grid), S),
            "test_error": mat.ravel(), "sem": np.nan,
            "n_seeds": np.isfinite(mat.ravel()).astype(np.int64),
            "masked": ~np.isfinite(mat.ravel())}))
    if per_seed:
        seed_rows = pd.concat(per_seed, ignore_index=True)[list(CURVE_COLUMNS)]
        curves_df = pd.concat([seed_rows, summarise_curves(seed_rows, min_seeds)], ignore_index=True)
    else:
        curves_df = empty_curves()
    optima = pd.DataFrame({
        "P": pd.array([c.P for c in curves], dtype="int64"),
        "seed": pd.array([c.seed for c in curves], dtype="int64"),
        "lambda_star": [c.lambda_star if c.used else math.nan for c in curves],
        "eps_star": [c.eps_star if c.used else math.nan for c in curves],
        "step_star": pd.array([c.step_star if c.used else None for c in curves], dtype="Int64"),
        "status": [c.status for c in curves],
        "used": [c.used for c in curves],
        "excluded": [c.excluded for c in curves],
        "n_rows": pd.array([c.n_rows for c in curves], dtype="int64"),
        "n_dropped_nonmonotone": pd.array([c.n_dropped_nonmonotone for c in curves], dtype="int64"),
        "censored": [bool(c.censored and c.used) for c in curves],
        "lambda_min": [c.lambda_min for c in curves],
        "lambda_max": [c.lambda_max for c in curves],
        "cell_id": [c.cell_id for c in curves],
        "path": [c.path for c in curves],
    }, columns=list(OPTIMA_COLUMNS)).sort_values(["P", "seed"], ignore_index=True)
    per_P = {}
    for P, sub in optima.groupby("P"):
        per_P[str(int(P))] = {
            "files": int(len(sub)), "used": int(sub["used"].sum()),
            "diverged": int((sub["excluded"] == "diverged").sum()),
            "excluded_other": int(((~sub["used"]) & (sub["excluded"] != "diverged")).sum()),
            "dropped_nonmonotone_rows": int(sub["n_dropped_nonmonotone"].sum()),
            "censored": int((sub["used"] & sub["censored"]).sum()),
        }
    return curves_df, optima, per_P


def empty_curves() -> pd.DataFrame:
    return pd.DataFrame({
        "kind": pd.Series([], dtype=object), "P": pd.Series([], dtype="int64"),
        "seed": pd.Series([], dtype="int64"), "grid_index": pd.Series([], dtype="int64"),
        "log_lambda": pd.Series([], dtype=float), "lambda": pd.Series([], dtype=float),
        "test_error": pd.Series([], dtype=float), "sem": pd.Series([], dtype=float),
        "n_seeds": pd.Series([], dtype="int64"), "masked": pd.Series([], dtype=bool)})


def read_aggregate_file(path) -> tuple[pd.DataFrame, dict]:
    """Read one aggregate Parquet file after verifying its seal; the footer may be absent (external
    files, sealed with ``python -m workflow_scripts.seal write``): meta = {}."""
    return io.read_parquet(path, footer_required=False)


def validate_curves(df: pd.DataFrame, path="curves") -> None:
    missing = [c for c in ("P", "seed", "grid_index", "log_lambda", "test_error") if c not in df]
    if missing:
        raise ValueError(f"{path}: curves table lacks columns {missing} (schema {SCHEMA})")


def validate_optima(df: pd.DataFrame, path="optima") -> None:
    missing = [c for c in ("P", "seed", "lambda_star", "eps_star") if c not in df]
    if missing:
        raise ValueError(f"{path}: optima table lacks columns {missing} (schema {SCHEMA})")


def run(inputs, measure: str, settings: dict, out_curves, out_optima, experiment=None) -> dict:
    curves, group, files = load(inputs, measure)
    if experiment is not None and experiment != group["experiment"]:
        # an experiment that re-analyses another's trajectories (e.g. the norms ablation)
        group["trained_by"], group["experiment"] = group["experiment"], experiment
    curves_df, optima_df, per_P = aggregate(curves, settings)
    meta = provenance.provenance(config=settings, inputs=files, schema=SCHEMA, group=group,
                                 per_P=per_P, censor_tolerance=CENSOR_TOLERANCE, stage="aggregate",
                                 **provenance.record("aggregate", group["experiment"]))
    io.write_parquet(curves_df, out_curves, meta)
    io.write_parquet(optima_df, out_optima, meta)
    return {"group": group, "per_P": per_P, "n_files": len(files)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.aggregate",
                                 description="Aggregate trajectories of one (experiment, arch, "
                                             "dataset) into curves on a log-λ grid and per-seed optima.")
    ap.add_argument("inputs", nargs="+", help="trajectory .parquet files or directories holding them")
    ap.add_argument("--measure", required=True, help="trajectory column used as λ (e.g. spectral_complexity)")
    ap.add_argument("--settings", required=True,
                    help="the experiment's analysis section as JSON (or @file.json / @file.yaml)")
    ap.add_argument("--out-curves", required=True, help="curves Parquet to write")
    ap.add_argument("--out-optima", required=True, help="optima Parquet to write")
    ap.add_argument("--experiment", help="the analysing experiment, when it reuses the "
                                         "trajectories of another (default: theirs)")
    args = ap.parse_args(argv)
    summary = run(args.inputs, args.measure, parse_settings(args.settings), args.out_curves,
                  args.out_optima, args.experiment)
    for P, c in summary["per_P"].items():
        print(f"P={P}: {c['used']}/{c['files']} seeds used, {c['diverged']} diverged, "
              f"{c['excluded_other']} excluded otherwise, {c['dropped_nonmonotone_rows']} "
              f"non-monotone rows dropped, {c['censored']} censored minima", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
