"""Figures built on aggregates and fits: learning curves against λ, their collapse, and the scaling
of the optimum with P (single panels and the 3×3 arch × dataset grids of the paper's Figures 3–4).

Why: every number a figure shows must come from an aggregate or fit file, so each PNG gets a
sidecar ``<out>.json`` holding the provenance (inputs with sha256) and the numbers drawn (per-P
optima, fitted exponents and intervals, line parameters): the audit walks from the picture back to
the trajectories. Lines are drawn from fit.json (never refitted here); the predicted line's intercept
is the least-squares one that fit.py stored. Matplotlib runs on the Agg backend (no display).
Censored minima (``aggregate.censored_optimum``: training stopped before the error turned up) are
drawn as open markers: a seed's λ*, and a P's optimum when censored seeds entered it (the fit
included them, or dropped the P for lack of uncensored seeds, or there is no fit).
"""
from __future__ import annotations

import argparse
import math
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from . import io  # noqa: E402
from .aggregate import read_aggregate_file, summarise_curves  # noqa: E402
from .fit import curve_minimum  # noqa: E402
from .plot_style import (ARCH_LABEL, ARCH_ORDER, DATASET_LABEL, DATASET_ORDER, save_figure,  # noqa: E402
                         set_theme)

MEASURE_LABEL = {"spectral_complexity": "spectral complexity $R_A$", "spectral_product":
                 r"product of spectral norms $\prod_i\|A_i\|_\sigma$", "l1": r"$\ell_1$ norm",
                 "frobenius": "Frobenius norm", "group21": "group (2,1) norm",
                 "spectral_complexity_authors": "spectral complexity (authors' variant)",
                 "lambda": r"$\lambda$"}
CMAP = "viridis"

set_theme()  # the pipeline's one look (plot_style.THEME)


class Panel:
    """One aggregate (+ optional fit) loaded for plotting."""

    def __init__(self, curves_path, optima_path, fit_path=None, min_seeds: int | None = None):
        self.curves_path, self.optima_path, self.fit_path = curves_path, optima_path, fit_path
        self.optima, ometa = read_aggregate_file(optima_path)
        if curves_path is None:  # scaling needs only the optima and the fit's per-P ε_opt
            curves, self.meta = pd.DataFrame({"kind": [], "P": [], "seed": [], "grid_index": [],
                                              "log_lambda": [], "test_error": []}), ometa
        else:
            curves, self.meta = read_aggregate_file(curves_path)
        self.fit = io.read_json(fit_path) if fit_path else None
        cfg = self.meta.get("config") or {}
        if min_seeds is None:
            min_seeds = (self.fit or {}).get("settings", {}).get("min_seeds") or cfg.get("min_seeds") or 1
        if "kind" in curves and (curves["kind"] == "mean").any():
            self.mean = curves[curves["kind"] == "mean"].copy()
        else:
            self.mean = summarise_curves(curves.assign(kind="seed"), int(min_seeds))
        self.group = dict(self.meta.get("group") or (self.fit or {}).get("group") or {})
        if self.fit and self.fit.get("group") and self.meta.get("group") \
                and self.fit["group"] != self.meta["group"]:
            raise ValueError(f"{fit_path} fits {self.fit['group']} but {curves_path} holds {self.meta['group']}")
        self.Ps = sorted({int(P) for P in self.mean["P"].unique()}
                         | {int(P) for P in self.optima["P"].unique()})

    @property
    def inputs(self):
        return [p for p in (self.curves_path, self.optima_path, self.fit_path) if p]

    def title(self) -> str:
        g = self.group
        a = ARCH_LABEL.get(g.get("arch"), g.get("arch", "?"))
        d = DATASET_LABEL.get(g.get("dataset"), g.get("dataset", "?"))
        return f"{a} · {d}"

    def lambda_label(self) -> str:
        m = self.group.get("measure")
        return f"complexity λ = {MEASURE_LABEL.get(m, m)}" if m else "complexity λ"

    def curve(self, P):
        m = self.mean[(self.mean["P"] == P) & ~self.mean["masked"].astype(bool)].sort_values("log_lambda")
        return (np.exp(m["log_lambda"].to_numpy(float)), m["test_error"].to_numpy(float),
                m["sem"].to_numpy(float))

    def optimum(self, P):
        """(λ_opt, ε_opt) of P: from fit.json when given (what was fitted), else the mean-curve min."""
        if self.fit and self.fit.get("per_P"):
            for row in self.fit["per_P"]:
                if row["P"] == P and row.get("lambda_opt") and row.get("eps_opt"):
                    return row["lambda_opt"], row["eps_opt"]
        lam, err, _ = self.curve(P)
        return curve_minimum(lam, err)

    def censored_seeds(self, P) -> int:
        """Used seeds of P whose minimum is censored (0 for aggregates without the column)."""
        o = self.optima[self.optima["P"] == P]
        if "used" in o:
            o = o[o["used"].astype(bool)]
        return int(o["censored"].fillna(False).astype(bool).sum()) if "censored" in o else 0

    def optimum_censored(self, P) -> bool:
        """Whether P's optimum as drawn rests on censored seeds: the fit excluded them, unless it
        included them or dropped P (then the drawn optimum is the mean curve's, all seeds)."""
        if not self.censored_seeds(P):
            return False
        block = (self.fit or {}).get("censored") or {}
        dropped = {d["P"] for d in block.get("dropped_P") or []}
        return block.get("setting") != "exclude" or P in dropped

    def norm(self):
        if not self.Ps:
            return LogNorm(vmin=1, vmax=10)
        return LogNorm(vmin=min(self.Ps), vmax=max(self.Ps) if max(self.Ps) > min(self.Ps) else min(self.Ps) * 1.01)


def _est(fit, key):
    e = ((fit or {}).get("estimates") or {}).get(key) or {}
    return e.get("value"), e.get("ci_low"), e.get("ci_high")


def estimate_label(fit, key, digits=3) -> str:
    """A fitted exponent as legends print it: "0.512 [0.480, 0.545]", or "n/a" when not fitted."""
    v, lo, hi = _est(fit, key)
    if v is None:
        return "n/a"
    s = f"{v:.{digits}f}"
    if lo is not None and hi is not None:
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s


def _colorbar(fig, ax, panel, label=True):
    sm = plt.cm.ScalarMappable(norm=panel.norm(), cmap=CMAP)
    cb = fig.colorbar(sm, ax=ax, pad=0.02, fraction=0.05)
    if label:
        cb.set_label("training-set size P")
    return cb


def _impossible_note(ax, fit):
    if fit and fit.get("status") != "ok":
        text = textwrap.fill(f"fit impossible: {fit.get('reason', '')}", 48, max_lines=4,
                             placeholder=" …")
        ax.text(0.03, 0.97, text, transform=ax.transAxes, ha="left", va="top", fontsize=6,
                color="firebrick", bbox={"boxstyle": "round", "fc": "white", "ec": "firebrick",
                                         "alpha": 0.9})


def _log_or_note(ax, has_data: bool, y: bool = True) -> None:
    """Log axes where there is something to draw, else a note (log scaling of nothing fails)."""
    if has_data:
        ax.set_xscale("log")
        if y:
            ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def draw_curves(ax, panel: Panel, fig=None, legend=True) -> dict:
    """Mean test error against λ, one curve per P, shaded ± standard error; dots at the optima."""
    cmap, norm = plt.get_cmap(CMAP), panel.norm()
    shown = {}
    for P in panel.Ps:
        lam, err, sem = panel.curve(P)
        if len(lam) == 0:
            continue
        c = cmap(norm(P))
        ax.plot(lam, err, color=c, lw=1.4, label=f"P = {P}")
        s = np.where(np.isfinite(sem), sem, 0.0)
        ax.fill_between(lam, err - s, err + s, color=c, alpha=0.25, lw=0)
        lo, eo = panel.optimum(P)
        censored = panel.optimum_censored(P)
        if math.isfinite(lo):
            ax.plot([lo], [eo], "o", color=c, ms=4, mec="k", mew=0.5, zorder=5,
                    mfc="none" if censored else c)
        shown[str(P)] = {"lambda_opt": lo, "eps_opt": eo, "n_points": int(len(lam)),
                         "lambda_range": [float(lam[0]), float(lam[-1])], "censored": censored}
    _log_or_note(ax, bool(shown), y=False)
    ax.set_xlabel(panel.lambda_label())
    ax.set_ylabel("test error ε (fraction misclassified)")
    ax.grid(True, which="major", alpha=0.3)
    if fig is not None:
        _colorbar(fig, ax, panel)
    elif legend and len(panel.Ps) <= 12:
        ax.legend(fontsize=7, ncol=2, frameon=False)
    return {"per_P": shown}


def draw_collapse(ax, panel: Panel, fig=None, label=None) -> dict:
    """ε/ε_opt against λ/λ_opt per P (log-log), the γ₁ window shaded and the fitted law drawn.
    ``label``: P -> the curve's legend entry ("P = 500" by default; the perceptron names α)."""
    cmap, norm = plt.get_cmap(CMAP), panel.norm()
    label = label or (lambda P: f"P = {P}")
    shown, xs = {}, []
    for P in panel.Ps:
        lam, err, _ = panel.curve(P)
        lo, eo = panel.optimum(P)
        if len(lam) == 0 or not math.isfinite(lo) or eo <= 0:
            continue
        ax.plot(lam / lo, err / eo, color=cmap(norm(P)), lw=1.2, alpha=0.9, label=label(P))
        shown[str(P)] = {"lambda_opt": lo, "eps_opt": eo}
        xs.append(lam / lo)
    _log_or_note(ax, bool(shown))
    ax.axvline(1.0, color="0.5", lw=0.6, ls=":")
    ax.axhline(1.0, color="0.5", lw=0.6, ls=":")
    out = {"per_P": shown}
    fit = panel.fit
    if fit and fit.get("status") == "ok":
        line = fit["lines"]["collapse"]
        xl, xr = np.exp(line["x_range"])
        ax.axvspan(xl, xr, color="0.85", alpha=0.5, lw=0, zorder=0, label="fit window")
        # draw the law only where curves exist: a window reaching past the data would otherwise
        # stretch the y-axis over decades that no measurement supports
        data = np.concatenate(xs) if xs else np.array([xl, xr])
        data = data[np.isfinite(data) & (data > 0)]
        x_lo = max(data.min(), xl / 2) if data.size else xl / 2
        x = np.geomspace(x_lo, 1.0, 50)
        ax.plot(x, np.exp(line["intercept"]) * x ** line["slope"], "--", color="0.4", lw=1)
        xw = np.geomspace(max(xl, x_lo), xr, 20) if max(xl, x_lo) < xr else np.array([xl, xr])
        ax.plot(xw, np.exp(line["intercept"]) * xw ** line["slope"], "-", color="crimson", lw=2.2,
                label=f"γ₁ = {estimate_label(fit, 'gamma1')}")
        out["fit"] = {"gamma1": _est(fit, "gamma1"), "k1": _est(fit, "k1"), "window": [xl, xr]}
    _impossible_note(ax, fit)
    ax.set_xlabel("λ / λ_opt")
    ax.set_ylabel("ε / ε_opt")
    ax.grid(True, which="major", alpha=0.3)
    if fig is not None:
        _colorbar(fig, ax, panel)
        per_P = {label(int(P)) for P in shown}  # the colour bar names the curves
        ax.legend(fontsize=6, frameon=False, loc="upper right",
                  handles=[h for h, lab in zip(*ax.get_legend_handles_labels()) if lab not in per_P])
    else:
        ax.legend(fontsize=7, ncol=2, frameon=False)
    return out


def _per_P(fit, P):
    for row in (fit or {}).get("per_P") or []:
        if row["P"] == P:
            return row
    return {}


def _errbar(ax, Ps, vals, cis, **kw):
    """Markers with asymmetric bars from [lo, hi] intervals (None: no bar)."""
    vals = np.asarray(vals, float)
    lo = np.array([v - c[0] if c else 0.0 for v, c in zip(vals, cis)])
    hi = np.array([c[1] - v if c else 0.0 for v, c in zip(vals, cis)])
    ax.errorbar(Ps, vals, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], capsize=2, **kw)


def draw_scaling(ax_lam, ax_eps, panel: Panel) -> dict:
    """λ_opt against P (per-seed λ* in grey) and ε_opt against P, with the fitted power laws
    (γ₂, γ_meas) and the predicted line γ_pred = γ₁γ₂; bars: bootstrap intervals per P."""
    fit = panel.fit or {}
    ok = fit.get("status") == "ok"
    level = int(round(100 * (fit.get("bootstrap") or {}).get("level", 0.95)))
    ci = f" ({level}% CI)" if ok and (fit.get("bootstrap") or {}).get("n") else ""
    opt = panel.optima
    if "used" in opt:
        opt = opt[opt["used"].astype(bool)]
    opt = opt[np.isfinite(opt["lambda_star"].to_numpy(float)) & (opt["lambda_star"] > 0)]
    cens = (opt["censored"].fillna(False).astype(bool) if "censored" in opt
            else pd.Series(False, index=opt.index))
    ax_lam.scatter(opt["P"][~cens], opt["lambda_star"][~cens], s=8, color="0.65", alpha=0.7,
                   zorder=1, label="λ* of each seed")
    if cens.any():
        ax_lam.scatter(opt["P"][cens], opt["lambda_star"][cens], s=12, facecolors="none",
                       edgecolors="0.45", lw=0.8, zorder=1, label="λ* censored (training ended)")
    rows = [(P, *panel.optimum(P), _per_P(fit, P), panel.optimum_censored(P)) for P in panel.Ps]
    rows = [r for r in rows if math.isfinite(r[1]) and math.isfinite(r[2])]
    Pv = np.array([r[0] for r in rows], float)
    _errbar(ax_lam, Pv, [r[1] for r in rows], [r[3].get("lambda_opt_ci") for r in rows], fmt="o",
            color="navy", ms=5, zorder=3, label=f"λ_opt of the mean curve{ci}")
    _open_markers(ax_lam, [(r[0], r[1]) for r in rows if r[4]])
    out = {"lambda_opt": {str(int(r[0])): r[1] for r in rows},
           "lambda_star": [[int(P), float(v)] for P, v in zip(opt["P"], opt["lambda_star"])],
           "lambda_star_censored": [[int(P), float(v)] for P, v in zip(opt["P"][cens],
                                                                       opt["lambda_star"][cens])],
           "optimum_censored": {str(int(r[0])): r[4] for r in rows}}
    rng = fit.get("P_used") or {}
    if ok:
        l2 = fit["lines"]["lambda_opt"]
        Pr = rng.get("gamma2") or list(Pv)
        Pf = np.geomspace(min(Pr), max(Pr), 50)
        ax_lam.plot(Pf, np.exp(l2["intercept"]) * Pf ** l2["slope"], "-", color="crimson", lw=2,
                    zorder=2, label=f"k₂ P^γ₂, γ₂ = {estimate_label(fit, 'gamma2')}")
        out["gamma2"], out["k2"] = _est(fit, "gamma2"), _est(fit, "k2")
    m = panel.group.get("measure")
    _log_or_note(ax_lam, len(rows) > 0 or len(opt) > 0)
    ax_lam.set_xlabel("training-set size P (examples)")
    ax_lam.set_ylabel(f"λ at the minimum test error ({MEASURE_LABEL.get(m, m)})" if m
                      else "λ at the minimum test error")
    ax_lam.grid(True, which="major", alpha=0.3)
    ax_lam.legend(fontsize=7, frameon=False)

    _errbar(ax_eps, Pv, [r[2] for r in rows], [r[3].get("eps_opt_ci") for r in rows], fmt="o",
            color="navy", ms=5, zorder=3, label=f"ε_opt, minimum of the mean curve{ci}")
    _open_markers(ax_eps, [(r[0], r[2]) for r in rows if r[4]])
    out["eps_opt"] = {str(int(r[0])): r[2] for r in rows}
    if ok:
        Pr = rng.get("gamma_meas") or list(Pv)
        Pf = np.geomspace(min(Pr), max(Pr), 50)
        lm, lp = fit["lines"]["eps_opt"], fit["lines"]["predicted"]
        ax_eps.plot(Pf, np.exp(lm["intercept"]) * Pf ** lm["slope"], "-", color="crimson", lw=2,
                    label=f"fit: γ_meas = {estimate_label(fit, 'gamma_meas')}")
        ax_eps.plot(Pf, np.exp(lp["intercept"]) * Pf ** lp["slope"], "--", color="darkorange", lw=2,
                    label=f"predicted: γ_pred = γ₁γ₂ = {estimate_label(fit, 'gamma_pred')}")
        out.update({k: _est(fit, k) for k in ("gamma_meas", "gamma_pred", "gamma1",
                                               "gamma_pred_minus_meas")})
        out["lines"] = fit["lines"]
    _impossible_note(ax_eps, fit)
    _log_or_note(ax_eps, len(rows) > 0)
    ax_eps.set_xlabel("training-set size P (examples)")
    ax_eps.set_ylabel("optimal test error ε_opt")
    ax_eps.grid(True, which="major", alpha=0.3)
    ax_eps.legend(fontsize=7, frameon=False)
    return out


def _open_markers(ax, points) -> None:
    """White out the filled markers of censored optima (drawn over them: open marker, same place)."""
    if points:
        P, v = zip(*points)
        ax.plot(P, v, "o", ms=5, mfc="white", mec="navy", mew=1.2, zorder=4, ls="none",
                label="open: censored minimum (training ended)")


def _save(fig, out, panels, shown, plot):
    save_figure(fig, out, plot, [p.group.get("experiment") for p in panels],
                [x for panel in panels for x in panel.inputs], "figures",
                panels=[{"group": p.group, "inputs": [str(x) for x in p.inputs], "shown": s}
                        for p, s in zip(panels, shown)])


def fig_curves(curves, optima, out, fit=None):
    panel = Panel(curves, optima, fit)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    shown = draw_curves(ax, panel)
    ax.set_title(f"{panel.title()}: test error along training")
    _save(fig, out, [panel], [shown], "curves")


def fig_collapse(curves, optima, fit, out):
    panel = Panel(curves, optima, fit)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    shown = draw_collapse(ax, panel)
    ax.set_title(f"{panel.title()}: collapse of the learning curves")
    _save(fig, out, [panel], [shown], "collapse")


def fig_scaling(optima, fit, out, curves=None):
    panel = Panel(curves, optima, fit)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    shown = draw_scaling(a, b, panel)
    fig.suptitle(f"{panel.title()}: scaling of the optimum with P")
    fig.tight_layout()
    _save(fig, out, [panel], [shown], "scaling")


def grid_layout(panels):
    """Rows, columns and cell of each panel for the grid figures.

    One variant (experiment, measure) among the inputs: archs × datasets (the paper's Figures
    3-4). Several variants (ablations): one row per variant (per variant and arch when several
    datasets are shown) and one column per arch (per dataset when several datasets)."""
    def order(values, key):
        return sorted(set(values), key=lambda v: (key.get(v, 99), str(v)))

    g = [p.group for p in panels]
    variants = list(dict.fromkeys((x.get("experiment"), x.get("measure")) for x in g))
    archs = order([x.get("arch") for x in g], ARCH_ORDER)
    dsets = order([x.get("dataset") for x in g], DATASET_ORDER)
    if len(variants) <= 1 or len(dsets) > 1:
        rows, cols = [(v, a) for v in variants for a in archs], [(d,) for d in dsets]
        cell = [(((x.get("experiment"), x.get("measure")), x.get("arch")), (x.get("dataset"),))
                for x in g]
    else:
        rows, cols = [(v, None) for v in variants], [(a,) for a in archs]
        cell = [(((x.get("experiment"), x.get("measure")), None), (x.get("arch"),)) for x in g]
    return rows, cols, cell, variants


def _variant_label(v, variants) -> str:
    exp_varies = len({e for e, _ in variants}) > 1
    meas_varies = len({m for _, m in variants}) > 1
    parts = ([str(v[0])] if exp_varies else []) + ([str(v[1])] if meas_varies else [])
    return " · ".join(parts)


def fig_grid(kind, curves, optima, fits, out, panels=None):
    """One grid figure; ``panels`` (already loaded) lets one job draw several kinds from one read."""
    if len(curves) != len(optima):
        raise ValueError(f"grid: {len(curves)} --curves but {len(optima)} --optima (pair them in order)")
    if fits and len(fits) != len(curves):
        raise ValueError(f"grid: {len(fits)} --fit for {len(curves)} --curves (pair them in order)")
    if panels is None:
        panels = [Panel(c, o, fits[i] if fits else None) for i, (c, o) in enumerate(zip(curves, optima))]
    rows, cols, cells, variants = grid_layout(panels)
    where = {}
    for p, cell in zip(panels, cells):
        if cell in where:
            raise ValueError(f"grid: two inputs for {p.group}")
        where[cell] = p
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(4.6 * len(cols), 3.6 * len(rows)),
                             squeeze=False)
    shown, drawn = [], []
    for r, row in enumerate(rows):
        for c, col in enumerate(cols):
            ax = axes[r][c]
            p = where.get((row, col))
            vlabel = _variant_label(row[0], variants)
            if p is None or not p.Ps:
                a = row[1] if row[1] is not None else col[0]
                d = col[0] if row[1] is not None else None
                label = " · ".join(x for x in (ARCH_LABEL.get(a, a), DATASET_LABEL.get(d, d) if d else None,
                                               vlabel) if x)
                ax.text(0.5, 0.5, f"{label}\nno data", ha="center", va="center",
                        transform=ax.transAxes, color="0.4")
                ax.set_axis_off()
                continue
            s = draw_curves(ax, p, fig=fig) if kind == "curves" else draw_collapse(ax, p, fig=fig)
            ax.set_title(p.title() + (f"\n{vlabel}" if vlabel else ""), fontsize=10)
            if r < len(rows) - 1:
                ax.set_xlabel("")
            if c > 0:
                ax.set_ylabel("")
            shown.append(s)
            drawn.append(p)
    fig.suptitle("Test error against complexity λ" if kind == "curves"
                 else "Collapse: ε/ε_opt against λ/λ_opt, fitted γ₁ over the window", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_size_inches()[1]))  # room for the suptitle
    _save(fig, out, drawn, shown, f"grid-{kind}")


def add_aggregate_arguments(parser, optional_fit: str | None = None) -> None:
    """--curves, --optima and --fit: one aggregate and its fit.json, as every figure CLI reads them
    (``optional_fit``: --fit may be left out, with this help)."""
    parser.add_argument("--curves", required=True)
    parser.add_argument("--optima", required=True)
    if optional_fit:
        parser.add_argument("--fit", help=optional_fit)
    else:
        parser.add_argument("--fit", required=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.figures",
                                 description="Figures from aggregates and fits (PNG + <out>.json sidecar).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("curves", help="test error against λ, one curve per P (± standard error)")
    add_aggregate_arguments(a, optional_fit="optional fit.json (marks the fitted optima)")
    a.add_argument("--out", required=True)
    b = sub.add_parser("collapse", help="ε/ε_opt against λ/λ_opt with the fitted γ₁ law")
    add_aggregate_arguments(b)
    b.add_argument("--out", required=True)
    c = sub.add_parser("scaling", help="λ* and ε_opt against P with the fitted and predicted laws")
    c.add_argument("--optima", required=True)
    c.add_argument("--fit", required=True)
    c.add_argument("--curves", help="optional: the aggregate's curves (ε_opt is otherwise read from fit.json)")
    c.add_argument("--out", required=True)
    e = sub.add_parser("panel", help="curves, collapse and scaling of one aggregate in one call")
    add_aggregate_arguments(e)
    e.add_argument("--out-dir", required=True, help="writes curves.png, collapse.png, scaling.png")
    d = sub.add_parser("grid", help="arch × dataset grid of curves or collapses (paper Figs. 3–4)")
    d.add_argument("--kind", choices=("curves", "collapse"), nargs="+", required=True,
                   help="one or both kinds, drawn in one process from one read of the inputs")
    d.add_argument("--curves", nargs="+", required=True)
    d.add_argument("--optima", nargs="+", required=True)
    d.add_argument("--fit", nargs="*", default=[])
    d.add_argument("--out", nargs="+", required=True, help="one PNG per --kind, in the same order")
    args = ap.parse_args(argv)
    if args.cmd == "curves":
        fig_curves(args.curves, args.optima, args.out, args.fit)
    elif args.cmd == "collapse":
        fig_collapse(args.curves, args.optima, args.fit, args.out)
    elif args.cmd == "scaling":
        fig_scaling(args.optima, args.fit, args.out, args.curves)
    elif args.cmd == "panel":  # one process for three figures: start-up dominates small runs
        out = Path(args.out_dir)
        fig_curves(args.curves, args.optima, out / "curves.png", args.fit)
        fig_collapse(args.curves, args.optima, args.fit, out / "collapse.png")
        fig_scaling(args.optima, args.fit, out / "scaling.png", args.curves)
    else:
        if len(args.out) != len(args.kind):
            ap.error(f"grid: {len(args.kind)} --kind but {len(args.out)} --out (one PNG per kind)")
        panels = None
        for kind, out in zip(args.kind, args.out):
            if panels is None and len(args.curves) == len(args.optima) \
                    and (not args.fit or len(args.fit) == len(args.curves)):
                panels = [Panel(c, o, args.fit[i] if args.fit else None)
                          for i, (c, o) in enumerate(zip(args.curves, args.optima))]
            fig_grid(kind, args.curves, args.optima, args.fit, out, panels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
