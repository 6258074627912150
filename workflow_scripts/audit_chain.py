"""The walk of a provenance chain: from one file down to every trajectory and config behind it.

Why: every analysis output carries a typed record (``provenance.record``): in the file (fit.json, an
aggregate's Parquet footer) or in the sidecar beside the files it describes, naming its inputs with
their sha256. The ``Auditor`` reads those records, never the rendered Markdown or LaTeX: from the file
given down to every trajectory it re-hashes every file, checks every recorded output hash and printed
line, recomputes each recorded config hash from the config stored beside it, checks each trajectory's
dataset checksum against the dataset file and (``recompute``) re-runs the aggregation and the fit.
Every problem is kept on the node of its file instead of stopping at the first, so that the audit
lists them all. The command that starts the walk and prints it is ``audit.py``; the check of one
selected number is ``audit_numbers.py``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import io, provenance, seal
from .audit_numbers import (UsageError, aggregate_number, figure_number, fit_number, json_pointer,
                            numbers_selection, printed_matches, read_json, read_numbers_tsv, same_number,
                            table_number)
from .files import sha256_file
from .provenance import IDENTITY, fit_identity, read_record

SHORT = 12  # hex digits of a sha256 shown in the tree (the failures give it whole)


@dataclass
class Node:
    """One file of the chain: what it is, what was checked, what it was made from."""
    kind: str
    path: str
    sha256: str | None = None
    details: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    children: list["Node"] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    repeat: bool = False  # already shown above (a trajectory feeding both curves and optima)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "path": self.path, "sha256": self.sha256, "ok": not self.problems,
                "details": self.details, "problems": self.problems, "info": self.info,
                "repeat": self.repeat, "children": [c.as_dict() for c in self.children]}


def short(h: str | None) -> str:
    return (h or "?")[:SHORT]


class Auditor:
    """Walks provenance records; collects every problem instead of stopping at the first."""

    def __init__(self, root: Path, recompute: bool = False):
        self.root = Path(root).resolve()
        self.recompute = recompute
        self.failures: list[str] = []
        self.nodes: dict[Path, Node] = {}
        self.hashes: dict[Path, str] = {}
        self.cells: dict[str, dict] = {}          # cell id -> resolved cell config
        self.code: dict[str, set] = {}            # "commit dirty package" -> kinds using it
        self.lines: dict[Path, list[str]] = {}   # printed files, by line

    # -- helpers -----------------------------------------------------------------------------
    def show(self, p: Path) -> str:
        p = Path(p).resolve()
        try:
            return str(p.relative_to(self.root))
        except ValueError:
            return str(p)

    def resolve(self, recorded: str) -> Path:
        p = Path(recorded)
        return p if p.is_absolute() else self.root / p

    def sha(self, p: Path) -> str:
        p = p.resolve()
        if p not in self.hashes:
            self.hashes[p] = sha256_file(p)
        return self.hashes[p]

    def fail(self, node: Node, msg: str) -> None:
        node.problems.append(msg)
        self.failures.append(msg)

    def record_of(self, path: Path) -> tuple[Path, dict]:
        rec_path, rec = read_record(path)
        if rec is None:
            raise UsageError(f"{self.show(path)} has no record (provenance.record): not an output of "
                             "this pipeline, or written before records existed (rerun its rule)")
        return rec_path, rec

    def output_of(self, rec: dict, suffix: str) -> Path:
        """The file with this suffix among those a record describes (a table's CSV, the TSV)."""
        return self.resolve(next(o["path"] for o in rec["outputs"] if o["path"].endswith(suffix)))

    def line_of(self, path: Path, n: int) -> str | None:
        lines = self.lines.get(path.resolve())
        if lines is None:
            lines = self.lines[path.resolve()] = path.read_text().splitlines()
        return lines[n - 1] if 0 < n <= len(lines) else None

    def check_record(self, node: Node, rec_path: Path, rec: dict) -> None:
        """Every file the record describes has the sha256 it recorded, and every line it recorded
        as printed is still the file's line."""
        shown = self.show(rec_path)
        outs = rec.get("outputs") or []
        for o in outs:
            p = self.resolve(o["path"])
            if not p.exists():
                self.fail(node, f"missing output: {o['path']} (recorded in {shown})")
            elif self.sha(p) != o["sha256"]:
                self.fail(node, f"hash mismatch: {self.show(p)}: {shown} recorded sha256 {o['sha256']}, "
                                f"the file now has sha256 {self.sha(p)}")
        n_lines = 0
        for name, entries in (rec.get("printed") or {}).items():
            f = rec_path.with_name(name)
            for e in entries.values() if isinstance(entries, dict) else entries:
                if isinstance(e, dict) and "line" in e and f.exists():
                    n_lines += 1
                    actual = self.line_of(f, e["line"])
                    if actual != e["text"]:
                        self.fail(node, f"value mismatch: {self.show(f)} prints {actual!r} at line "
                                        f"{e['line']}; {shown} recorded {e['text']!r}")
        node.details.append(f"record {shown}: kind {rec['kind']}, experiment {rec.get('experiment')}; "
                            f"{len(outs)} output sha256 and {n_lines} printed lines checked")

    def note_code(self, meta: dict, kind: str, node: Node) -> None:
        code = meta.get("code") or {}
        if code:
            key = (f"commit {short(code.get('git_commit'))}"
                   f"{' (dirty)' if code.get('git_dirty') else ''} package {short(code.get('package_hash'))}")
            self.code.setdefault(key, set()).add(kind)
            node.info["code"] = code
        for k in ("created", "device", "slurm_job_id", "host", "packages", "stage"):
            if k in meta:
                node.info[k] = meta[k]

    def check_config_hash(self, node: Node, meta: dict) -> None:
        if "config" in meta and "config_hash" in meta:
            actual = provenance.config_hash(meta["config"])
            if actual != meta["config_hash"]:
                self.fail(node, f"config hash mismatch: {node.path}: recorded config_hash "
                                f"{meta['config_hash']}, the recorded config hashes to {actual} "
                                "(config edited after the file was written?)")
            else:
                node.details.append(f"config_hash {meta['config_hash']} recomputed: ok")
        elif "config" in meta:
            node.details.append("config recorded without config_hash")

    def input_nodes(self, node: Node, meta: dict, only=None) -> list[tuple[Node, Path]]:
        """Verify every input recorded in ``meta`` (hash, existence); audit those in ``only``
        (resolved paths; None: all) further down."""
        out = []
        for rec in meta.get("inputs") or []:
            p = self.resolve(rec["path"])
            if only is not None and p.resolve() not in only:
                continue
            out.append((self.audit(p, expected=rec.get("sha256"), recorded_in=node.path), p))
        node.children.extend(n for n, _ in out)
        return out

    # -- dispatch ----------------------------------------------------------------------------
    def audit(self, path: Path, expected: str | None = None, recorded_in: str | None = None) -> Node:
        path = Path(path)
        key = path.resolve()
        shown = self.show(path)
        if not path.exists():
            node = Node("missing", shown)
            where = f", recorded in {recorded_in} with sha256 {expected}" if recorded_in else ""
            self.fail(node, f"missing input: {shown} does not exist{where}")
            return node
        if expected is not None:
            actual = self.sha(path)
            if actual != expected:
                msg = (f"hash mismatch: {shown}: {recorded_in} recorded sha256 {expected}, "
                       f"the file now has sha256 {actual} (edited after {recorded_in} was made?)")
                if key in self.nodes:
                    node = Node(self.nodes[key].kind, shown, actual, repeat=True)
                    self.fail(node, msg)
                    return node
                node = self._audit_new(path)
                self.fail(node, msg)
                return node
        if key in self.nodes:
            old = self.nodes[key]
            return Node(old.kind, shown, old.sha256, details=["(audited above)"], repeat=True)
        return self._audit_new(path)

    def _audit_new(self, path: Path) -> Node:
        refused = seal.check(path)  # before anything parses it: a changed file is not read at all
        kind = "refused" if refused else detect_kind(path)
        node = Node(kind, self.show(path), self.sha(path))
        self.nodes[path.resolve()] = node
        if refused:
            self.fail(node, refused)
            return node
        try:
            KINDS[kind].walk(self, path, node)
        except UsageError:
            raise
        except seal.RefusedFile as e:  # a file it led to (a record beside it) changed
            self.fail(node, str(e))
        except Exception as e:  # a corrupt or foreign file is a failure of the audit, with its name
            self.fail(node, f"cannot read {node.path} as {kind}: {type(e).__name__}: {e}")
        return node

    # -- kinds: one walk a kind of file, named in KINDS ---------------------------------------
    def _file(self, path: Path, node: Node) -> None:
        node.details.append("no provenance recorded in this file (hash checked only)")

    def _published(self, path: Path, node: Node) -> None:
        """A published .npy (the authors' file, workflow_scripts/published.py): the end of a
        published aggregate's chain. Its sha256 is checked against the aggregate's record by the
        caller; here it is read with the restricted unpickler (never np.load) to say what it holds."""
        from . import published

        try:
            d = published.read_npy_dict(path)
        except published.PublishedError as e:
            self.fail(node, str(e))
            return
        node.details.append(f"published file (the authors' seed means), keys {sorted(d)}")

    def _dataset(self, path: Path, node: Node) -> None:
        rec_path, rec = self.record_of(path)
        self.check_record(node, rec_path, rec)  # the .npz has the sha256 its record holds
        self.note_code(rec.get("provenance") or {}, "dataset", node)

    def _trajectory(self, path: Path, node: Node) -> None:
        from .trajectory import read_trajectory

        try:
            df, meta = read_trajectory(path)
        except ValueError as e:
            self.fail(node, f"{node.path}: not a valid trajectory: {e}")
            return
        cfg = meta.get("config") or {}
        cell = "{experiment}/{arch}/{dataset}/P{P}/seed{seed}".format(**cfg) \
            if all(k in cfg for k in ("experiment", "arch", "dataset", "P", "seed")) else None
        if cell != meta.get("cell_id"):
            self.fail(node, f"{node.path}: cell_id {meta.get('cell_id')!r} does not match its "
                            f"config ({cell})")
        self.check_config_hash(node, meta)
        self.note_code(meta, "trajectory", node)
        node.info.update({"cell_id": meta.get("cell_id"), "status": meta.get("status"),
                          "rows": int(len(df)), "config_hash": meta.get("config_hash"),
                          "dataset_sha256": meta.get("dataset_sha256")})
        self.cells[str(meta.get("cell_id"))] = cfg
        ds = cfg.get("dataset")
        data = self.root / "results" / "datasets" / f"{ds}.npz"
        if ds and data.exists():
            actual = self.sha(data)
            if actual != meta.get("dataset_sha256"):
                self.fail(node, f"dataset mismatch: {node.path} was trained on dataset sha256 "
                                f"{meta.get('dataset_sha256')}, {self.show(data)} now has sha256 {actual}")
            data_note = f"dataset {ds} sha256 {short(actual)} ok"
        else:
            data_note = (f"dataset {ds} sha256 {short(meta.get('dataset_sha256'))} "
                         f"(no {self.show(data)} to compare)")
        ok = [d for d in node.details if d.startswith("config_hash")]
        node.details = [f"cell {meta.get('cell_id')}: {meta.get('status')}, {len(df)} rows; "
                        f"config_hash {meta.get('config_hash')} {'ok' if ok else 'BAD'}; {data_note}; "
                        f"device {meta.get('device')}; slurm job {meta.get('slurm_job_id') or '-'}"]
        self.input_nodes(node, meta)

    def _aggregate(self, path: Path, node: Node) -> None:
        df, meta = io.read_parquet(path)
        group = meta.get("group") or {}
        node.info.update({"group": group, "settings": meta.get("config")})
        node.details.append(f"group {'/'.join(str(group.get(k)) for k in IDENTITY)}, "
                            f"settings {json.dumps(meta.get('config'), sort_keys=True)}")
        self.check_config_hash(node, meta)
        self.note_code(meta, "aggregate", node)
        recorded = {str(r["path"]) for r in meta.get("inputs") or []}
        if "path" in df.columns and "cell_id" in df.columns:  # the optima table: one row per input
            listed = set(df["path"].astype(str))
            if listed != recorded:
                self.fail(node, f"{node.path}: its rows name {len(listed)} trajectories, its footer "
                                f"records {len(recorded)} inputs; differing: "
                                f"{sorted(listed ^ recorded)[:5]}")
        for child, p in self.input_nodes(node, meta):
            if child.kind == "trajectory" and not child.repeat and child.info.get("cell_id"):
                cid = child.info["cell_id"].split("/")
                if cid[1:3] != [group.get("arch"), group.get("dataset")]:
                    self.fail(child, f"{child.path}: cell {child.info['cell_id']} is not of "
                                     f"{group.get('arch')}/{group.get('dataset')} ({node.path})")
        if self.recompute:
            self._recompute_aggregate(path, node, df, meta)

    def inputs_to_recompute(self, node: Node, meta: dict, n: int | None = None) -> list[Path] | None:
        """The recorded inputs, resolved; None (a failure) if one is missing."""
        files = [self.resolve(r["path"]) for r in meta.get("inputs") or []]
        if (n is not None and len(files) != n) or not all(f.exists() for f in files):
            self.fail(node, f"{node.path}: cannot recompute, inputs missing")
            return None
        return files

    def _recompute_aggregate(self, path, node, df, meta) -> None:
        from . import aggregate as agg

        files = self.inputs_to_recompute(node, meta)
        if files is None:
            return
        curves, _, _ = agg.load(files, meta["group"]["measure"])
        curves_df, optima_df, _ = agg.aggregate(curves, meta["config"])
        new = optima_df if "cell_id" in df.columns else curves_df
        bad = compare_frames(df, new, skip=("path",))
        if bad:
            self.fail(node, f"recompute mismatch: {node.path}: aggregating its inputs again gives "
                            f"different {bad}")
        else:
            node.details.append("recomputed from the trajectories: identical")

    def _fit(self, path: Path, node: Node) -> None:
        fit = read_json(path)
        prov = fit.get("provenance") or {}
        ident = fit_identity(fit)
        node.info.update({"identity": ident, "status": fit.get("status"), "settings": fit.get("settings")})
        s = fit.get("settings") or {}
        node.details.append(f"{'/'.join(ident[k] for k in IDENTITY)}: status {fit.get('status')}"
                            f"{' (' + str(fit.get('reason')) + ')' if fit.get('reason') else ''}; "
                            f"window {s.get('window')}, P range [{s.get('P_min')}, {s.get('P_max')}], "
                            f"bootstrap {s.get('bootstrap')}")
        self.check_config_hash(node, prov)
        self.note_code(prov, "fit", node)
        for child, p in self.input_nodes(node, prov):
            g = child.info.get("group")
            if g is not None and fit.get("group") and g != fit["group"]:
                self.fail(node, f"{node.path}: fits group {fit['group']} but its input "
                                f"{child.path} holds {g}")
        if self.recompute:
            self._recompute_fit(path, node, fit, prov)

    def _recompute_fit(self, path, node, fit, prov) -> None:
        from . import fit as fitmod

        ins = self.inputs_to_recompute(node, prov, n=2)
        if ins is None:
            return
        curves, optima = sorted(ins, key=lambda p: "optima" in p.name)
        data, _ = fitmod.load_fit_data(curves, optima)
        try:
            res = fitmod.estimate(data, prov["config"])
        except fitmod.FitError as e:
            res = {"status": "impossible", "reason": str(e), "estimates": None}
        if res["status"] != fit.get("status"):
            self.fail(node, f"recompute mismatch: {node.path}: status {fit.get('status')} recorded, "
                            f"{res['status']} recomputed")
            return
        bad = [f"{k}.{f}" for k in (res.get("estimates") or {}) for f in ("value", "ci_low", "ci_high")
               if not same_number(res["estimates"][k][f], fit["estimates"][k][f], rtol=1e-9)]
        if bad:
            self.fail(node, f"recompute mismatch: {node.path}: fitting its aggregate again changes {bad}")
        else:
            node.details.append("refitted from the aggregate: identical estimates and intervals")

    def _sidecar(self, path: Path, node: Node, only=None, follow: bool = True) -> tuple[Path, dict]:
        """A record beside the files it describes: its outputs and printed lines, its code and
        config, and (``follow``) its inputs, those in ``only`` audited further down."""
        side, meta = self.record_of(path)
        prov = meta.get("provenance") or {}
        self.check_record(node, side, meta)
        self.check_config_hash(node, prov)
        self.note_code(prov, meta["kind"], node)
        if follow:
            self.input_nodes(node, prov, only)
        return side, meta

    def _figure(self, path: Path, node: Node, only=None) -> None:
        _, meta = self._sidecar(path, node, only)
        n = sum(len(v) for v in (meta.get("printed") or {}).values())
        node.details.append(f"plot {meta.get('plot')}: {len(meta.get('panels') or [])} panels, "
                            f"{n} strings drawn")

    def _sensitivity(self, path: Path, node: Node) -> None:
        _, meta = self._sidecar(path, node)
        node.details.append(f"status {meta.get('status')}; overlap share {meta.get('overlap_share')}")

    def _table(self, path: Path, node: Node, only=None) -> None:
        side, meta = self._sidecar(path, node, only)
        node.details.append(f"{len(meta.get('rows') or [])} rows")
        for row in meta.get("rows") or []:  # every row as the fit says (no number selected: all)
            fp = self.resolve(row["fit"])
            if (only is not None and fp.resolve() not in only) or not fp.exists():
                continue
            fit = read_json(fp)
            fit = (fit.get("by_estimator") or {}).get(row.get("estimator"), fit)  # its estimator's
            for q in ("gamma1", "gamma2", "gamma_pred", "gamma_meas", "gamma_pred_minus_meas"):
                if q in row and fit.get("status") == "ok":
                    if not same_number(row[q], fit["estimates"][q]["value"]):
                        self.fail(node, f"value mismatch: {self.show(side)} row {row['fit']}: "
                                        f"{q} = {row[q]}, the fit says {fit['estimates'][q]['value']}")

    def _numbers(self, path: Path, node: Node, only_keys=None) -> None:
        side, rec = self._sidecar(path, node, follow=False)  # the TSV names each number's fit
        tsv = self.output_of(rec, ".tsv")
        rows = read_numbers_tsv(tsv)
        macros = next(iter((rec.get("printed") or {}).values()), {})  # macro -> its line
        node.details.append(f"{len(rows)} numbers in {self.show(tsv)}, {len(macros)} macros recorded")
        sources: dict[Path, str] = {}
        for r in rows:
            if only_keys is not None and r["key"] not in only_keys:
                continue
            src = self.resolve(r["source"])
            if src.exists():
                self.check_number_row(node, r, macros)
            sources.setdefault(src, r["source_sha256"])
        recorded = {self.resolve(i["path"]): i["sha256"]
                    for i in (rec.get("provenance") or {}).get("inputs") or []}
        for src, sha in sources.items():
            if recorded.get(src) != sha:
                self.fail(node, f"{self.show(tsv)} quotes {self.show(src)} with sha256 {sha}; its record "
                                f"{self.show(side)} read it with sha256 {recorded.get(src)}")
            node.children.append(self.audit(src, expected=sha, recorded_in=self.show(tsv)))

    def check_number_row(self, node: Node, r: dict, macros: dict) -> None:
        """The TSV row against its fit (value, rounding) and against the macro line recorded."""
        from .numbers import macro_line

        src = self.resolve(r["source"])
        obj = read_json(src)
        try:
            want = json_pointer(obj, r["pointer"])
        except (KeyError, IndexError, TypeError):
            self.fail(node, f"{r['key']}: {r['source']} has no {r['pointer']}")
            return
        got = float(r["value"]) if r["value"] not in ("", "nan") else None
        if not same_number(got, want):
            self.fail(node, f"value mismatch: {node.path} {r['key']} = {r['value']}, "
                            f"{r['source']}{r['pointer']} = {want}")
        line = macros.get(r["macro"])
        if line is None:
            self.fail(node, f"\\{r['macro']} ({r['key']}) missing from the record of the .tex file")
        elif line["text"] != macro_line(r["macro"], r["text"]):
            self.fail(node, f"value mismatch: \\{r['macro']} prints {line['text']!r}, "
                            f"the TSV says {r['text']!r}")
        if want is not None and isinstance(want, (int, float)) and r["text"] != "--" \
                and re.fullmatch(r"-?\d+(\.\d+)?", r["text"]) and not printed_matches(r["text"], want):
            self.fail(node, f"value mismatch: \\{r['macro']} prints {r['text']}, "
                            f"{r['source']}{r['pointer']} = {want}")

    def _output_parquet(self, path: Path, node: Node) -> None:
        """A Parquet file with our footer that is neither a trajectory nor an aggregate."""
        meta = io.read_parquet_metadata(path)
        self.check_config_hash(node, meta)
        self.note_code(meta, "output", node)
        self.input_nodes(node, meta)

    def _json_output(self, path: Path, node: Node) -> None:
        meta = read_json(path)
        prov = meta.get("provenance") or {}
        self.check_config_hash(node, prov)
        self.note_code(prov, "output", node)
        self.input_nodes(node, prov)


def compare_frames(a: pd.DataFrame, b: pd.DataFrame, skip=()) -> list[str]:
    """Columns on which two tables differ (floats at rtol 1e-12, NaN equal to NaN)."""
    if len(a) != len(b):
        return [f"row count {len(a)} vs {len(b)}"]
    bad = []
    for c in a.columns:
        if c in skip:
            continue
        if c not in b.columns:
            bad.append(c)
            continue
        x, y = a[c].reset_index(drop=True), b[c].reset_index(drop=True)
        if pd.api.types.is_float_dtype(x) or pd.api.types.is_float_dtype(y):
            xv, yv = x.to_numpy(float, na_value=np.nan), y.to_numpy(float, na_value=np.nan)
            if not np.allclose(xv, yv, rtol=1e-12, atol=0, equal_nan=True):
                bad.append(c)
        elif not x.astype(str).equals(y.astype(str)):
            bad.append(c)
    return bad


def detect_kind(path: Path) -> str:
    """What ``path`` is: the kind its record names (``provenance.RECORD_KINDS``); a trajectory by
    its contract (``trajectory.py``: trajectories keep the footer they were trained with);
    ``output_parquet`` / ``json_output`` for other files with our provenance (the perceptron's);
    else ``file`` (hash checked only)."""
    path = Path(path)
    _, rec = read_record(path)
    if rec is not None:
        return rec["kind"]
    if path.suffix == ".parquet":
        try:
            meta = io.read_parquet_metadata(path)
        except ValueError:
            return "file"
        return "trajectory" if "cell_id" in meta else "output_parquet"
    if path.suffix == ".npy":  # the authors' published files: where a published chain ends
        return "published"
    if path.suffix == ".json":
        obj = read_json(path)
        return "json_output" if isinstance(obj, dict) and "provenance" in obj else "file"
    return "file"


@dataclass(frozen=True)
class Kind:
    """What the audit does with one kind of file (a ``detect_kind`` answer)."""
    # Auditor method (auditor, path, node[, only]): check the file and walk its inputs; the walks of
    # tables, figures and numbers files take ``only``, the part a selected number came from
    walk: Callable[..., None]
    # audit_numbers chooser (auditor, path, row, number) -> (Number, problems); None: no --number here
    choose: Callable | None = None


KINDS: dict[str, Kind] = {
    "file": Kind(Auditor._file),
    "published": Kind(Auditor._published),
    "dataset": Kind(Auditor._dataset),
    "trajectory": Kind(Auditor._trajectory),
    "aggregate": Kind(Auditor._aggregate, aggregate_number),
    "fit": Kind(Auditor._fit, fit_number),
    "sensitivity": Kind(Auditor._sensitivity),
    "figure": Kind(Auditor._figure, figure_number),
    "table": Kind(Auditor._table, table_number),
    "numbers": Kind(Auditor._numbers, numbers_selection),
    "output_parquet": Kind(Auditor._output_parquet),
    "json_output": Kind(Auditor._json_output),
}
