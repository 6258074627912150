"""One number of an output: which number ``--row``/``--number`` name, and whether it is the number in
the file it came from.

Why: the audit (the command, ``audit.py``) can follow one printed number back to its source. This
module parses the selectors, picks the one row or panel they name, reads the number where it is printed
(a table's CSV, Markdown and LaTeX cells; a figure's recorded panel; a numbers file's TSV row) and the
number in its source (the fit, the aggregate's trajectory), and compares them: exactly at machine
precision, within the printed rounding in the strings. It never walks the chain: the ``Auditor``
(``audit_chain.py``) does that, and is given here only to read records and resolve and show paths.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from . import io
from .provenance import IDENTITY


class RecordReader(Protocol):
    """What choosing a number asks of the walker (``audit_chain.Auditor``), which imports this
    module: how to show a path, find a file, and read a record and one of its outputs."""

    def show(self, p: Path) -> str: ...

    def resolve(self, recorded: str) -> Path: ...

    def record_of(self, path: Path) -> tuple[Path, dict]: ...

    def output_of(self, rec: dict, suffix: str) -> Path: ...


PER_P = ("eps_opt", "lambda_opt", "lambda_star_geomean", "n_seeds", "n_window_points")
FIELDS = ("ci_low", "ci_high", "se", "value")
OPTIMA_NUMBERS = ("lambda_star", "eps_star", "step_star")


class UsageError(ValueError):
    """The request cannot be answered (unknown file kind, selector matching nothing): exit 2."""


def same_number(a, b, rtol: float = 0.0) -> bool:
    """Equal floats (None and NaN are the same 'no value'); rtol=0 means bit-for-bit."""
    na = a is None or (isinstance(a, float) and math.isnan(a))
    nb = b is None or (isinstance(b, float) and math.isnan(b))
    if na or nb:
        return na and nb
    a, b = float(a), float(b)
    return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))


def printed_matches(text: str, value) -> bool:
    """Does ``text`` (a number printed with d decimals) equal ``value`` rounded to d decimals?"""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    m = re.fullmatch(r"-?\d+(?:\.(\d+))?", text.strip())
    if not m:
        return False
    d = len(m.group(1) or "")
    return abs(float(text) - float(value)) <= 0.5 * 10.0 ** (-d) * (1 + 1e-9) + 1e-12


def parse_number(name: str) -> tuple[str, str, int | None]:
    """'gamma_pred_ci_low' -> ('gamma_pred', 'ci_low', None); 'eps_opt@600' -> ('eps_opt', 'value', 600)."""
    base, _, at = name.partition("@")
    P = None
    if at:
        at = at.removeprefix("P").removeprefix("=")
        if not at.isdigit():
            raise UsageError(f"--number {name!r}: after '@' give a sample size P (eps_opt@600)")
        P = int(at)
    fld = "value"
    for f in FIELDS:
        for sep in ("_", "."):
            if base.endswith(sep + f):
                base, fld = base[: -len(f) - 1], f
                break
        if fld != "value":
            break
    return base, fld, P


def select_one(candidates: list[tuple[dict, object]], row: str | None, what: str):
    """The one candidate whose identity matches ``row`` (contiguous path components)."""
    if row is None:
        if len(candidates) == 1:
            return candidates[0][1]
        raise UsageError(f"{what} has {len(candidates)} rows: choose one with --row "
                         + ", ".join("/".join(map(str, i.values())) for i, _ in candidates))
    from .fit import ESTIMATORS  # the fitting code only where a number is chosen (start-up)

    want = [p for p in row.strip("/").split("/") if p]
    hits = []
    for ident, obj in candidates:
        parts, w = [str(ident[k]) for k in IDENTITY], want
        if "estimator" in ident:  # a table with both estimators: the row may end in one
            if w and w[-1] in ESTIMATORS:
                if w[-1] != ident["estimator"]:
                    continue
                w = w[:-1]
        if any(parts[i:i + len(w)] == w for i in range(len(parts) - len(w) + 1)):
            hits.append((ident, obj))
    if len(hits) != 1:  # list the matches (all rows when none matches)
        listed = ", ".join("/".join(map(str, i.values())) for i, _ in (hits or candidates))
        raise UsageError(f"--row {row!r} matches {len(hits)} of the rows of {what} "
                         f"({'matching: ' if hits else 'rows: '}{listed}); give more components"
                         + (" (a table with both estimators: end with ours or authors)"
                            if hits and "estimator" in hits[0][0] else ""))
    return hits[0][1]


def fit_value(fit: dict, quantity: str, fld: str, P: int | None, where: str):
    """The number (quantity, field[, P]) of a fit.json, with a JSON-pointer-like description."""
    from .fit import ESTIMATES

    if P is None:
        if quantity not in ESTIMATES:
            raise UsageError(f"--number {quantity!r}: a fit holds {', '.join(ESTIMATES)} "
                             f"(or a per-P quantity {', '.join(PER_P)} with @P)")
        if fit.get("status") != "ok":
            return None, f"(no estimates: fit status {fit.get('status')!r}, {fit.get('reason')})"
        return fit["estimates"][quantity][fld], f"estimates.{quantity}.{fld}"
    if quantity not in PER_P:
        raise UsageError(f"--number {quantity}@{P}: per-P quantities are {', '.join(PER_P)}")
    for r in fit.get("per_P") or []:
        if int(r["P"]) == P:
            if fld == "value":
                return r.get(quantity), f"per_P[P={P}].{quantity}"
            if fld == "se":
                raise UsageError("per-P quantities have intervals (ci_low, ci_high), not se")
            ci = r.get(f"{quantity}_ci") or [None, None]
            return ci[0 if fld == "ci_low" else 1], f"per_P[P={P}].{quantity}_ci"
    raise UsageError(f"{where} has no P={P} (has {[r['P'] for r in fit.get('per_P') or []]})")


def read_json(path: Path):
    """``io.read_json``; a file that cannot be read is a UsageError (exit 2), not a crash."""
    try:
        return io.read_json(path)
    except OSError as e:
        raise UsageError(f"{path}: cannot read JSON ({e})") from None


def json_pointer(obj, pointer: str):
    """Resolve '/a/b/0' in nested dicts and lists (RFC 6901, without escapes)."""
    for part in [p for p in pointer.split("/") if p]:
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def read_numbers_tsv(path: Path) -> list[dict]:
    """The numbers file's TSV, a dict a row (columns: ``numbers.COLUMNS``)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


# ----------------------------------------------------------------------------------------------
# one number: where it is printed, which file it came from. Each kind of file with numbers has a
# chooser ``(auditor, path, row, number) -> (Number, problems)``; audit_chain.KINDS names them.

@dataclass
class Number:
    label: str
    printed: list[tuple[str, object]]   # (where, value as printed there)
    source: Path                        # fit.json or aggregate it came from
    source_field: str
    value: object                       # the value in the source
    # what the walk below the file follows: the file a table's or figure's number came from, the key
    # of a numbers file's row; None: all of the file's inputs
    follow: set | None = None


def table_number(aud: RecordReader, path: Path, row: str | None, number: str) -> tuple[Number, list[str]]:
    """One exponent of one table row: the CSV at full precision and the JSON rows exactly, the
    Markdown and LaTeX cells (as the record says they were printed; ``check_record`` checks that
    the files still print those lines) within the rounding."""
    from . import table as tab

    q, fld, P = parse_number(number)
    if P is not None or q not in tab.EXPONENTS:
        raise UsageError(f"--number {number!r}: a table column holds one of {', '.join(tab.EXPONENTS)} "
                         "with an optional _ci_low / _ci_high / _se")
    side, rec = aud.record_of(path)
    csv_path = aud.output_of(rec, ".csv")
    df = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])  # pandas >= 3 reads floats exactly
    by_est = "estimator" in df and df.groupby("fit")["estimator"].nunique().max() > 1
    cands = [({**{k: str(r[k]) for k in IDENTITY}, **({"estimator": r["estimator"]} if by_est else {})}, r)
             for _, r in df.iterrows()]
    r = select_one(cands, row, aud.show(csv_path))
    col = q if fld == "value" else f"{q}_{fld}"
    fit_path = aud.resolve(str(r["fit"]))
    if not fit_path.exists():
        raise UsageError(f"{aud.show(csv_path)}: the row's fit {r['fit']} does not exist")
    fit = read_json(fit_path)
    estimator = r.get("estimator") if "estimator" in df else None
    if fit.get("by_estimator") and estimator in fit["by_estimator"]:
        fit = fit["by_estimator"][estimator]  # one row per estimator of a fit with both
        where_prefix = f"by_estimator.{estimator}."
    else:
        where_prefix = ""
    want, where = fit_value(fit, q, fld, None, aud.show(fit_path))
    where = where_prefix + where
    v = r[col]
    printed = [(f"{aud.show(csv_path)} column {col}", None if pd.isna(v) else float(v))]
    problems = []
    if not same_number(printed[0][1], want):
        problems.append(f"value mismatch: {aud.show(csv_path)} row {r['fit']} column {col} = "
                        f"{printed[0][1]!r}, {aud.show(fit_path)} {where} = {want!r}")
    for row_d in rec.get("rows") or []:
        if row_d.get("fit") == r["fit"] and row_d.get("estimator", estimator) == estimator \
                and not same_number(row_d.get(col), want):
            problems.append(f"value mismatch: {aud.show(side)} row {r['fit']} {col} = "
                            f"{row_d.get(col)!r}, {aud.show(fit_path)} {where} = {want!r}")
    idx = {"value": 0, "ci_low": 1, "ci_high": 2}.get(fld)
    for name, entries in (rec.get("printed") or {}).items():
        f = side.with_name(name)
        e = entries[int(r.name)] if int(r.name) < len(entries) else {}
        if idx is None or not f.exists():
            continue
        if e.get("fit") != r["fit"] or e.get("estimator") != r.get("estimator"):
            problems.append(f"{aud.show(side)}: its record of {name} row {int(r.name) + 1} is not the "
                            f"row of {r['fit']} in {aud.show(csv_path)}")
            continue
        cell = e["cells"].get(q)  # that the file still prints this line: check_record, for every row
        nums = re.findall(r"-?\d+(?:\.\d+)?", cell or "")
        shown = nums[idx] if len(nums) > idx else None
        printed.append((f"{aud.show(f)} line {e['line']} cell {cell!r}", shown))
        ok = shown is None if want is None else shown is not None and printed_matches(shown, want)
        if not ok:
            problems.append(f"value mismatch: {aud.show(f)} prints {cell!r} for {col} of "
                            f"{r['fit']}; {aud.show(fit_path)} {where} = {want!r}")
    label = "/".join(str(r[k]) for k in IDENTITY)
    return Number(f"{col} of {label}", printed, fit_path, where, want, {fit_path.resolve()}), problems


def figure_number(aud: RecordReader, path: Path, row: str | None, number: str) -> tuple[Number, list[str]]:
    side, meta = aud.record_of(path)
    panels = meta.get("panels")
    if not panels:
        raise UsageError(f"{aud.show(side)} records no panels; audit the figure without --number")
    cands = [({k: str(p["group"].get(k)) for k in IDENTITY}, p) for p in panels]
    panel = select_one(cands, row, aud.show(side))
    q, fld, P = parse_number(number)
    shown = panel["shown"]
    fit_path = next((aud.resolve(x) for x in panel["inputs"] if x.endswith("fit.json")), None)
    if P is None:
        est = shown.get(q) if isinstance(shown.get(q), list) else (shown.get("fit") or {}).get(q)
        if est is None or fld == "se":
            raise UsageError(f"{aud.show(side)} does not show {number} (shows "
                             f"{sorted(k for k, v in shown.items() if isinstance(v, list))}"
                             f"{sorted((shown.get('fit') or {}))})")
        got = est[{"value": 0, "ci_low": 1, "ci_high": 2}[fld]]
    else:
        per = (shown.get("per_P") or {}).get(str(P)) or {}
        if q in per and fld == "value":
            got = per[q]
        elif isinstance(shown.get(q), dict) and fld == "value":
            got = shown[q].get(str(P))
        else:
            raise UsageError(f"{aud.show(side)} does not show {number}")
    printed = [(f"{aud.show(side)} (numbers drawn)", got)]
    problems = []
    if fit_path is not None:
        want, where = fit_value(read_json(fit_path), q, fld, P, aud.show(fit_path))
        source = fit_path
    else:  # no fit: the figure marked each mean curve's minimum; the figure's own code, again
        from .figures import Panel

        if q not in ("lambda_opt", "eps_opt"):
            raise UsageError(f"{number}: this figure has no fit; only lambda_opt@P and eps_opt@P")
        curves, optima = (aud.resolve(next(x for x in panel["inputs"] if Path(x).name == f"{n}.parquet"))
                          for n in ("curves", "optima"))
        want = Panel(curves, optima).optimum(P)[0 if q == "lambda_opt" else 1]
        where, source = f"refined minimum of the mean curve of P={P} (figures.Panel.optimum)", curves
    if not same_number(got, want, rtol=1e-12):
        problems.append(f"value mismatch: {aud.show(side)} shows {number} = {got!r}, "
                        f"{aud.show(source)} {where} = {want!r}")
    ident = next(i for i, p in cands if p is panel)
    return Number(f"{number} in panel {'/'.join(ident[k] for k in IDENTITY)}", printed, source, where,
                  want, {source.resolve()}), problems


def fit_number(aud: RecordReader, path: Path, row: str | None, number: str) -> tuple[Number, list[str]]:
    """A number of a fit.json as it stands (a fit is one row: ``row`` is not read)."""
    q, fld, P = parse_number(number)
    want, where = fit_value(read_json(path), q, fld, P, aud.show(path))
    return Number(number, [(aud.show(path), want)], path, where, want), []


def aggregate_number(aud: RecordReader, path: Path, row: str | None, number: str) -> tuple[Number, list[str]]:
    """λ*, ε*, step* of one seed, recomputed from its trajectory."""
    from .aggregate import reduce_trajectory
    from .trajectory import read_trajectory

    if number not in OPTIMA_NUMBERS or not row:
        raise UsageError(f"an aggregate's numbers: --row P<P>/seed<s> --number one of {OPTIMA_NUMBERS}")
    m = re.fullmatch(r"P?(\d+)/(?:seed)?(\d+)", row.strip("/"))
    if not m:
        raise UsageError(f"--row {row!r}: give P<P>/seed<s>, e.g. P600/seed0")
    P, seed = int(m.group(1)), int(m.group(2))
    optima_path = path.with_name("optima.parquet")
    df, meta = io.read_parquet(optima_path)
    hit = df[(df["P"] == P) & (df["seed"] == seed)]
    if len(hit) != 1:
        raise UsageError(f"{aud.show(optima_path)} has no P={P} seed={seed}")
    got = hit.iloc[0][number]
    got = None if pd.isna(got) else float(got)
    traj = aud.resolve(hit.iloc[0]["path"])
    problems = []
    if not traj.exists():
        return Number(f"{number} of P{P}/seed{seed}", [(aud.show(optima_path), got)], traj, "", None), \
            [f"missing input: {aud.show(traj)} (row P{P}/seed{seed} of {aud.show(optima_path)})"]
    tdf, tmeta = read_trajectory(traj)
    sc = reduce_trajectory(tdf, tmeta, meta["group"]["measure"], str(traj))
    want = {"lambda_star": sc.lambda_star, "eps_star": sc.eps_star,
            "step_star": sc.step_star}[number] if sc.used else None
    want = None if want is None else float(want)
    if not same_number(got, want):
        problems.append(f"value mismatch: {aud.show(optima_path)} P{P}/seed{seed} {number} = {got!r}, "
                        f"recomputed from {aud.show(traj)}: {want!r}")
    return Number(f"{number} of P{P}/seed{seed}", [(aud.show(optima_path), got)], traj,
                  f"recomputed from the trajectory ({meta['group']['measure']})", want), problems


def numbers_selection(aud: RecordReader, path: Path, row: str | None, number: str) -> tuple[Number, list[str]]:
    """A macro of the numbers file (or its key) with its TSV row; the walk checks the row against its
    source (``Auditor._numbers``), so no problems are found here. ``row`` is not read."""
    side, rec = aud.record_of(path)
    tsv = aud.output_of(rec, ".tsv")
    rows = read_numbers_tsv(tsv)
    name = number.lstrip("\\")
    hits = [r for r in rows if r["macro"] == name or r["key"] == name]
    if len(hits) != 1:
        close = [r["macro"] for r in rows if name.lower()[:6] in r["macro"].lower()][:8]
        raise UsageError(f"--number {number!r}: {len(hits)} rows of {aud.show(tsv)} match "
                         f"(macro or key); similar: {close}")
    r = hits[0]
    src = aud.resolve(r["source"])
    want = json_pointer(read_json(src), r["pointer"]) if src.exists() else None
    printed = [(f"{aud.show(tsv)} value", r["value"]), (f"{aud.show(tsv)} text / \\{r['macro']}", r["text"])]
    return Number(f"\\{r['macro']} ({r['key']})", printed, src, r["pointer"], want, {r["key"]}), []
