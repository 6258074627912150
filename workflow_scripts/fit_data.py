"""The fit's input: per-P arrays of seed curves and optima (``FitData``), read from an aggregate
(schema in ``aggregate.py``), and the seeds a fit keeps when minima are censored.

``FitError`` is raised wherever the data do not allow a fit (here, in ``fit`` and its window rule).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .aggregate import read_aggregate_file, validate_curves, validate_optima
from .fit_settings import Settings


class FitError(Exception):
    """The data do not allow the fit (too few P values, empty window, ...); the message says why.

    With estimator "both", ``by_estimator`` holds every estimator's result even when the primary
    one failed (the other may still be possible). When censoring left no P, ``censored`` holds the
    ``censored`` block of fit.json (every P dropped, with the reason)."""
    by_estimator: dict | None = None
    censored: dict | None = None


@dataclass
class FitData:
    """Per-P arrays: the only input of the fit. Index i runs over the sorted P values."""
    P: np.ndarray                         # (nP,) int
    grids: list[np.ndarray]               # per P: (G_P,) log λ grid, increasing
    curves: list[np.ndarray]              # per P: (S_P, G_P) interpolated test error, NaN = none
    log_lambda_star: list[np.ndarray]     # per P: (S_P,) log λ*_s, NaN = none
    eps_star: list[np.ndarray]            # per P: (S_P,) ε*_s, NaN = none
    seeds: list[np.ndarray] = field(default_factory=list)
    # per P: (S_P,) bool, the seed's minimum is censored by the end of training (empty: none)
    censored: list[np.ndarray] = field(default_factory=list)
    # published seed means (workflow_scripts/published.py): one curve per P, no seeds to resample
    published: bool = False

    def __post_init__(self):
        self.P = np.asarray(self.P, dtype=np.int64)
        n = len(self.P)
        for name in ("grids", "curves", "log_lambda_star", "eps_star"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"FitData.{name} has {len(getattr(self, name))} entries for {n} P values")
        for i in range(n):
            S = len(self.log_lambda_star[i])
            if self.curves[i].shape != (S, len(self.grids[i])) or len(self.eps_star[i]) != S:
                raise ValueError(f"FitData: inconsistent shapes at P={self.P[i]}")
        if not self.censored:
            self.censored = [np.zeros(len(s), dtype=bool) for s in self.log_lambda_star]
        self.censored = [np.asarray(c, dtype=bool) for c in self.censored]
        if [len(c) for c in self.censored] != [len(s) for s in self.log_lambda_star]:
            raise ValueError("FitData.censored must hold one flag per seed of each P")

    def subset(self, keep_P: np.ndarray, keep_seeds: list[np.ndarray]) -> "FitData":
        """The P values where keep_P, each with the seeds where keep_seeds[i] (both boolean)."""
        idx = np.flatnonzero(keep_P)
        pick = {name: [getattr(self, name)[i][keep_seeds[i]] for i in idx]
                for name in ("curves", "log_lambda_star", "eps_star", "censored")}
        seeds = [self.seeds[i][keep_seeds[i]] for i in idx] if self.seeds else []
        return FitData(P=self.P[idx], grids=[self.grids[i] for i in idx], seeds=seeds,
                       published=self.published, **pick)


AUTHORS_CENSORED = ("the authors' estimator keeps every seed, censored minima included, as their "
                    "notebook did")


def fit_data_from_frames(curves: pd.DataFrame, optima: pd.DataFrame, published: bool = False) -> FitData:
    """FitData from the aggregate tables (schema in aggregate.py); "mean" rows are ignored, except
    in a published aggregate (footer key ``published``), whose "mean" rows are its only curves."""
    validate_curves(curves)
    validate_optima(optima)
    kind = "mean" if published else "seed"
    rows = curves[curves["kind"] == kind] if "kind" in curves else curves
    rows = rows[np.isfinite(rows["log_lambda"].to_numpy(dtype=float))]
    opt = optima
    if "used" in opt:
        opt = opt[opt["used"].astype(bool)]
    Ps = sorted(set(rows["P"].astype(int)) | set(opt["P"].astype(int)))
    data = {"P": [], "grids": [], "curves": [], "log_lambda_star": [], "eps_star": [], "seeds": [],
            "censored": []}
    for P in Ps:
        r = rows[rows["P"] == P]
        o = opt[opt["P"] == P]
        seeds = np.array(sorted(set(r["seed"].astype(int)) | set(o["seed"].astype(int))), dtype=np.int64)
        if len(r):
            g = r.groupby("grid_index")["log_lambda"]
            spread = (g.max() - g.min()).to_numpy()
            if np.any(spread > 1e-9 * (1 + np.abs(g.first().to_numpy()))):
                raise ValueError(f"curves: seeds of P={P} disagree on the log_lambda of a grid_index")
            grid_s = g.first().sort_values()
            grid = grid_s.to_numpy(dtype=float)
            if np.any(np.diff(grid) <= 0):
                raise ValueError(f"curves: the log-λ grid of P={P} has repeated values")
            col = {gi: j for j, gi in enumerate(grid_s.index)}
            mat = np.full((len(seeds), len(grid)), np.nan)
            srow = {s: i for i, s in enumerate(seeds)}
            mat[[srow[s] for s in r["seed"].astype(int)], [col[gi] for gi in r["grid_index"]]] = \
                r["test_error"].to_numpy(dtype=float)
        else:
            grid, mat = np.zeros(0), np.zeros((len(seeds), 0))
        lam = np.full(len(seeds), np.nan)
        eps = np.full(len(seeds), np.nan)
        cens = np.zeros(len(seeds), dtype=bool)
        idx = {s: i for i, s in enumerate(seeds)}
        if "censored" in o:  # absent or null (files written before it, published ones): not censored
            for s, c in zip(o["seed"].astype(int), o["censored"]):
                cens[idx[s]] = bool(c) if not pd.isna(c) else False
        for s, ls, es in zip(o["seed"].astype(int), o["lambda_star"].to_numpy(dtype=float),
                             o["eps_star"].to_numpy(dtype=float)):
            with np.errstate(divide="ignore", invalid="ignore"):
                lam[idx[s]] = np.log(ls) if ls > 0 else np.nan
            eps[idx[s]] = es
        mat[~np.isfinite(mat)] = np.nan
        for k, v in zip(data, (P, grid, mat, lam, eps, seeds, cens)):
            data[k].append(v)
    return FitData(**data, published=published)


def load_fit_data(curves_path, optima_path) -> tuple[FitData, dict]:
    curves, cmeta = read_aggregate_file(curves_path)
    optima, _ = read_aggregate_file(optima_path)
    return fit_data_from_frames(curves, optima, published=bool(cmeta.get("published"))), cmeta


def apply_censoring(data: FitData, st: Settings, estimator: str) -> tuple[FitData, dict]:
    """The data a fit uses and fit.json's ``censored`` block (module docstring: censored minima).

    exclude (ours): censored seeds are dropped; so is a P left with fewer than min_seeds seeds,
    with the reason. include, and always the authors' estimator: the data unchanged."""
    mode = "include" if estimator == "authors" else st.censored
    per_P = [{"P": int(P), "seeds": int(len(c)), "censored": int(c.sum())}
             for P, c in zip(data.P, data.censored)]
    block = {"setting": mode, "per_P": per_P, "dropped_P": []}
    if estimator == "authors":
        block["note"] = AUTHORS_CENSORED
    if mode == "include" or not any(c.any() for c in data.censored):
        return data, block
    keep_seeds = [~c for c in data.censored]
    keep_P = np.array([k.sum() >= st.min_seeds for k in keep_seeds], dtype=bool)
    for row, k in zip(per_P, keep_P):
        if not k:
            left = row["seeds"] - row["censored"]
            block["dropped_P"].append({"P": row["P"], "reason": (
                f"{row['censored']} of {row['seeds']} seeds have a censored minimum; the "
                f"{left} left are fewer than min_seeds={st.min_seeds}")})
    if not keep_P.any():
        exc = FitError(f"every P has fewer than min_seeds={st.min_seeds} seeds whose minimum is not "
                       "censored by the end of training (analysis.censored: exclude); train longer")
        exc.censored = {**block, "reason": str(exc)}
        raise exc
    return data.subset(keep_P, keep_seeds), block
