"""Audit: walk from an output (or one number in it) back to the trajectories and configs behind it.

This module is the command (``python -m workflow_scripts.audit``): it starts the walk
(``audit_chain.Auditor``), checks the number selected (``audit_numbers``) and prints the chain.

Why: the pipeline promises the provenance of every number (README, "Provenance"). Every analysis
output carries a typed record (``provenance.record``): in the file (fit.json, an aggregate's Parquet
footer) or in the sidecar beside the files it describes (figures, tables, the numbers file, the
sensitivity grid), naming what it is, the experiment that analysed it, its inputs with their
sha256 and, for a sidecar, the sha256 of every file it describes and the exact strings they print.
The audit reads those records, never the rendered Markdown or LaTeX: from the output given
down to every trajectory it re-hashes every file, checks every recorded output hash and printed
line, recomputes each recorded config hash from the config stored beside it, checks each
trajectory's dataset checksum against the dataset file, and checks that the number selected is
the number in the fit (or aggregate) it came from: at machine precision in CSV/TSV/JSON and in
the numbers a figure records, within the printed rounding in the strings the tables record.
Any mismatch or missing file is a failure: every failure is listed with the file and the expected
and actual hash, and the exit status is 1. ``--recompute`` also re-runs the aggregation and the fit
from their recorded inputs and settings and compares the results with the stored ones.

Selectors (one number)::

    --row     which row of a table / panel of a figure: path components of the fit it came from,
              ``experiment/arch/dataset/measure``, any contiguous part of it (``cnn/mnist``,
              ``main/cnn/mnist``, ``cnn/mnist/frobenius``); for an aggregate ``P<P>/seed<s>``.
    --number  a fit quantity (gamma1, gamma2, gamma_pred, gamma_meas, gamma_pred_minus_meas, k1, k2,
              k_meas) with an optional field suffix ``_ci_low``, ``_ci_high``, ``_se``; a per-P
              quantity with ``@P`` (``eps_opt@600``, ``lambda_opt_ci_high@600``); in an aggregate
              ``lambda_star``, ``eps_star``, ``step_star`` (with --row P<P>/seed<s>); in a numbers
              file the macro name (``gammaPredCnnMnist``) or its key column.

Example::

    python -m workflow_scripts.audit results/tables/main/table1.csv --row cnn/mnist --number gamma_pred

Paths recorded in provenance are relative to the directory Snakemake ran in; they are resolved
against ``--root`` (default: the directory holding the output's ``results/`` folder).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import io, seal
from .audit_chain import KINDS, Auditor, Node, detect_kind, short
from .audit_numbers import Number, UsageError
# the audit's own names for these, as before the split (tests and callers reach them as audit.<name>)
from .audit_numbers import json_pointer as json_pointer, select_one as select_one


def infer_root(path: Path) -> Path:
    """The directory that holds the output's ``results/`` folder (where Snakemake ran), else cwd."""
    parts = Path(path).resolve().parts
    if "results" in parts:
        i = len(parts) - 1 - parts[::-1].index("results")
        return Path(*parts[:i])
    return Path.cwd()


# ----------------------------------------------------------------------------------------------

def run_audit(path, row=None, number=None, root=None,
              recompute=False) -> tuple[Auditor, Node, Number | None]:
    """Audit ``path`` (and one number in it); returns the auditor (failures), the tree, the number."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    aud = Auditor(root or infer_root(path), recompute=recompute)
    refused = seal.check(path)
    if refused:
        node = Node("refused", aud.show(path), aud.sha(path))
        aud.fail(node, refused)
        return aud, node, None
    kind = detect_kind(path)
    handler = KINDS[kind]
    if row is not None and number is None:
        raise UsageError("--row chooses the row of a --number: give --number too "
                         "(or audit the whole file without --row)")
    num, problems = None, []
    if number is not None:
        if handler.choose is None:
            raise UsageError(f"{path} is a {kind}: --number works on tables, figures, fits, "
                             "aggregates and numbers files")
        num, problems = handler.choose(aud, path, row, number)
    node = Node(kind, aud.show(path), aud.sha(path) if path.is_file() else None)
    aud.nodes[path.resolve()] = node
    try:
        if num is not None and num.follow is not None:  # follow only the part the number came from
            handler.walk(aud, path, node, num.follow)
        else:
            handler.walk(aud, path, node)
    except UsageError:
        raise
    except Exception as e:
        aud.fail(node, f"cannot read {node.path} as {kind}: {type(e).__name__}: {e}")
    for p in problems:
        aud.fail(node, p)
    return aud, node, num


def render(aud: Auditor, node: Node, num: Number | None) -> str:
    out = []
    if num is not None:
        out.append(f"number   {num.label} = {num.value!r}")
        for where, v in num.printed:
            out.append(f"         printed in {where}: {v!r}")
        out.append(f"         source     {aud.show(num.source)} {num.source_field}")
        out.append("")

    def walk(n: Node, prefix: str, last: bool, top: bool):
        mark = "" if top else ("└─ " if last else "├─ ")
        status = "FAILED" if n.problems else ("ok" if not n.repeat else "ok, see above")
        sha = f" sha256 {short(n.sha256)}" if n.sha256 else ""
        out.append(f"{prefix}{mark}{n.kind:<10} {n.path}{sha}  [{status}]")
        sub = prefix + ("" if top else ("   " if last else "│  "))
        for d in n.details:
            if not n.repeat or d != "(audited above)":
                out.append(f"{sub}   {d}")
        for pr in n.problems:
            out.append(f"{sub}   !! {pr}")
        for i, c in enumerate(n.children):
            walk(c, sub, i == len(n.children) - 1, False)

    walk(node, "", True, True)
    if aud.cells:
        shared = _shared_config(list(aud.cells.values()))
        out += ["", f"cell configs: {len(aud.cells)} cells; what they share (P and seed vary):",
                "   " + json.dumps(shared, sort_keys=True)]
    if aud.code:
        out += ["", "code versions:"]
        out += [f"   {k}: {', '.join(sorted(v))}" for k, v in sorted(aud.code.items())]
    n_files = len(aud.nodes)
    out += ["", f"{n_files} files audited, {len(aud.hashes)} sha256 computed"]
    return "\n".join(out)


def _shared_config(cfgs: list[dict]) -> dict:
    """Keys (recursively) on which every cell config agrees."""
    def common(ds):
        first = ds[0]
        res = {}
        for k, v in first.items():
            vals = [d.get(k, object()) for d in ds]
            if all(isinstance(x, dict) for x in vals):
                res[k] = common(vals)
            elif all(x == v for x in vals):
                res[k] = v
        return res
    return common(cfgs) if cfgs else {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m workflow_scripts.audit",
        description="Walk from an output (table, figure, fit, aggregate, trajectory, numbers file) or "
                    "one number in it back to every trajectory and cell config that fed it, verifying "
                    "every recorded sha256 and config hash. Exit 1 on any mismatch or missing file.",
        epilog="example: python -m workflow_scripts.audit results/tables/main/table1.csv "
               "--row cnn/mnist --number gamma_pred")
    ap.add_argument("output", help="the file to audit (a table .csv/.md/.tex, a figure .png, fit.json, "
                                   "an aggregate or trajectory .parquet, numbers.tsv/.tex)")
    ap.add_argument("--row", help="table row / figure panel: experiment/arch/dataset/measure or a "
                                  "contiguous part (cnn/mnist); aggregate: P<P>/seed<s>")
    ap.add_argument("--number", help="gamma_pred, gamma1_ci_low, eps_opt@600, lambda_star, a macro name ...")
    ap.add_argument("--root", help="directory the recorded relative paths are relative to "
                                   "(default: the one holding the output's results/ folder)")
    ap.add_argument("--recompute", action="store_true",
                    help="also re-run each aggregation and fit on the way and compare")
    ap.add_argument("--json", help="write the audit (tree, failures) as JSON to this file")
    ap.add_argument("--quiet", action="store_true", help="print only the verdict and the failures")
    args = ap.parse_args(argv)
    try:
        aud, node, num = run_audit(args.output, args.row, args.number, args.root, args.recompute)
    except UsageError as e:
        print(f"audit: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(render(aud, node, num))
    if args.json:
        io.write_json({"output": str(args.output), "row": args.row, "number": args.number,
                       "selected": None if num is None else {
                           "label": num.label, "value": num.value, "source": aud.show(num.source),
                           "field": num.source_field, "printed": num.printed},
                       "ok": not aud.failures, "failures": aud.failures, "tree": node.as_dict(),
                       "cells": aud.cells}, args.json)
    if aud.failures:
        print(f"AUDIT FAILED: {len(aud.failures)} problem(s)", file=sys.stderr)
        for f in aud.failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print(f"AUDIT PASSED: {args.output}" + (f" ({num.label} = {num.value!r})" if num else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
