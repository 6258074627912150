"""Figures of the teacher–student perceptron (PNG + a sidecar ``<out>.json``).

Why: the paper's perceptron figures, drawn only from files the pipeline made (trajectories, the
fixed-norm and theory Parquet files of the package, the aggregate and fit.json of the deep
nets' code), with the numbers shown and the inputs' sha256 in the sidecar, so each picture can be
audited back to its data.

    trajectory   at one α: the free-norm GD trajectory ε(λ), coloured by GD step, over the
                 fixed-norm curve (finite-N minimiser and replica theory), with the Hebb, Bayes and
                 maximal-stability errors as lines.
    scaling      (a) ε/ε₀ against λ for every α (ε₀: the error at step 1, the Hebb rule);
                 (b)-(d) the deep nets' panels (``figures.draw_scaling``, ``draw_collapse``):
                 (b) λ_opt against P = αN (α on top) with the fitted γ₂ and the replica λ_opt;
                 (c) the collapse ε/ε_opt against λ/λ_opt with the fitted γ₁ in its window;
                 (d) ε_opt against P with the measured and the predicted (γ₁γ₂) slopes, the
                 Bayes-optimal curve and its 0.442/α tail.
    square-loss  the counterexample: GD on the square loss against the logistic loss at one α,
                 ε(λ) and λ against the step (λ saturates: no power-law branch).
    paper-variables  the laws where they hold: (a) replica ε/ε_Hebb against absolute λ at many α
                 with the α → ∞ limit curve f(λ) and 0.555 λ^(−½), GD seed means dashed; (b) the
                 local slope −d log(ε/ε₀)/d log λ (theory and GD) with ½ and the γ₁ window;
                 (c) λ_opt against α with the fitted γ₂ (theory and GD), from validation.json.
"""
from __future__ import annotations

import argparse
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from .. import io  # noqa: E402
from ..aggregate import expand_inputs  # noqa: E402
from ..figures import CMAP, Panel, add_aggregate_arguments, draw_collapse, draw_scaling  # noqa: E402
from ..plot_style import save_figure  # noqa: E402
from ..trajectory import read_trajectory  # noqa: E402
from .settings import alpha_tag  # noqa: E402
from .theory import LIMIT_C, limit_curve  # noqa: E402
from .validation import add_logistic_runs, gd_mean_curves, local_slope  # noqa: E402

# the pipeline's one look (plot_style.THEME) is set by importing ..figures
LINES = {"hebb": ("Hebb", "tab:orange", ":"), "bayes": ("Bayes-optimal", "tab:red", "--"),
         "max_stability": ("max. stability", "tab:purple", "-.")}


def _num(x):
    x = float(x)
    return x if math.isfinite(x) else None


def load_runs(items, alpha: float | None = None) -> tuple[list, list[str]]:
    """[(df, meta)] of the trajectories in files/directories, optionally only those at ``alpha``."""
    files = expand_inputs(items, allow_empty=True)
    runs = []
    for f in files:
        df, meta = read_trajectory(f)
        if alpha is None or alpha_tag(meta["config"]["alpha"]) == alpha_tag(alpha):
            runs.append((df, meta))
    if not runs:
        raise ValueError(f"no trajectories{'' if alpha is None else f' at alpha={alpha}'} in {list(map(str, items))}")
    return runs, [str(f) for f in files]


def seed_mean(runs) -> pd.DataFrame:
    """Mean over seeds of λ and ε at each logged step (seeds of one α share their logged steps)."""
    cols = ["step", "lambda", "test_error"]
    long = pd.concat([df[cols].assign(seed=m["config"]["seed"]) for df, m in runs])
    g = long.groupby("step")
    out = g[["lambda", "test_error"]].mean()
    out["sem"] = g["test_error"].std(ddof=1) / np.sqrt(g["test_error"].count())
    out["n_seeds"] = g["test_error"].count()
    return out.reset_index()


def reference_at(reference: pd.DataFrame, alpha: float) -> dict:
    row = reference[np.isclose(reference["alpha"], alpha)]
    if row.empty:
        raise ValueError(f"the reference curves hold no row at alpha={alpha}")
    return {k: float(row[k].iloc[0]) for k in ("hebb", "bayes", "gibbs", "max_stability")}


def _hlines(ax, ref: dict, keys=("hebb", "bayes", "max_stability")):
    for k in keys:
        label, color, ls = LINES[k]
        ax.axhline(ref[k], color=color, ls=ls, lw=1.2, label=f"{label} {ref[k]:.4f}")


def _save(fig, out, inputs, shown, plot, tidy=False):
    save_figure(fig, out, plot, "perceptron", [str(p) for p in inputs], "perceptron_figures",
                tidy=tidy, shown=shown)


# ----------------------------------------------------------------------------------------------
def fig_trajectory(runs_in, fixed_norm, reference, replica, alpha: float, out) -> dict:
    runs, files = load_runs(runs_in, alpha)
    fn, _ = io.read_parquet(fixed_norm)
    fn = fn[np.isclose(fn["alpha"], alpha) & fn["converged"]]
    ref_df, _ = io.read_parquet(reference)
    rep, _ = io.read_parquet(replica)
    rep = rep[np.isclose(rep["alpha"], alpha) & rep["converged"]].sort_values("lambda")
    ref = reference_at(ref_df, alpha)
    mean = seed_mean(runs)

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for df, _ in runs:
        ax.plot(df["lambda"], df["test_error"], color="0.75", lw=0.7, zorder=1)
    sc = ax.scatter(mean["lambda"], mean["test_error"], c=mean["step"], cmap=CMAP,
                    norm=LogNorm(vmin=max(1, mean["step"].min()), vmax=mean["step"].max()),
                    s=14, zorder=3, label=f"free-norm GD (mean of {len(runs)} seeds)")
    fig.colorbar(sc, ax=ax, label="GD step")
    fshown = []
    if not fn.empty:
        g = fn.groupby("lambda")["test_error"]
        fm = g.mean()
        fs = g.std(ddof=1) / np.sqrt(g.count())
        ax.errorbar(fm.index, fm.values, yerr=fs.values, fmt="s", ms=3.5, color="k", mfc="white",
                    lw=0.8, zorder=4, label=f"fixed norm, N={int(fn['N'].iloc[0])} "
                                            f"({int(fn['seed'].nunique())} samples)")
        fshown = [{"lambda": float(lam), "mean": float(m), "sem": _num(s)}
                  for lam, m, s in zip(fm.index, fm.values, fs.values)]
    if not rep.empty:
        ax.plot(rep["lambda"], rep["test_error"], "k--", lw=1.2, zorder=2,
                label="fixed norm, replica theory (N→∞)")
    _hlines(ax, ref)
    ax.set_xscale("log")
    ax.set_yscale("log")
    lam_lo = min(mean["lambda"].min(), fn["lambda"].min() if not fn.empty else np.inf)
    lam_hi = max(mean["lambda"].max(), fn["lambda"].max() if not fn.empty else 0)
    ax.set_xlim(lam_lo / 1.3, lam_hi * 1.3)
    ax.set_xlabel("λ = ‖w‖/√N")
    ax.set_ylabel("test error ε = arccos(R)/π")
    N = int(runs[0][1]["config"]["N"])
    ax.set_title(f"teacher–student perceptron, α = {alpha:g}, N = {N}")
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    i = int(mean["test_error"].idxmin())
    shown = {"alpha": alpha, "N": N, "n_seeds": len(runs),
             "trajectory_mean": mean.to_dict(orient="list"),
             "min_error": float(mean["test_error"].min()), "lambda_at_min": float(mean["lambda"][i]),
             "step_at_min": int(mean["step"][i]), "reference": ref, "fixed_norm_mean": fshown,
             "replica": {"lambda": rep["lambda"].tolist(), "test_error": rep["test_error"].tolist()}}
    _save(fig, out, files + [fixed_norm, reference, replica], shown, "perceptron_trajectory")
    return shown


# ----------------------------------------------------------------------------------------------
def fig_scaling(curves, optima, fit, reference, replica, N: int, out) -> dict:
    """Panels (b)–(d) are the deep nets' (``figures.draw_scaling``, ``figures.draw_collapse``: the
    same optima, bootstrap bars, censored open markers, fit lines and window), on the P axis with
    α = P/N on top; only the perceptron's own curves are laid over them (replica λ_opt, Bayes)."""
    panel = Panel(curves, optima, fit)
    fitj = panel.fit
    ref_df, _ = io.read_parquet(reference)
    rep, _ = io.read_parquet(replica)
    rep = rep[rep["converged"]]
    mean = panel.mean[~panel.mean["masked"].astype(bool)]
    Ps = sorted(int(P) for P in mean["P"].unique())
    if not Ps:
        raise ValueError(f"{curves}: no unmasked mean curve")
    alphas = {P: P / N for P in Ps}
    cmap, norm = plt.get_cmap(CMAP), panel.norm()  # the collapse's colours, so (a) and (c) agree
    est = fitj.get("estimates") or {}
    fig, axs = plt.subplots(2, 2, figsize=(11, 8.4))
    (a0, a1), (a2, a3) = axs
    shown = {"N": N, "alphas": [alphas[P] for P in Ps], "fit_status": fitj.get("status"),
             "fit_reason": fitj.get("reason"), "estimates": {k: est.get(k) for k in
             ("gamma1", "gamma2", "gamma_meas", "gamma_pred", "k1", "k2")}, "curves": {}}
    # (a) ε/ε₀ against λ
    for P in Ps:
        col = cmap(norm(P))
        m = mean[mean["P"] == P].sort_values("lambda")
        e0 = float(m["test_error"].iloc[0])
        a0.plot(m["lambda"], m["test_error"] / e0, color=col, lw=1.4, label=f"α = {alphas[P]:g}")
        r = rep[np.isclose(rep["alpha"], alphas[P])].sort_values("lambda")
        hebb = ref_df[np.isclose(ref_df["alpha"], alphas[P])]["hebb"]
        if not r.empty and not hebb.empty:
            a0.plot(r["lambda"], r["test_error"] / float(hebb.iloc[0]), color=col, lw=0.9, ls="--")
        shown["curves"][str(P)] = {"alpha": alphas[P], "eps0": e0, "lambda": m["lambda"].tolist(),
                                   "test_error": m["test_error"].tolist()}
    a0.set_xscale("log")
    a0.set_yscale("log")
    a0.set_xlabel("λ = ‖w‖/√N")
    a0.set_ylabel("ε/ε₀ (ε₀: error at step 1, Hebb)")
    a0.set_title("(a) learning curves against λ (dashed: replica, ε/ε_Hebb)")
    a0.legend(fontsize=7, frameon=False, ncol=2)
    # (c) the collapse, (b) λ_opt and (d) ε_opt against P: the deep nets' panels
    shown["collapse"] = draw_collapse(a2, panel, label=lambda P: f"α = {P / N:g}")
    a2.set_title("(c) collapse")
    scaling = draw_scaling(a1, a3, panel)
    shown["scaling"] = scaling
    # (b) the perceptron's own: the replica (fixed-norm) λ_opt, where its minimum is interior
    theory_opt = []
    for a, sub in rep.groupby("alpha"):
        sub = sub.sort_values("lambda")
        i = int(np.argmin(sub["test_error"].to_numpy()))
        if 0 < i < len(sub) - 1:
            theory_opt.append((float(a), float(sub["lambda"].iloc[i]), float(sub["test_error"].iloc[i])))
    if theory_opt:
        t = np.array(theory_opt)
        a1.plot(t[:, 0] * N, t[:, 1], "x", color="tab:blue", ms=7, mew=1.5, zorder=4,
                label="replica λ_opt (fixed norm, N→∞)")
    a1.set_ylabel("λ_opt = ‖w‖/√N at the minimum test error")
    a1.set_title("(b) complexity at the optimum")
    a1.legend(fontsize=7, frameon=False)
    Po = [int(P) for P in scaling["lambda_opt"]]
    shown["lambda_opt"] = {"alpha": [P / N for P in Po],
                           "lambda_opt": [scaling["lambda_opt"][str(P)] for P in Po],
                           "replica": [{"alpha": a, "lambda_opt": lam, "eps_opt": e}
                                       for a, lam, e in theory_opt]}
    # (d) the perceptron's own: the Bayes-optimal error and its 0.442/α tail, over the drawn α
    shown["eps_opt"] = {"alpha": [P / N for P in Po], "eps_opt": [scaling["eps_opt"][str(P)] for P in Po]}
    if Po:
        rr = ref_df[(ref_df["alpha"] >= min(Po) / N / 1.2) & (ref_df["alpha"] <= max(Po) / N * 1.2)]
        rr = rr.sort_values("alpha")
        a3.plot(rr["alpha"] * N, rr["bayes"], color="tab:red", ls="--", zorder=2, label="Bayes-optimal")
        a3.plot(rr["alpha"] * N, rr["bayes_asymptote"], color="tab:red", ls=":", lw=0.8, zorder=2,
                label="0.442/α")
        shown["eps_opt"]["bayes"] = {"alpha": rr["alpha"].tolist(), "bayes": rr["bayes"].tolist(),
                                     "bayes_asymptote": rr["bayes_asymptote"].tolist()}
    a3.set_title("(d) optimal error")
    a3.legend(fontsize=7, frameon=False)
    for ax in (a1, a3):
        ax.secondary_xaxis("top", functions=(lambda P: P / N, lambda a: a * N)).set_xlabel("α = P/N")
    fig.tight_layout()
    # plain tick numbers, as on the deep nets' panels reused here
    _save(fig, out, [curves, optima, fit, reference, replica], shown, "perceptron_scaling", tidy=True)
    return shown


# ----------------------------------------------------------------------------------------------
def fig_square_loss(square_in, logistic_in, reference, alpha: float, out) -> dict:
    sq, sq_files = load_runs(square_in, alpha)
    lg, lg_files = load_runs(logistic_in, alpha)
    ref = reference_at(io.read_parquet(reference)[0], alpha)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.4))
    shown = {"alpha": alpha, "reference": ref}
    for name, runs, color in (("logistic", lg, "tab:blue"), ("square", sq, "tab:green")):
        m = seed_mean(runs)
        for df, _ in runs:
            ax.plot(df["lambda"], df["test_error"], color=color, lw=0.5, alpha=0.3)
            bx.plot(df["step"], df["lambda"], color=color, lw=0.5, alpha=0.3)
        ax.plot(m["lambda"], m["test_error"], color=color, lw=1.8, label=f"{name} loss")
        bx.plot(m["step"], m["lambda"], color=color, lw=1.8, label=f"{name} loss")
        shown[name] = {"n_seeds": len(runs), "min_error": float(m["test_error"].min()),
                       "final_error": float(m["test_error"].iloc[-1]),
                       "final_lambda": float(m["lambda"].iloc[-1]),
                       "steps": m["step"].tolist(), "lambda": m["lambda"].tolist(),
                       "test_error": m["test_error"].tolist()}
    _hlines(ax, ref, ("hebb", "bayes"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("λ = ‖w‖/√N")
    ax.set_ylabel("test error ε")
    ax.set_title(f"(a) ε against λ, α = {alpha:g}")
    ax.legend(fontsize=7, frameon=False)
    bx.set_xscale("log")
    bx.set_xlabel("GD step")
    bx.set_ylabel("λ = ‖w‖/√N")
    bx.set_title("(b) λ along training: ~log t (logistic) vs saturation (square)")
    bx.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    _save(fig, out, sq_files + lg_files + [reference], shown, "perceptron_square_loss")
    return shown


# ----------------------------------------------------------------------------------------------
def fig_paper_variables(scaling, validation, runs_in, out) -> dict:
    th, _ = io.read_parquet(scaling)
    th = th[th["converged"]]
    pv = io.read_json(validation)["checks"].get("paper_variables")
    if pv is None:
        raise ValueError(f"{validation}: no checks.paper_variables (validate without --scaling?)")
    runs, files = load_runs(runs_in)
    gd = gd_mean_curves(add_logistic_runs({}, runs))
    alphas = sorted(th["alpha"].unique())
    colors = dict(zip(alphas, plt.get_cmap(CMAP)(np.linspace(0, 0.9, len(alphas)))))
    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(16, 4.8))
    shown = {"theory_alphas": [float(a) for a in alphas], "gd_alphas": sorted(gd),
             "theory": pv["theory"], "gd": pv["gd"], "checks": pv["checks"]}
    for a in alphas:
        s = th[np.isclose(th["alpha"], a)].sort_values("lambda")
        a0.plot(s["lambda"], s["ratio"], color=colors[a], lw=1.2, label=f"α = {a:g}")
        a1.plot(s["lambda"], s["local_slope"], color=colors[a], lw=1.2)
    lam = np.geomspace(th["lambda"].min(), th["lambda"].max(), 200)
    f = limit_curve(lam)
    a0.plot(lam, f, "k-", lw=2, label="α → ∞ limit f(λ)")
    big = lam[lam > 1]
    a0.plot(big, LIMIT_C / np.sqrt(big), "k:", lw=1, label=f"{LIMIT_C:.3f} λ^(−½)")
    a1.plot(lam, local_slope(lam, f), "k-", lw=2, label="α → ∞ limit")
    gcols = plt.get_cmap("autumn")(np.linspace(0, 0.8, max(1, len(gd))))
    for (a, (lam, e, e0)), col in zip(sorted(gd.items()), gcols):
        a0.plot(lam, e / e0, "--", color=col, lw=1, label=f"GD α = {a:g}")
        a1.plot(lam, local_slope(lam, e / e0), "--", color=col, lw=0.8)
    a1.axhline(0.5, color="0.4", ls=":", lw=1)
    g1 = pv["theory"]["gamma1"]
    if g1["window"] and g1["window"][1]:
        a1.axvspan(*g1["window"], color="0.9", zorder=0)
    for ax in (a0, a1):
        ax.set_xscale("log")
        ax.set_xlabel("λ = ‖w‖/√N")
    a0.set_yscale("log")
    a0.set_ylabel("ε/ε₀ (ε₀: Hebb error; GD: error at step 1)")
    a0.set_title("(a) learning curves in the paper's variables")
    a0.legend(fontsize=6, frameon=False, ncol=2)
    txt = "n/a" if g1["value"] is None else f"{g1['value']:.4f} at α = {g1['alpha']:g}"
    a1.set_ylim(-0.2, 0.7)
    a1.set_ylabel("local slope −d log(ε/ε₀)/d log λ")
    a1.set_title(f"(b) local slope; theory γ₁ = {txt} (grey: window)", fontsize=9)
    a1.legend(fontsize=7, frameon=False)
    for name, res, style in (("replica", pv["theory"], "o"), ("GD", pv["gd"], "s")):
        if not res:
            continue
        rows = [r for r in res["per_alpha"] if r["lambda_opt"] is not None]
        if not rows:
            continue
        al = np.array([r["alpha"] for r in rows])
        lo = np.array([r["lambda_opt"] for r in rows])
        g2 = res["gamma2"]
        lab = f"{name}: γ₂ = " + ("n/a" if g2["value"] is None else f"{g2['value']:.3f}")
        if g2.get("se"):
            lab += f" ± {g2['se']:.3f}"
        a2.plot(al, lo, style, mfc="white", label=lab)
        sel = np.isin(al, g2["alphas"])
        if g2["value"] is not None and sel.sum() >= 2:
            c = np.polyfit(np.log(al[sel]), np.log(lo[sel]), 1)
            xs = np.geomspace(al[sel].min(), al[sel].max(), 20)
            a2.plot(xs, np.exp(np.polyval(c, np.log(xs))), "-", lw=1, color="0.3")
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel("α = P/N")
    a2.set_ylabel("λ_opt")
    gc = pv["checks"].get("gd_gamma2")
    gd_txt = ("" if not gc else
              f"; GD check ({gc['mode']}, ±{gc['tolerance']:.3g}): "
              + ("not asserted" if not gc["asserted"] else ("pass" if gc["pass"] else "FAIL"))
              if gc.get("tolerance") is not None else f"; GD check ({gc['mode']}): n/a")
    a2.set_title(f"(c) λ_opt against α (lines: fits over the γ₂ range){gd_txt}", fontsize=8)
    a2.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    _save(fig, out, [scaling, validation] + files, shown, "perceptron_paper_variables")
    return shown


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.perceptron.figures",
                                 description="Perceptron figures (PNG + <out>.json sidecar).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("trajectory", help="free-norm trajectory over the fixed-norm curve at one α")
    t.add_argument("--runs", nargs="+", required=True, help="trajectory files or directories")
    t.add_argument("--fixed-norm", required=True)
    t.add_argument("--reference", required=True)
    t.add_argument("--replica", required=True)
    t.add_argument("--alpha", type=float, required=True)
    t.add_argument("--out", required=True)
    s = sub.add_parser("scaling", help="ε/ε₀ vs λ, λ_opt vs α, collapse, ε_opt vs α")
    add_aggregate_arguments(s)
    s.add_argument("--reference", required=True)
    s.add_argument("--replica", required=True)
    s.add_argument("--N", type=int, required=True, help="input dimension (α = P/N)")
    s.add_argument("--out", required=True)
    q = sub.add_parser("square-loss", help="the square-loss counterexample at one α")
    q.add_argument("--square", nargs="+", required=True, help="square-loss trajectories or dirs")
    q.add_argument("--logistic", nargs="+", required=True, help="logistic trajectories or dirs")
    q.add_argument("--reference", required=True)
    q.add_argument("--alpha", type=float, required=True)
    q.add_argument("--out", required=True)
    pv = sub.add_parser("paper-variables", help="ε/ε₀ vs absolute λ, local slope, λ_opt vs α")
    pv.add_argument("--scaling", required=True, help="Parquet from `perceptron theory-scaling`")
    pv.add_argument("--validation", required=True, help="validation.json with paper_variables")
    pv.add_argument("--runs", nargs="+", required=True, help="trajectory files or directories")
    pv.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "paper-variables":
        fig_paper_variables(args.scaling, args.validation, args.runs, args.out)
    elif args.cmd == "trajectory":
        fig_trajectory(args.runs, args.fixed_norm, args.reference, args.replica, args.alpha, args.out)
    elif args.cmd == "scaling":
        fig_scaling(args.curves, args.optima, args.fit, args.reference, args.replica, args.N, args.out)
    else:
        fig_square_loss(args.square, args.logistic, args.reference, args.alpha, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
