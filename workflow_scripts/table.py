"""Table 1: the fitted exponents per (arch, dataset) beside the paper's published values.

Why: the paper's central comparison is γ_pred = γ₁γ₂ against γ_meas; this module renders it from
fit.json files (``fit.py``) as CSV (every number at full precision, for machines), Markdown (for the
README and reviews) and LaTeX (booktabs, for the manuscript), with a ``<prefix>.json`` sidecar that
holds the rows and the provenance (each fit.json with its sha256). A fit whose status is
"impossible" still gets its row, with the reason, so a missing exponent is visible, not silent.
Each row also says how many of its cells (seeds × P) have a minimum censored by the end of training
(``aggregate.censored_optimum``), whether the fit left them out (``analysis.censored``) and which P
values that dropped.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from . import io, provenance
from .plot_style import ARCH_LABEL, ARCH_ORDER, DATASET_LABEL, DATASET_ORDER

# The paper's Table 1 (arXiv:2505.13230): γ_pred, γ_meas and their σ, keyed (arch, dataset).
PUBLISHED = {
    ("cnn", "mnist"): {"gamma_pred": 0.60, "gamma_meas": 0.55, "sigma": 0.09},
    ("cnn", "cifar10"): {"gamma_pred": 0.28, "gamma_meas": 0.25, "sigma": 0.07},
    ("cnn", "cifar100"): {"gamma_pred": 0.16, "gamma_meas": 0.16, "sigma": 0.03},
    ("resnet", "mnist"): {"gamma_pred": 0.57, "gamma_meas": 0.69, "sigma": 0.08},
    ("resnet", "cifar10"): {"gamma_pred": 0.54, "gamma_meas": 0.56, "sigma": 0.04},
    ("resnet", "cifar100"): {"gamma_pred": 0.31, "gamma_meas": 0.37, "sigma": 0.03},
    ("vit", "mnist"): {"gamma_pred": 0.47, "gamma_meas": 0.54, "sigma": 0.03},
    ("vit", "cifar10"): {"gamma_pred": 0.23, "gamma_meas": 0.21, "sigma": 0.03},
    ("vit", "cifar100"): {"gamma_pred": 0.14, "gamma_meas": 0.12, "sigma": 0.04},
}
# the values a published file stores (workflow_scripts/published.py), as (column, stored key)
STORED_COLUMNS = (("stored_gamma1", "gamma_1"), ("stored_err_gamma1", "err_gamma_1"), ("stored_k1", "k1"),
                  ("stored_gamma2", "gamma_2"), ("stored_err_gamma2", "err_gamma_2"), ("stored_k2", "k2"),
                  ("stored_gamma_pred", "gamma_pred"), ("stored_C2", "C2"), ("stored_factor", "factor"),
                  ("stored_min_P", "min_P"))
EXPONENTS = ("gamma1", "gamma2", "gamma_pred", "gamma_meas", "gamma_pred_minus_meas")
HEAD_MD = {"gamma1": "γ₁", "gamma2": "γ₂", "gamma_pred": "γ_pred", "gamma_meas": "γ_meas",
           "gamma_pred_minus_meas": "γ_pred − γ_meas"}
HEAD_TEX = {"gamma1": r"$\gamma_1$", "gamma2": r"$\gamma_2$", "gamma_pred": r"$\gamma_\mathrm{pred}$",
            "gamma_meas": r"$\gamma_\mathrm{meas}$",
            "gamma_pred_minus_meas": r"$\gamma_\mathrm{pred}-\gamma_\mathrm{meas}$"}


def rows_from_fits(paths, sensitivity=()) -> pd.DataFrame:
    """One row per (fit.json, estimator): group, status, every exponent with its interval, the
    paper's values, the values stored in a published file, and (given sensitivity.json files) the
    share of the sensitivity grid where the γ_pred and γ_meas intervals overlap."""
    overlap = {}
    for p in sensitivity:
        sens = io.read_json(p)
        g = sens.get("group") or {}
        for est, share in (sens.get("overlap_share") or {}).items():
            overlap[(g.get("experiment"), g.get("arch"), g.get("dataset"), g.get("measure"), est)] = share
    rows = []
    for p in paths:
        fit = io.read_json(p)
        g = fit.get("group") or {}
        stored = (fit.get("published") or {}).get("stored") or {}
        by = fit.get("by_estimator") or {fit.get("estimator") or "ours": fit}
        for estimator, res in by.items():
            row = {"experiment": g.get("experiment"), "arch": g.get("arch"), "dataset": g.get("dataset"),
                   "measure": g.get("measure"), "estimator": estimator, "status": res.get("status"),
                   "reason": res.get("reason") or "", "fit": str(p)}
            est = res.get("estimates") or {}
            for k in EXPONENTS:
                e = est.get(k) or {}
                for field in ("value", "ci_low", "ci_high", "se", "se_ols"):
                    v = e.get(field)
                    row[f"{k}_{field}" if field != "value" else k] = math.nan if v is None else float(v)
            row["n_P"] = len((res.get("P_used") or {}).get("gamma_meas") or [])
            row.update(censored_counts(res.get("censored") or fit.get("censored")))
            # the paper's Table 1 beside Table 1's rows, not beside a published appendix file's
            appendix = (fit.get("published") or {}).get("table") not in (None, "table1")
            pub = {} if appendix else PUBLISHED.get((row["arch"], row["dataset"]), {})
            row["paper_gamma_pred"] = pub.get("gamma_pred", math.nan)
            row["paper_gamma_meas"] = pub.get("gamma_meas", math.nan)
            row["paper_sigma"] = pub.get("sigma", math.nan)
            for col, name in STORED_COLUMNS:  # every value a published file stored; NaN: not stored
                v = stored.get(name)
                row[col] = math.nan if v is None else float(v)
            row["overlap_share"] = overlap.get((row["experiment"], row["arch"], row["dataset"],
                                                row["measure"], estimator), math.nan)
            rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df["_a"] = df["arch"].map(ARCH_ORDER).fillna(99)
        df["_d"] = df["dataset"].map(DATASET_ORDER).fillna(99)
        df = df.sort_values(["experiment", "measure", "_a", "_d", "arch", "dataset", "estimator"],
                            na_position="last").drop(columns=["_a", "_d"]).reset_index(drop=True)
    return df


def censored_counts(block: dict | None) -> dict:
    """A fit's ``censored`` block as table columns: cells, censored cells, setting, dropped P."""
    block = block or {}
    per_P = block.get("per_P") or []
    return {"n_cells": sum(r["seeds"] for r in per_P), "n_censored": sum(r["censored"] for r in per_P),
            "censored_setting": block.get("setting") or "",
            "censored_dropped_P": " ".join(str(d["P"]) for d in block.get("dropped_P") or [])}


def _censored_text(r) -> str:
    """'3/60 excluded (P 75 dropped)': censored cells of the row, and what the fit did with them."""
    if not r.get("n_cells"):
        return "—"
    s = f"{int(r['n_censored'])}/{int(r['n_cells'])}"
    if r["n_censored"] and r.get("censored_setting"):
        s += f" {r['censored_setting']}d"
    if r.get("censored_dropped_P"):
        s += f" (P {r['censored_dropped_P'].replace(' ', ', ')} dropped)"
    return s


def _extra(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Optional columns present in this table: (column, Markdown head, LaTeX head)."""
    out = []
    if len(df) and df[[c for c, _ in STORED_COLUMNS]].notna().any().any():  # a published table
        out += [("stored_gamma1", "stored γ₁", r"stored $\gamma_1$"),
                ("stored_err_gamma1", "stored σ(γ₁)", r"stored $\sigma(\gamma_1)$"),
                ("stored_gamma2", "stored γ₂", r"stored $\gamma_2$"),
                ("stored_err_gamma2", "stored σ(γ₂)", r"stored $\sigma(\gamma_2)$"),
                ("stored_gamma_pred", "stored γ₁γ₂", r"stored $\gamma_1\gamma_2$"),
                ("stored_k1", "stored k₁", r"stored $k_1$"), ("stored_k2", "stored k₂", r"stored $k_2$"),
                ("stored_C2", "stored C2", r"stored $C_2$"), ("stored_factor", "stored factor", "stored factor"),
                ("stored_min_P", "stored min P", r"stored min $P$")]
    if len(df) and df["overlap_share"].notna().any():
        out.append(("overlap_share", "overlap share", "overlap share"))
    return out


def _fmt(v, lo=None, hi=None, digits=2) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    s = f"{v:.{digits}f}"
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s


def _digits(col: str, digits: int) -> int:
    return 0 if col == "stored_min_P" else digits  # a sample size


def _cells(r, digits):
    return {k: _fmt(r[k], r[f"{k}_ci_low"], r[f"{k}_ci_high"], digits) for k in EXPONENTS}


def _multi(df, col) -> bool:
    return df[col].nunique(dropna=False) > 1


def _lead(df: pd.DataFrame) -> list[str]:
    return [c for c in ("experiment", "measure", "estimator") if len(df) and _multi(df, c)]


def to_markdown(df: pd.DataFrame, digits: int = 2, note: str = "") -> tuple[str, list[dict]]:
    """The Markdown table, and per row of ``df`` the line printing it (1-based) and its exponent
    cells exactly as printed (the record the audit checks)."""
    lead = _lead(df)
    extra = _extra(df)
    head = ([c for c in lead] + ["arch", "dataset"] + [HEAD_MD[k] for k in EXPONENTS]
            + [h for _, h, _ in extra] + ["censored", "paper γ_pred", "paper γ_meas", "paper σ", "status"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    printed = []
    for _, r in df.iterrows():
        c = _cells(r, digits)
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
        cells = ([str(r[x]) for x in lead] + [ARCH_LABEL.get(r["arch"], str(r["arch"])),
                                              DATASET_LABEL.get(r["dataset"], str(r["dataset"]))]
                 + [c[k] for k in EXPONENTS] + [_fmt(r[col], digits=_digits(col, digits)) for col, _, _ in extra]
                 + [_censored_text(r), _fmt(r["paper_gamma_pred"]), _fmt(r["paper_gamma_meas"]),
                    _fmt(r["paper_sigma"]), status.replace("|", "/")])
        lines.append("| " + " | ".join(cells) + " |")
        printed.append({"line": len(lines), "text": lines[-1], "cells": {k: c[k] for k in EXPONENTS}})
    level = "95%"
    lines.append("")
    lines.append(f"Values: point estimate [{level} bootstrap percentile interval, seeds resampled "
                 "within each P]. Paper: Table 1 of arXiv:2505.13230 (γ_pred / γ_meas / σ).")
    lines.append("Censored: cells (seeds × P) whose test-error minimum is at, or within 5% in λ of, "
                 "the last logged point (training stopped before the error turned up), and whether "
                 "the fit excluded or included them (analysis.censored; the authors' estimator "
                 "always includes them).")
    if any(col == "overlap_share" for col, _, _ in extra):
        lines.append("Overlap share: the fraction of the sensitivity grid (windows × γ₁ min P) where "
                     "the γ_pred and γ_meas intervals overlap.")
    if any(col.startswith("stored") for col, _, _ in extra):
        lines.append("Stored: the values saved in the published file by its authors; published "
                     "seed means have no per-seed data, so no bootstrap intervals; — where the file "
                     "stores no such value.")
    if note:
        lines.append(note)
    return "\n".join(lines) + "\n", printed


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                 ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        s = s.replace(a, b)
    return s


def to_latex(df: pd.DataFrame, digits: int = 2, note: str = "") -> tuple[str, list[dict]]:
    """The booktabs table, and per row its line and exponent cells as printed (None where a
    fit-impossible row spans the exponent columns with its reason)."""
    lead = _lead(df)
    extra = _extra(df)
    head = ([_tex_escape(c) for c in lead] + ["Arch.", "Dataset"] + [HEAD_TEX[k] for k in EXPONENTS]
            + [t for _, _, t in extra] + ["censored", r"paper $\gamma_\mathrm{pred}$",
                                          r"paper $\gamma_\mathrm{meas}$", r"paper $\sigma$"])
    out = [r"\begin{tabular}{" + "l" * (len(lead) + 2) + "c" * (len(head) - len(lead) - 2) + "}",
           r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    printed = []
    for _, r in df.iterrows():
        c = _cells(r, digits)
        if r["status"] != "ok":
            span = len(EXPONENTS)
            vals = [r"\multicolumn{%d}{c}{\emph{fit impossible: %s}}" % (span, _tex_escape(r["reason"]))]
            shown = dict.fromkeys(EXPONENTS)
        else:
            vals = [c[k].replace("—", "--") for k in EXPONENTS]
            shown = dict(zip(EXPONENTS, vals))
        vals += [_fmt(r[col], digits=_digits(col, digits)).replace("—", "--") for col, _, _ in extra]
        vals.append(_tex_escape(_censored_text(r)).replace("—", "--"))
        cells = ([_tex_escape(str(r[x])) for x in lead]
                 + [ARCH_LABEL.get(r["arch"], _tex_escape(str(r["arch"]))),
                    DATASET_LABEL.get(r["dataset"], _tex_escape(str(r["dataset"])))]
                 + vals + [_fmt(r["paper_gamma_pred"]).replace("—", "--"),
                           _fmt(r["paper_gamma_meas"]).replace("—", "--"),
                           _fmt(r["paper_sigma"]).replace("—", "--")])
        out.append(" & ".join(cells) + r" \\")
        printed.append({"line": len(out), "text": out[-1], "cells": shown})
    out += [r"\bottomrule", r"\end{tabular}"] + ([f"% {note}"] if note else [])
    return "\n".join(out) + "\n", printed


def write_table(fits, prefix, sensitivity=(), note: str = "") -> pd.DataFrame:
    fits = [Path(p) for p in fits]
    if not fits:
        raise ValueError("no fit.json files given")
    df = rows_from_fits(fits, sensitivity)
    prefix = str(prefix)
    with io.atomic_path(prefix + ".csv") as tmp:
        df.to_csv(tmp, index=False)  # full precision: the CSV is for machines
    printed = {}
    for ext, render in ((".md", to_markdown), (".tex", to_latex)):
        text, rows = render(df, note=note)
        with io.atomic_path(prefix + ext) as tmp:
            tmp.write_text(text)
        printed[Path(prefix + ext).name] = [{"fit": f, "estimator": e, **row} for f, e, row
                                            in zip(df["fit"], df["estimator"], rows)]
    rendered = [prefix + ext for ext in (".csv", ".md", ".tex")]
    io.write_json({**provenance.record("table", list(df["experiment"]), outputs=rendered, printed=printed),
                   "rows": df.astype(object).where(df.notna(), None).to_dict("records"),
                   "published": {f"{a}/{d}": v for (a, d), v in PUBLISHED.items()},
                   "provenance": provenance.provenance(inputs=[*fits, *map(Path, sensitivity)],
                                                       stage="table")},
                  prefix + ".json")
    return df


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.table",
                                 description="Table 1 (CSV, Markdown, LaTeX + JSON sidecar) from fit.json files.")
    ap.add_argument("fits", nargs="+", help="fit.json files (one per arch, dataset)")
    ap.add_argument("--sensitivity", nargs="*", default=[],
                    help="sensitivity.json files: adds the overlap-share column")
    ap.add_argument("--out-prefix", required=True,
                    help="writes <prefix>.csv, <prefix>.md, <prefix>.tex and <prefix>.json")
    ap.add_argument("--note", default="", help="a line printed under the table (what its rows are)")
    args = ap.parse_args(argv)
    df = write_table(args.fits, args.out_prefix, args.sensitivity, args.note)
    print(f"{len(df)} rows, {(df['status'] == 'ok').sum()} fitted", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
