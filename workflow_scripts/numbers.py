"""Every number the paper text quotes, in one TSV and as LaTeX macros, each with its source file.

Why: numbers typed into a manuscript drift from the results. This module reads fit.json files and
writes, for each fit, the exponents γ₁, γ₂, γ_pred, γ_meas, γ_pred − γ_meas and the prefactors k₁,
k₂ (point estimate, bootstrap interval ends, standard error), the γ₁ window, the P range used and
the bootstrap count: the numbers of Table 1 and of the text. Each row names its source file, the
source's sha256 and the place in it (a JSON pointer), so ``python -m workflow_scripts.audit
numbers.tsv --number gammaPredCnnMnist`` can walk from any macro back to the trajectories.

Macro names: quantity + experiment (omitted for ``main``) + measure (omitted for the default
``spectral_complexity``, and ``lambda`` of the perceptron) + arch + dataset + field (nothing for the
point estimate, ``Low`` / ``High`` for the interval ends, ``Se``). Digits are spelled out (LaTeX
macro names are letters only): ``\\gammaPredCnnMnist``, ``\\gammaPredCnnCifarTenLow``,
``\\gammaOneWdOneEThreeResnetCifarTen``. Two numbers that would get the same name are an error.

TSV columns: key, macro, value (full precision, empty if undefined), text (as printed by the
macro), experiment, arch, dataset, measure, quantity, field, status, paper (the published value,
Table 1 of arXiv:2505.13230, where there is one), source, source_sha256, pointer.
"""
from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path

from . import io, provenance
from .files import sha256_file
from .provenance import fit_identity

COLUMNS = ("key", "macro", "value", "text", "experiment", "arch", "dataset", "measure", "quantity",
           "field", "status", "paper", "source", "source_sha256", "pointer")
# (fit.json estimate, macro stem); the order is the TSV's
MACRO_STEMS = (("gamma1", "gammaOne"), ("gamma2", "gammaTwo"), ("gamma_pred", "gammaPred"),
               ("gamma_meas", "gammaMeas"), ("gamma_pred_minus_meas", "gammaDiff"), ("k1", "kOne"),
               ("k2", "kTwo"))
FIELDS = (("value", ""), ("ci_low", "Low"), ("ci_high", "High"), ("se", "Se"))
DEFAULT_MEASURES = ("spectral_complexity", "lambda")
DEFAULT_EXPERIMENT = "main"
UNITS = ("Zero One Two Three Four Five Six Seven Eight Nine Ten Eleven Twelve Thirteen Fourteen "
         "Fifteen Sixteen Seventeen Eighteen Nineteen").split()
TENS = "_ _ Twenty Thirty Forty Fifty Sixty Seventy Eighty Ninety".split()


def words(n: int) -> str:
    """12 -> 'Twelve', 100 -> 'OneHundred', 48000 -> 'FortyEightThousand' (for macro names)."""
    if n < 20:
        return UNITS[n]
    if n < 100:
        return TENS[n // 10] + (UNITS[n % 10] if n % 10 else "")
    for size, name in ((10 ** 9, "Billion"), (10 ** 6, "Million"), (1000, "Thousand"), (100, "Hundred")):
        if n >= size:
            return words(n // size) + name + (words(n % size) if n % size else "")
    raise AssertionError(n)


def camel(name: str) -> str:
    """'cifar10' -> 'CifarTen', 'wd1e-3' -> 'WdOneEThree', 'spectral_complexity' -> 'SpectralComplexity'."""
    parts = re.findall(r"[A-Za-z]+|\d+", str(name))
    return "".join(words(int(p)) if p.isdigit() else p[0].upper() + p[1:] for p in parts)


def macro_name(stem: str, ident: dict, suffix: str) -> str:
    parts = [stem]
    if ident["experiment"] != DEFAULT_EXPERIMENT:
        parts.append(camel(ident["experiment"]))
    if ident["measure"] not in DEFAULT_MEASURES:
        parts.append(camel(ident["measure"]))
    for k in ("arch", "dataset"):
        c = camel(ident[k])
        if c != parts[-1]:  # the perceptron: experiment and arch are both "perceptron"
            parts.append(c)
    return "".join(parts) + suffix


def fmt(v, kind: str, digits: int) -> str:
    """The text a macro prints: exponents with ``digits`` decimals, prefactors with 3 significant."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "--"
    if kind == "int":
        return str(int(v))
    if kind == "sig":
        return f"{v:.3g}"
    if kind == "plain":
        return f"{v:g}"
    return f"{v:.{digits}f}"


def rows_for_fit(path: Path, digits: int, shown_path: str | None = None) -> list[dict]:
    """The numbers of one fit.json, each with its pointer into that file."""
    from .table import PUBLISHED

    fit = io.read_json(path)
    src = shown_path or str(path)
    ident = fit_identity(fit)
    sha = sha256_file(path)
    status = str(fit.get("status"))
    pub = PUBLISHED.get((ident["arch"], ident["dataset"]), {})
    base = {**ident, "status": status, "source": src, "source_sha256": sha}
    key0 = "/".join(ident[k] for k in ("experiment", "arch", "dataset", "measure"))
    out = []

    def add(quantity, fld, value, pointer, text, macro, paper=""):
        out.append({**base, "key": f"{key0}/{quantity}.{fld}", "macro": macro, "quantity": quantity,
                    "field": fld, "pointer": pointer, "text": text, "paper": paper,
                    "value": "" if value is None or (isinstance(value, float) and math.isnan(value))
                    else repr(value)})

    est = fit.get("estimates") or {}
    for q, stem in MACRO_STEMS:
        kind = "sig" if q.startswith("k") else "fixed"
        for fld, suffix in FIELDS:
            v = (est.get(q) or {}).get(fld)
            paper = pub.get(q, "") if fld == "value" else ""
            add(q, fld, v, f"/estimates/{q}/{fld}" if est else "/estimates", fmt(v, kind, digits),
                macro_name(stem, ident, suffix), "" if paper == "" else repr(paper))
    st = fit.get("settings") or {}
    # window: auto is a rule, not numbers; the numbers are what it resolved to on the data
    # (absent when the fit could not resolve it)
    wkey = "window_resolved" if st.get("window") == "auto" else "window"
    window = st.get(wkey) or {}
    for k, stem in (("x_left", "windowLeft"), ("x_right", "windowRight")):
        v = window.get(k)
        add(f"window_{k}", "value", v, f"/settings/{wkey}/{k}" if window else f"/settings/{wkey}",
            fmt(v, "plain", digits),
            macro_name(stem, ident, ""))
    n = (st.get("bootstrap") or {}).get("n")
    add("bootstrap_n", "value", n, "/settings/bootstrap/n", fmt(n, "int", digits),
        macro_name("nBoot", ident, ""))
    used = (fit.get("P_used") or {}).get("gamma_meas") or []
    for q, stem, v in (("P_min", "PMin", min(used) if used else None),
                       ("P_max", "PMax", max(used) if used else None)):
        pointer = f"/P_used/gamma_meas/{used.index(v)}" if used else "/P_used"
        add(f"{q}_used", "value", v, pointer, fmt(v, "int", digits),
            macro_name(stem, ident, ""))
    return out


def build(fits, digits: int = 2) -> list[dict]:
    rows = []
    for p in fits:
        rows += rows_for_fit(Path(p), digits, str(p))
    seen: dict[str, str] = {}
    for r in rows:
        if r["macro"] in seen:
            raise ValueError(f"two numbers get the macro \\{r['macro']}: {seen[r['macro']]} and {r['key']} "
                             "(rename an experiment)")
        seen[r["macro"]] = r["key"]
    return rows


def macro_line(macro: str, text: str) -> str:
    """The line of numbers.tex that defines one macro."""
    return f"\\newcommand{{\\{macro}}}{{{text}}}"


def to_tex(rows: list[dict]) -> tuple[str, dict]:
    """The macros file, and per macro the line defining it (1-based) exactly as printed."""
    code = provenance.code_version()
    out = ["% Numbers quoted in the paper: written by python -m workflow_scripts.numbers; do not edit.",
           "% Audit any of them: python -m workflow_scripts.audit <this file> --number <macro name>",
           f"% code: git commit {code['git_commit']}{' (dirty)' if code['git_dirty'] else ''}, "
           f"package sha256 {code['package_hash']}", ""]
    last, printed = None, {}
    for r in rows:
        if r["source"] != last:
            out.append(f"% {r['source']} (sha256 {r['source_sha256']}), status {r['status']}")
            last = r["source"]
        out.append(macro_line(r["macro"], r["text"]))
        printed[r["macro"]] = {"line": len(out), "text": out[-1]}
    return "\n".join(out) + "\n", printed


def write(fits, out_tsv, out_tex, out_record, digits: int = 2) -> list[dict]:
    """The TSV, the macros, and last their record (both files' sha256, each macro's line)."""
    if not fits:
        raise ValueError("no fit.json files given")
    rows = build(fits, digits)
    with io.atomic_path(out_tsv, ".tsv") as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    text, printed = to_tex(rows)
    with io.atomic_path(out_tex, ".tex") as tmp:
        tmp.write_text(text)
    io.write_json({**provenance.record("numbers", [r["experiment"] for r in rows], outputs=[out_tsv, out_tex],
                                       printed={Path(out_tex).name: printed}),
                   "digits": digits, "provenance": provenance.provenance(inputs=fits, stage="numbers")},
                  out_record)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.numbers",
                                 description="The numbers the paper quotes (exponents, intervals, Table 1) "
                                             "from fit.json files: a TSV with each number's source file and "
                                             "sha256, and LaTeX macros (\\gammaPredCnnMnist, ...).")
    ap.add_argument("fits", nargs="+",
                    help="fit.json files (results/fit/<experiment>/<arch>/<dataset>/<measure>/fit.json)")
    ap.add_argument("--out-tsv", required=True, help="TSV to write (results/numbers/numbers.tsv)")
    ap.add_argument("--out-tex", required=True, help="LaTeX macros to write (results/numbers/numbers.tex)")
    ap.add_argument("--out-record", required=True,
                    help="the record to write (results/numbers/numbers.json): both files' sha256, "
                         "the line of each macro, the fits read")
    ap.add_argument("--digits", type=int, default=2,
                    help="decimals of the exponents in the macros (default 2)")
    args = ap.parse_args(argv)
    try:
        rows = write(args.fits, args.out_tsv, args.out_tex, args.out_record, args.digits)
    except ValueError as e:
        print(f"numbers: error: {e}", file=sys.stderr)
        return 2
    print(f"{len(rows)} numbers from {len(args.fits)} fits", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
