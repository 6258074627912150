"""Import the authors' published seed-averaged curves (deep_norm ``analysis/*.npy``) as aggregates.

Why: Table 1 and the appendix tables (weight decay, SGD, other norms) can be refitted from the
authors' own data on a laptop in seconds, with their estimator (``fit.py``, ``estimator: authors``)
and with ours, beside the values they stored in each file. The files are not redistributed here
(their repository has no licence): clone https://github.com/Francill99/deep_norm and point
``published.dir`` (or this CLI) at it.

    python -m workflow_scripts.published ../deep_norm --out results/published [--table T]

**The files are pickles from the internet.** ``np.load(allow_pickle=True)`` would run whatever a
pickle asks for; ``load_file`` parses the .npy header with ``numpy.lib.format`` and unpickles with
``SafeUnpickler``, which admits only numpy's array/scalar/dtype reconstruction and a few builtins,
and then checks that every value is a number, None, a string or a numeric/bool array. Anything else
is refused with an error naming the file and the refused global or key. Nothing loads a file while
the workflow is parsed (``scan`` only lists names).

Layouts (a dict per file). Every file holds ``P_arr`` (n_P,), ``log_x_grid`` (n_grid,) (λ values
despite the name, one grid for every P), ``mean_val_error_arr`` and ``l_0_arr`` (the mean over
seeds of each seed's λ*), and may hold ``seed_arr``, ``eps_lam_star_P_arr``, ``lambda_star_arr``:

    table1        <Arch>_<Dataset>.npy      E (n_P, n_grid), l_0 (n_P,); stored k1, gamma_1,
                                            err_gamma_1, k2, gamma_2, err_gamma_2, C2, factor, min_P
                                            (an index into P_arr), each where present
    sgd           <Arch>_<Dataset>_SGD.npy  the same layout
    weight_decay  <Arch>_<Dataset>_wd.npy   a leading axis of 3 (the weight-decay values in file
                                            order; the values are not stored): E (3, n_P, n_grid),
                                            l_0 (3, n_P), x_left_arr, x_right_arr (3,) (None: no
                                            bound), gamma_1_arr, err_gamma_1_arr, gamma_2_arr,
                                            err_gamma_2_arr (3,), eps_lam_star_P_arr (3, n_P)
    norms         <Arch>_<Dataset>_norms.npy  a leading axis of 4: the norms [l1, frobenius,
                                            group21, spectral_product] (order inferred from their
                                            magnitudes, not stored); eps_lam_star_P_arr (n_P,)
                                            belongs to the last norm only

Only the four arrays the fit reads are required; every stored value is carried where present and
null where absent. One aggregate per curve set: experiment ``published`` (table1),
``published_sgd``, ``published_wd1..3``, ``published_norms`` (measure = the norm).

What is written, under ``--out`` (all or nothing: a failed import leaves nothing it would write):
    aggregate/<experiment>/<arch>/<dataset>/<measure>/curves.parquet  "mean" rows (seed -1) only
    aggregate/<experiment>/<arch>/<dataset>/<measure>/optima.parquet  one row per P: λ* = l_0,
        ε* = the stored mean ε* where there is one; ``path`` = the .npy (the audit chain ends there)
    import.json (or import/<table>.json with --table)  imported and not-imported files, with reasons
Both footers carry ``published``: the source file and its sha256, its layout and index, the stored
values and window. ``fit.py`` reads such an aggregate as one curve per P and skips the bootstrap.
``python -m workflow_scripts.published refit ...`` is fit.py with ``window: stored`` read from it.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib import format as npy_format

from . import io, provenance, seal
from .files import sha256_file
from .aggregate import CURVE_COLUMNS, OPTIMA_COLUMNS, SCHEMA

ARCHS = {"CNN": "cnn", "ResNet": "resnet", "ViT": "vit"}
DATASETS = {"MNIST": "mnist", "CIFAR10": "cifar10", "CIFAR100": "cifar100"}
REQUIRED = ("P_arr", "log_x_grid", "mean_val_error_arr", "l_0_arr")
# The authors' λ is their variant of the spectral complexity (see the `authors` experiment).
MEASURE = "spectral_complexity_authors"
NORMS = ("l1", "frobenius", "group21", "spectral_product")
NAME = re.compile(r"^(CNN|ResNet|ViT)_(MNIST|CIFAR100|CIFAR10)(_.*)?\.npy$")


@dataclass(frozen=True)
class Table:
    """One published table: which files feed it and how their curve sets are named."""
    name: str          # table1, sgd, weight_decay, norms
    suffix: str        # of the file name
    leading: int       # 0: the main layout; else the length of the leading axis
    stored: tuple      # keys of the stored fit values (scalars, or arrays over the leading axis)

    def curve_sets(self) -> list[tuple[str, str]]:
        """(experiment, measure) of each curve set a file of this table holds, in file order."""
        if self.name == "weight_decay":
            return [(f"published_wd{i + 1}", MEASURE) for i in range(self.leading)]
        if self.name == "norms":
            return [("published_norms", m) for m in NORMS]
        return [("published" if self.name == "table1" else f"published_{self.name}", MEASURE)]

    @property
    def target(self) -> str:
        return "table1_published" if self.name == "table1" else f"table_{self.name}_published"


MAIN_STORED = ("k1", "gamma_1", "err_gamma_1", "k2", "gamma_2", "err_gamma_2", "C2", "factor", "min_P")
AXIS_STORED = ("gamma_1_arr", "err_gamma_1_arr", "gamma_2_arr", "err_gamma_2_arr")
TABLES = {t.name: t for t in (Table("table1", "", 0, MAIN_STORED), Table("sgd", "_SGD", 0, MAIN_STORED),
                              Table("weight_decay", "_wd", 3, AXIS_STORED),
                              Table("norms", "_norms", 4, AXIS_STORED))}
NOTES = {"weight_decay": "published_wd1..3: the file's three weight-decay values in file order (the "
                         "values are not stored in it).",
         "norms": "Norms as λ in file order [l1, frobenius, group21, spectral_product]: the order is "
                  "inferred from their magnitudes, not stored in the file."}


class PublishedError(ValueError):
    """A published folder or file that cannot be imported; the message names the file and key."""


# ---------------------------------------------------------------------------------------------
# reading a file from the internet without running it

# numpy's reconstruction functions, under numpy 1's and numpy 2's module names
_NUMPY_FUNCTIONS = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")}
_NUMPY_CLASSES = {("numpy", "ndarray"), ("numpy", "dtype")}
_BUILTINS = {"complex", "float", "int", "bool", "str", "list", "dict", "tuple"}
_NUMERIC_KINDS = "biufc"  # bool, int, uint, float, complex
_CORE = "numpy._core" if importlib.util.find_spec("numpy._core") else "numpy.core"


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a published file needs; anything else (os.system,
    builtins.eval, any class) is refused before it can be called."""

    def __init__(self, file, source: Path):
        super().__init__(file)
        self.source = source

    def find_class(self, module, name):
        for core in ("numpy.core.", "numpy._core."):
            if module.startswith(core) and (module[len(core):], name) in _NUMPY_FUNCTIONS:
                return getattr(importlib.import_module(f"{_CORE}.{module[len(core):]}"), name)
        if (module, name) in _NUMPY_CLASSES:
            return getattr(np, name)
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return getattr(__import__("builtins"), name)
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles
            import _codecs

            return _codecs.encode
        raise PublishedError(f"{self.source}: refused to load the global {module}.{name}: a published "
                             "file may hold only dicts, numeric numpy arrays and scalars, numbers, None "
                             "and strings (a pickle naming anything else could run code)")

    def persistent_load(self, pid):
        raise PublishedError(f"{self.source}: refused a persistent id in the pickle")


def _check_value(value, path: Path, key: str) -> None:
    """Only numbers, None, strings, containers of them and numeric/bool arrays."""
    if value is None or isinstance(value, (bool, int, float, complex, str)):
        return
    if isinstance(value, np.generic):
        if value.dtype.kind not in _NUMERIC_KINDS:
            raise PublishedError(f"{path}: key {key!r} holds a numpy scalar of dtype {value.dtype}")
        return
    if type(value) is np.ndarray:
        if value.dtype.kind in _NUMERIC_KINDS:
            return
        if value.dtype.kind == "O":
            for v in value.ravel():
                _check_value(v, path, key)
            return
        raise PublishedError(f"{path}: key {key!r} holds an array of dtype {value.dtype} (only "
                             "numeric or boolean arrays, or object arrays of numbers and None)")
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_value(v, path, key)
        return
    raise PublishedError(f"{path}: key {key!r} holds a {type(value).__name__}")


def read_npy_dict(path) -> dict:
    """The dict pickled in one .npy file, read without running anything it names."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            version = npy_format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            if dtype != np.dtype(object) or shape != ():
                raise ValueError(f"holds an array of shape {shape} and dtype {dtype}, not a pickled dict")
            obj = SafeUnpickler(f, path).load()
    except PublishedError:
        raise
    except Exception as e:  # truncated, not .npy, a broken pickle: say which file
        raise PublishedError(f"{path}: cannot be read as a pickled dict ({type(e).__name__}: {e})") from None
    if type(obj) is np.ndarray and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict):
        raise PublishedError(f"{path}: holds a {type(obj).__name__}, not a dict")
    for k, v in obj.items():
        if not isinstance(k, str):
            raise PublishedError(f"{path}: has a key of type {type(k).__name__} ({k!r})")
        _check_value(v, path, k)
    return obj


# ---------------------------------------------------------------------------------------------
# the folder, the files, their layouts

def analysis_dir(root) -> Path:
    """The folder holding the .npy files: ``root/analysis`` when root is a deep_norm clone."""
    root = Path(root)
    if not root.is_dir():
        raise PublishedError(f"published.dir {root} is not a directory (clone "
                             "https://github.com/Francill99/deep_norm and point at it)")
    sub = root / "analysis"
    return sub if sub.is_dir() else root


def scan(root) -> tuple[dict, list[dict]]:
    """({table: {(arch, dataset): path}} of the files by name, [{file, reason}] of other .npy
    files). Names only: nothing is opened (this runs while the workflow is parsed)."""
    folder = analysis_dir(root)
    suffixes = {t.suffix: t.name for t in TABLES.values()}
    found, skipped = {}, []
    for path in sorted(folder.glob("*.npy")):
        m = NAME.match(path.name)
        if m is None:
            skipped.append({"file": path.name, "reason": "name is not <Arch>_<Dataset>[_suffix].npy"})
        elif (m.group(3) or "") not in suffixes:
            skipped.append({"file": path.name, "reason": f"suffix {m.group(3)!r}: a layout not imported "
                                                         f"(known: {sorted(s for s in suffixes if s)})"})
        else:
            table = suffixes[m.group(3) or ""]
            found.setdefault(table, {})[(ARCHS[m.group(1)], DATASETS[m.group(2)])] = path
    if not found:
        expected = ", ".join(f"{a}_{d}.npy" for a in ARCHS for d in DATASETS)
        raise PublishedError(f"no published file in {folder}: expected some of {expected} (or their "
                             "_wd, _norms, _SGD variants)")
    return found, skipped


def _array(d: dict, key: str, path: Path, shape: tuple | None = None, ndim: int | None = None) -> np.ndarray:
    if key not in d:
        raise PublishedError(f"{path}: lacks key {key!r}")
    try:
        a = np.asarray(d[key], dtype=float)
    except (TypeError, ValueError):
        raise PublishedError(f"{path}: key {key!r} is not numeric") from None
    if ndim is not None and a.ndim != ndim:
        raise PublishedError(f"{path}: key {key!r} has shape {a.shape}, expected {ndim} dimension(s)")
    if shape is not None and a.shape != shape:
        raise PublishedError(f"{path}: key {key!r} has shape {a.shape}, expected {shape}")
    return a


def check_layout(d: dict, table: Table, path: Path) -> dict:
    """The four arrays the fit reads, checked against the table's layout: {P, grid, E, l0}."""
    P = _array(d, "P_arr", path, ndim=1)
    if not (len(P) and np.all(P > 0) and np.all(P == np.round(P)) and np.all(np.diff(P) > 0)):
        raise PublishedError(f"{path}: key 'P_arr' must hold increasing positive sample sizes")
    grid = _array(d, "log_x_grid", path, ndim=1)
    if not (len(grid) >= 2 and np.all(grid > 0) and np.all(np.diff(grid) > 0)):
        raise PublishedError(f"{path}: key 'log_x_grid' must hold increasing positive λ values")
    lead = (table.leading,) if table.leading else ()
    E = _array(d, "mean_val_error_arr", path, shape=(*lead, len(P), len(grid)))
    l0 = _array(d, "l_0_arr", path, shape=(*lead, len(P)))
    if table.leading:
        for key in ("x_left_arr", "x_right_arr", *AXIS_STORED):
            if key in d and np.shape(d[key]) != lead:
                raise PublishedError(f"{path}: key {key!r} has shape {np.shape(d[key])}, expected {lead}")
    if "min_P" in d and not (isinstance(d["min_P"], (int, np.integer)) and 0 <= int(d["min_P"]) < len(P)):
        raise PublishedError(f"{path}: key 'min_P' = {d['min_P']!r} is not an index into P_arr")
    return {"P": P.astype(np.int64), "grid": grid, "E": E, "l0": l0}


def load_file(path, table: str = "table1") -> dict:
    """One file, read safely and checked against its table's layout."""
    d = read_npy_dict(path)
    check_layout(d, TABLES[table], Path(path))
    return d


def _number(v) -> float | None:
    """A stored scalar as a JSON number, None where absent or not finite."""
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def stored_values(d: dict, table: Table, index: int) -> dict:
    """The fit values the authors stored for curve set ``index``: every key of the table, null where
    absent, and γ₁γ₂ where both are stored."""
    if table.leading:
        out = {}
        for key in AXIS_STORED:
            v = d.get(key)
            out[key.removesuffix("_arr")] = None if v is None else _number(np.asarray(v, dtype=object)[index])
    else:
        out = {k: _number(d.get(k)) for k in MAIN_STORED if k != "min_P"}
        P = np.asarray(d["P_arr"]).ravel()
        out["min_P_index"] = int(d["min_P"]) if "min_P" in d else None
        out["min_P"] = int(P[int(d["min_P"])]) if "min_P" in d else None
    g1, g2 = out.get("gamma_1"), out.get("gamma_2")
    out["gamma_pred"] = g1 * g2 if g1 is not None and g2 is not None else None
    return out


def stored_window(d: dict, table: Table, index: int) -> dict | None:
    """The γ₁ window stored in the file (x_left_arr, x_right_arr), None where not stored."""
    if not table.leading or "x_left_arr" not in d or "x_right_arr" not in d:
        return None
    left, right = (np.asarray(d[k], dtype=object)[index] for k in ("x_left_arr", "x_right_arr"))
    return {"x_left": _number(left), "x_right": _number(right)}


def per_P_eps_star(d: dict, table: Table, index: int, n_P: int) -> np.ndarray:
    """Mean ε* per P where stored in a recognisable shape, else NaN."""
    e = d.get("eps_lam_star_P_arr")
    if e is None:
        return np.full(n_P, np.nan)
    e = np.asarray(e, dtype=float)
    if table.name == "norms":  # stored for the last norm only
        return e if index == table.leading - 1 and e.shape == (n_P,) else np.full(n_P, np.nan)
    if table.leading:
        return e[index] if e.shape == (table.leading, n_P) else np.full(n_P, np.nan)
    if e.shape == (n_P,):
        return e
    if e.ndim == 2 and e.shape[0] == n_P:
        with np.errstate(invalid="ignore"):
            return np.nanmean(np.where(np.isfinite(e), e, np.nan), axis=1)
    return np.full(n_P, np.nan)


def frames(arrays: dict, eps_star: np.ndarray, n_seeds: int, source: str,
           index: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The aggregate/1 curves ("mean" rows only) and optima tables of one curve set."""
    P, lam = arrays["P"], arrays["grid"]
    E = arrays["E"] if index is None else arrays["E"][index]
    l0 = arrays["l0"] if index is None else arrays["l0"][index]
    G = len(lam)
    finite = np.isfinite(E) & (E > 0)
    curves = pd.DataFrame({
        "kind": "mean", "P": np.repeat(P, G), "seed": np.int64(-1),
        "grid_index": np.tile(np.arange(G, dtype=np.int64), len(P)),
        "log_lambda": np.tile(np.log(lam), len(P)), "lambda": np.tile(lam, len(P)),
        "test_error": np.where(finite, E, np.nan).ravel(), "sem": np.nan,
        # the per-point seed count is not stored: the seeds averaged where there is a value
        "n_seeds": np.where(finite, n_seeds, 0).ravel().astype(np.int64),
        "masked": ~finite.ravel()})[list(CURVE_COLUMNS)]
    ok = np.isfinite(l0) & (l0 > 0)
    optima = pd.DataFrame({
        "P": P, "seed": np.int64(-1), "lambda_star": np.where(ok, l0, np.nan), "eps_star": eps_star,
        "step_star": pd.array([None] * len(P), dtype="Int64"), "status": "completed",
        "used": ok, "excluded": np.where(ok, "", "no stored λ*"),
        "n_rows": np.int64(G), "n_dropped_nonmonotone": np.int64(0),
        "lambda_min": lam[0], "lambda_max": lam[-1], "cell_id": "",
        "path": source},  # the file the row came from: the audit's chain ends at it
        columns=list(OPTIMA_COLUMNS))
    return curves, optima


def aggregate_dir(out, experiment: str, arch: str, dataset: str, measure: str) -> Path:
    return Path(out) / "aggregate" / experiment / arch / dataset / measure


def outputs_of(table: str, pairs, out) -> list[Path]:
    """The aggregate files an import of ``table``'s files for ``pairs`` writes (names only)."""
    return [aggregate_dir(out, e, a, d, m) / f"{f}.parquet" for a, d in sorted(pairs)
            for e, m in TABLES[table].curve_sets() for f in ("curves", "optima")]


def convert(table: str, arch: str, dataset: str, path: Path) -> tuple[list, dict]:
    """[(directory-relative parts, curves, optima, footer)] of one file, and its report entry."""
    t = TABLES[table]
    d = read_npy_dict(path)
    arrays = check_layout(d, t, path)
    sha = sha256_file(path)
    n_seeds = len(np.asarray(d["seed_arr"]).ravel()) if "seed_arr" in d else None
    sets, entries = [], []
    for index, (experiment, measure) in enumerate(t.curve_sets()):
        curves, optima = frames(arrays, per_P_eps_star(d, t, index, len(arrays["P"])), n_seeds or 1,
                                str(path), index if t.leading else None)
        block = {"file": path.name, "sha256": sha, "table": table, "index": index if t.leading else None,
                 "n_seeds": n_seeds, "stored": stored_values(d, t, index),
                 "window": stored_window(d, t, index),
                 "note": "published seed means: no per-seed data, no bootstrap"}
        meta = provenance.provenance(config=None, inputs=[path], schema=SCHEMA, stage="published",
                                     group={"experiment": experiment, "arch": arch, "dataset": dataset,
                                            "measure": measure},
                                     published=block, **provenance.record("aggregate", experiment))
        sets.append(((experiment, arch, dataset, measure), curves, optima, meta))
        entries.append({"experiment": experiment, "measure": measure, "index": block["index"],
                        "stored": block["stored"], "window": block["window"]})
    report = {"file": path.name, "sha256": sha, "table": table, "arch": arch, "dataset": dataset,
              "n_P": int(len(arrays["P"])), "n_grid": int(len(arrays["grid"])), "n_seeds": n_seeds,
              "curve_sets": entries}
    return sets, report


def _strict_json(obj):
    """NaN/inf as null, so the report is JSON any parser reads."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict_json(v) for v in obj]
    return obj


def import_dir(root, out, table: str | None = None) -> dict:
    """Convert the files of ``table`` (default: of every table with files) found in ``root``; write
    their aggregates and the report (``out/import.json``, or ``out/import/<table>.json`` for one
    table) only when every file converted, and return the report."""
    found, skipped = scan(root)
    if table is not None and table not in TABLES:
        raise PublishedError(f"unknown published table {table!r}; known: {sorted(TABLES)}")
    if table is not None and table not in found:
        raise PublishedError(f"no file of table {table!r} in {analysis_dir(root)} (names: "
                             f"<Arch>_<Dataset>{TABLES[table].suffix}.npy)")
    tables = sorted(found) if table is None else [table]
    target = Path(out) / ("import.json" if table is None else f"import/{table}.json")
    out = Path(out)
    pending, imported = [], []
    for t in tables:  # everything is read and checked before anything is written
        for (arch, dataset), path in sorted(found[t].items()):
            sets, entry = convert(t, arch, dataset, path)
            pending += sets
            imported.append(entry)
    others = skipped + [{"file": p.name, "reason": f"table {t!r} not asked for"}
                        for t in sorted(found) if t not in tables for p in found[t].values()]
    report = _strict_json({"source": str(analysis_dir(root)), "tables": list(tables),
                           "imported": imported, "not_imported": others})
    written = []
    try:
        for parts, curves, optima, meta in pending:
            base = aggregate_dir(out, *parts)
            for name, df in (("curves", curves), ("optima", optima)):
                io.write_parquet(df, base / f"{name}.parquet", meta)
                written.append(base / f"{name}.parquet")
        with io.atomic_path(target, sealed=True) as tmp:  # strict JSON: no NaN
            tmp.write_text(json.dumps(report, indent=2, sort_keys=True, allow_nan=False) + "\n")
        written.append(target)
    except BaseException:
        for p in written:  # all or nothing: each file and its seal
            p.unlink(missing_ok=True)
            seal.seal_path(p).unlink(missing_ok=True)
        raise
    for e in imported:
        g = [f"{c['experiment']}/{c['measure']}: stored γ₁={c['stored'].get('gamma_1')} γ₂={c['stored'].get('gamma_2')}"
             for c in e["curve_sets"]]
        print(f"imported {e['file']} ({e['table']}, {e['n_P']} P values): " + "; ".join(g), file=sys.stderr)
    for s in others:
        print(f"not imported {s['file']}: {s['reason']}", file=sys.stderr)
    return report


def stored_from_meta(meta: dict) -> dict | None:
    """The stored fit values in an aggregate footer (None if not a published aggregate)."""
    block = (meta or {}).get("published")
    return None if not block else block.get("stored")


# ---------------------------------------------------------------------------------------------
# the refit settings (held in the config) and the refit

def settings_for(config: dict, table: str, arch: str, dataset: str) -> dict:
    """The analysis settings that refit (table, arch, dataset), both estimators. Table 1: those of
    ``published.experiment`` (the authors' windows); the appendix tables: those, with the window,
    γ₁ min P and γ₂ P range recovered for that file (``published.appendix``; ``window: stored`` =
    the file's own x_left_arr/x_right_arr)."""
    from . import config as cfg

    pub = config["published"]
    base = cfg.analysis_settings(config, pub["experiment"], arch, dataset)
    if table != "table1":
        entry = ((pub.get("appendix") or {}).get(table) or {}).get(f"{arch}/{dataset}")
        if entry is None:
            raise PublishedError(f"config key published.appendix.{table}: no settings for "
                                 f"{arch}/{dataset} (its file cannot be refitted without them)")
        base = {**base, "window": entry["window"], "gamma1_P_min": entry.get("gamma1_P_min"),
                "P_min": entry.get("P_min"), "P_max": entry.get("P_max")}
    return {**base, "estimator": "both"}


def resolve_window(settings: dict, meta: dict, where: str) -> dict:
    """``window: stored`` replaced by the window stored in the aggregate's source file (None
    bounds: x_left 0 = no lower bound, x_right 1 = up to λ_opt, the fit's limit)."""
    if settings.get("window") != "stored":
        return settings
    block = (meta or {}).get("published") or {}
    w = block.get("window")
    if w is None:
        raise PublishedError(f"{where}: window 'stored' but {block.get('file', 'its source file')} "
                             "stores no x_left_arr/x_right_arr")
    return {**settings, "window": {"x_left": w["x_left"] or 0.0,
                                   "x_right": 1.0 if w["x_right"] is None else w["x_right"]}}


def refit(curves, optima, settings: dict, out) -> dict:
    """fit.py on a published aggregate, with ``window: stored`` resolved from its footer (the fit
    records the resolved settings, so the audit's recompute refits exactly this)."""
    from . import fit

    meta = io.read_parquet_metadata(curves)
    return fit.run(curves, optima, resolve_window(settings, meta, str(curves)), out)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["refit"]:
        from .config import parse_settings

        ap = argparse.ArgumentParser(prog="python -m workflow_scripts.published refit",
                                     description="fit.py on a published aggregate, window: stored "
                                                 "read from the file it came from")
        for a in ("--curves", "--optima", "--settings", "--out"):
            ap.add_argument(a, required=True)
        args = ap.parse_args(argv[1:])
        try:
            res = refit(args.curves, args.optima, parse_settings(args.settings), args.out)
        except PublishedError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"fit {res['status']}", file=sys.stderr)
        return 0
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.published",
                                 description="Convert the authors' published analysis/*.npy files "
                                             "into aggregate/1 files that fit.py refits (read without "
                                             "running any code a pickle names). "
                                             "`... published refit --help`: the refit.")
    ap.add_argument("dir", help="a deep_norm clone, or its analysis/ folder")
    ap.add_argument("--out", default="results/published", help="output folder")
    ap.add_argument("--table", choices=sorted(TABLES),
                    help="import only this table's files, report in <out>/import/<table>.json "
                         "(default: every table found, report in <out>/import.json)")
    args = ap.parse_args(argv)
    try:
        import_dir(args.dir, args.out, args.table)
    except PublishedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
