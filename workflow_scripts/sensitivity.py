"""How much the exponents depend on the analysis choices: refits over a grid of windows and γ₁ min P.

Why: a γ₁ window is a choice, and the paper's Table 1 depends on it (its windows differ per arch and
dataset by orders of magnitude). Nobody has published how γ₁, γ_pred and γ_pred − γ_meas move
with it. For one aggregate this module refits (``fit.estimate_one``) every cell of

    window      x_left < x_right from ``windows`` log-spaced values of λ/λ_opt, from the smallest
                λ/λ_opt any mean curve reaches up to 1
    γ₁ min P    every P but the largest (the P range of γ₂ and γ_meas stays the configured one)
    estimator   ours and the authors'

each with ``bootstrap`` resamples (fewer than the main fit: the grid has many cells), and writes
sensitivity.parquet (one row per cell) and sensitivity.json (the grid, and per estimator the share
of fitted cells where the γ_pred and γ_meas intervals overlap: the Table 1 column). Published
aggregates have no bootstrap; their intervals are ±1.96 OLS standard errors.

    python -m workflow_scripts.sensitivity --curves C --optima O --settings JSON \
        --out-table sensitivity.parquet --out-json sensitivity.json [--figure sensitivity.png]
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import pandas as pd

from . import io, provenance
from .config import parse_settings
from .fit import (ESTIMATORS, FitData, FitError, Settings, describe, estimate_one, load_fit_data,
                  settings_for_data)

QUANTITIES = ("gamma1", "gamma_pred", "gamma_meas", "gamma_pred_minus_meas")
Z95 = 1.959963984540054


def window_values(data: FitData, st: Settings, n: int) -> np.ndarray:
    """``n`` log-spaced λ/λ_opt values from the smallest any mean curve reaches to 1."""
    rows = describe(data, st)
    lo = []
    for i, r in enumerate(rows):
        if r["lambda_opt"] and len(data.grids[i]):
            lo.append(data.grids[i][0] - math.log(r["lambda_opt"]))
    if not lo or min(lo) >= 0:
        raise FitError("no mean curve reaches left of its λ_opt: no window to vary")
    return np.geomspace(math.exp(min(lo)), 1.0, n)


def _interval(e: dict) -> tuple[float, float]:
    if e.get("ci_low") is not None and e.get("ci_high") is not None:
        return e["ci_low"], e["ci_high"]
    v, se = e.get("value"), e.get("se_ols")
    if v is None or se is None:
        return math.nan, math.nan
    return v - Z95 * se, v + Z95 * se


def grid(data: FitData, settings: dict | Settings, progress=None) -> tuple[pd.DataFrame, dict]:
    """Every cell's estimates (DataFrame) and the summary (dict with overlap_share per estimator)."""
    # The window is the grid's to vary: the rule passes settings without one (a window change
    # must not rerun the grid), so a placeholder stands in until every cell sets its own.
    st = settings if isinstance(settings, Settings) else Settings.from_dict(
        {"window": {"x_left": 0.0, "x_right": 1.0}, **settings})
    raw = settings if isinstance(settings, dict) else {}
    sens = raw.get("sensitivity") or {}
    n_windows, n_boot = int(sens.get("windows", 6)), int(sens.get("bootstrap", 100))
    st = settings_for_data(data, st.with_(n_boot=n_boot, also=()))
    xs = window_values(data, st.with_(x_left=0.0, x_right=1.0), n_windows)
    P_mins = [None] + [int(P) for P in data.P[1:-1]]  # None = every P (the smallest P)
    cells = [(e, pm, xs[i], xs[j]) for e in ESTIMATORS for pm in P_mins
             for i in range(len(xs)) for j in range(i + 1, len(xs))]
    rows = []
    for k, (estimator, pm, xl, xr) in enumerate(cells):
        row = {"estimator": estimator, "gamma1_P_min": int(data.P[0]) if pm is None else pm,
               "x_left": float(xl), "x_right": float(xr), "status": "ok", "reason": ""}
        try:
            res = estimate_one(data, st.with_(estimator=estimator, gamma1_P_min=pm,
                                              x_left=float(xl), x_right=float(xr)), estimator)
        except FitError as exc:
            row.update(status="impossible", reason=str(exc))
            res = None
        for q in QUANTITIES:
            e = (res or {}).get("estimates", {}).get(q) or {}
            lo, hi = _interval(e) if res else (math.nan, math.nan)
            row.update({q: math.nan if e.get("value") is None else e["value"],
                        f"{q}_low": lo, f"{q}_high": hi})
        row["overlap"] = bool(res) and (row["gamma_pred_low"] <= row["gamma_meas_high"]
                                        and row["gamma_meas_low"] <= row["gamma_pred_high"])
        rows.append(row)
        if progress and (k + 1) % 25 == 0:
            progress(f"{k + 1}/{len(cells)} cells")
    df = pd.DataFrame(rows)
    share = {}
    for estimator, sub in df.groupby("estimator"):
        ok = sub[sub["status"] == "ok"]
        share[estimator] = float(ok["overlap"].mean()) if len(ok) else None
    summary = {"window_values": [float(x) for x in xs], "gamma1_P_min": [r for r in
               sorted(df["gamma1_P_min"].unique().tolist())], "n_cells": len(df),
               "n_fitted": {e: int((s["status"] == "ok").sum()) for e, s in df.groupby("estimator")},
               "overlap_share": share, "bootstrap": n_boot,
               "intervals": "95% bootstrap percentile" if st.n_boot else "±1.96 OLS standard errors"}
    return df, summary


def figure(df: pd.DataFrame, summary: dict, title: str = ""):
    """The figure (not saved): heat maps of γ₁, γ_pred and γ_pred − γ_meas over (x_left, x_right) at γ₁ min P = the
    smallest P, one column per estimator (dots: the γ_pred and γ_meas intervals overlap), and the
    overlap share against γ₁ min P."""
    import seaborn as sns

    from .plot_style import pyplot

    plt = pyplot()
    ests = [e for e in ESTIMATORS if e in set(df["estimator"])]
    fig, axes = plt.subplots(4, len(ests), figsize=(4.6 * len(ests), 14), squeeze=False)
    pm0 = min(df["gamma1_P_min"])
    labels = {"gamma1": "γ₁", "gamma_pred": "γ_pred", "gamma_pred_minus_meas": "γ_pred − γ_meas"}
    for c, est in enumerate(ests):
        sub = df[(df["estimator"] == est) & (df["gamma1_P_min"] == pm0)]
        for r, q in enumerate(labels):
            ax = axes[r, c]
            piv = sub.pivot(index="x_left", columns="x_right", values=q).sort_index(ascending=False)
            finite = np.isfinite(piv.to_numpy())
            kw = {"cmap": "RdBu_r", "center": 0.0} if q == "gamma_pred_minus_meas" else {"cmap": "viridis"}
            if finite.any():
                sns.heatmap(piv, ax=ax, annot=True, fmt=".2f", annot_kws={"fontsize": 6},
                            cbar_kws={"label": labels[q]}, mask=~finite, **kw)
                ov = sub.pivot(index="x_left", columns="x_right", values="overlap") \
                    .sort_index(ascending=False).reindex_like(piv)
                ys, xs = np.nonzero(ov.fillna(False).to_numpy().astype(bool))
                ax.scatter(xs + 0.85, ys + 0.2, s=8, color="k", marker="o")
            else:
                ax.text(0.5, 0.5, "no cell fitted", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticklabels([f"{x:.1e}" for x in piv.columns], rotation=60, fontsize=6)
            ax.set_yticklabels([f"{x:.1e}" for x in piv.index], rotation=0, fontsize=6)
            ax.set_xlabel("x_right (λ/λ_opt)")
            ax.set_ylabel("x_left (λ/λ_opt)")
            ax.set_title(f"{labels[q]}, estimator {est}, γ₁ over P ≥ {pm0}", fontsize=8)
        ax = axes[3, c]
        sub = df[(df["estimator"] == est) & (df["status"] == "ok")]
        share = sub.groupby("gamma1_P_min")["overlap"].mean()
        ax.plot(share.index, share.to_numpy(), "o-")
        ax.set_xscale("log")
        ax.set_xticks(share.index, [str(int(P)) for P in share.index])
        ax.minorticks_off()
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("γ₁ min P")
        ax.set_ylabel("share of windows where γ_pred and γ_meas overlap")
        ax.set_title(f"estimator {est}: overlap share {summary['overlap_share'].get(est) or 0:.2f} "
                     "over the whole grid", fontsize=8)
    fig.suptitle(f"{title}\nsensitivity of the exponents to the window and γ₁ min P "
                 f"(dots: γ_pred and γ_meas intervals overlap; {summary['intervals']})", fontsize=9)
    fig.tight_layout()
    return fig


def run(curves_path, optima_path, settings: dict, out_table, out_json, out_figure=None) -> dict:
    data, cmeta = load_fit_data(curves_path, optima_path)
    group = cmeta.get("group", {})
    try:
        df, summary = grid(data, settings, progress=lambda m: print(m, file=sys.stderr))
        status, reason = "ok", None
    except FitError as exc:
        df, summary, status, reason = pd.DataFrame(), {"overlap_share": {}}, "impossible", str(exc)
    meta = provenance.provenance(config=settings, inputs=[curves_path, optima_path],
                                 stage="sensitivity", group=group)
    io.write_parquet(df, out_table, meta)
    io.write_json({**provenance.record("sensitivity", group.get("experiment"), outputs=[out_table]),
                   "schema": "sensitivity/1", "status": status, "reason": reason, "group": group,
                   **summary, "provenance": meta}, out_json)
    if out_figure:  # drawn from the table just written; its record <png>.json names that table
        from .plot_style import pyplot, save_figure

        if status == "ok":
            fig = figure(df, summary, title="/".join(str(group.get(k, "")) for k in
                                                     ("experiment", "arch", "dataset", "measure")))
        else:
            fig, ax = pyplot().subplots(figsize=(6, 2))
            ax.axis("off")
            ax.text(0.5, 0.5, f"sensitivity grid impossible:\n{reason}", ha="center", va="center", wrap=True)
        save_figure(fig, out_figure, "sensitivity", group.get("experiment"), [out_table], "sensitivity",
                    tidy=False, shown={"status": status, "overlap_share": summary["overlap_share"]})
    return {"status": status, **summary}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.sensitivity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--curves", required=True)
    ap.add_argument("--optima", required=True)
    ap.add_argument("--settings", required=True, help="the analysis section as JSON (or @file)")
    ap.add_argument("--out-table", required=True)
    ap.add_argument("--out-json", required=True)
    ap.add_argument("--figure", default=None, help="heat-map PNG to write")
    args = ap.parse_args(argv)
    res = run(args.curves, args.optima, parse_settings(args.settings), args.out_table, args.out_json,
              args.figure)
    print(f"sensitivity: {res['status']}; overlap share {res.get('overlap_share')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
