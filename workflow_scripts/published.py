"""Import the authors' published seed-averaged curves (deep_norm ``analysis/*.npy``) as aggregates.

Why: Table 1 can be refitted from the authors' own data on a laptop in seconds, with their
estimator and windows (``fit.py``, ``estimator: authors``) and with ours, beside the values they
stored in each file. The files are not redistributed here (their repository has no licence): clone
https://github.com/Francill99/deep_norm and point ``published.dir`` (or this CLI) at it.

    python -m workflow_scripts.published ../deep_norm --out results/published

What a file holds (``np.load(path, allow_pickle=True).item()``, a dict), per (arch, dataset):
    P_arr (n_P,)                   sample sizes
    seed_arr                       the seeds averaged
    log_x_grid (n_grid,)           despite the name, λ values (log-spaced), one grid for every P
    mean_val_error_arr (n_P, n_grid) seed-averaged test error (fraction), NaN where no seed reached
    l_0_arr (n_P,)                 mean over the seeds of each seed's λ* (λ at its minimum error)
    eps_lam_star_P_arr, lambda_star_arr  the per-seed optima behind l_0_arr
    k1, gamma_1, err_gamma_1, k2, gamma_2, err_gamma_2  their fitted values
    min_P                          index into P_arr of the smallest P in their γ₁ fit
Names are ``<Arch>_<Dataset>.npy`` with Arch in CNN/ResNet/ViT and Dataset in MNIST/CIFAR10/
CIFAR100. Files with a suffix (``_wd``, ``_SGD``, ``_norms``, ...) have other layouts: they are
listed as not imported, by name, never guessed at.

What is written, under ``--out``:
    aggregate/<arch>/<dataset>/curves.parquet   aggregate/1, only "mean" rows (seed -1): the
                                                published curve of each P on its λ grid
    aggregate/<arch>/<dataset>/optima.parquet   one row per P (seed -1): λ* = l_0_arr (the mean of
                                                the seeds' λ*, what the authors' γ₂ is fitted on),
                                                ε* = the mean of the seeds' ε* where stored
    import.json                                 imported and not-imported files, with reasons
Both footers carry ``published``: the source file and its sha256, the seed count, the stored fit
values and min_P as a P value. ``fit.py`` reads such an aggregate as one curve per P and skips the
bootstrap (nothing to resample; the intervals are null and fit.json says why).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import io, provenance
from .aggregate import CURVE_COLUMNS, OPTIMA_COLUMNS, SCHEMA

ARCHS = {"CNN": "cnn", "ResNet": "resnet", "ViT": "vit"}
DATASETS = {"MNIST": "mnist", "CIFAR10": "cifar10", "CIFAR100": "cifar100"}
REQUIRED = ("P_arr", "seed_arr", "log_x_grid", "mean_val_error_arr", "l_0_arr", "k1", "gamma_1",
            "err_gamma_1", "k2", "gamma_2", "err_gamma_2", "min_P")
STORED = ("k1", "gamma_1", "err_gamma_1", "k2", "gamma_2", "err_gamma_2")
# The authors' λ is their variant of the spectral complexity (see the `authors` experiment).
MEASURE = "spectral_complexity_authors"
NAME = re.compile(r"^(CNN|ResNet|ViT)_(MNIST|CIFAR100|CIFAR10)(_.*)?\.npy$")


class PublishedError(ValueError):
    """A published folder or file that cannot be imported; the message names the file and key."""


def analysis_dir(root) -> Path:
    """The folder holding the .npy files: ``root/analysis`` when root is a deep_norm clone."""
    root = Path(root)
    if not root.is_dir():
        raise PublishedError(f"published.dir {root} is not a directory (clone "
                             "https://github.com/Francill99/deep_norm and point at it)")
    sub = root / "analysis"
    return sub if sub.is_dir() else root


def scan(root) -> tuple[dict, list[dict]]:
    """({(arch, dataset): path} of the main files, [{file, reason}] of the .npy files skipped)."""
    folder = analysis_dir(root)
    main, skipped = {}, []
    for path in sorted(folder.glob("*.npy")):
        m = NAME.match(path.name)
        if m is None:
            skipped.append({"file": path.name, "reason": "name is not <Arch>_<Dataset>.npy"})
        elif m.group(3):
            skipped.append({"file": path.name,
                            "reason": f"suffix {m.group(3)!r}: another layout, not imported"})
        else:
            main[(ARCHS[m.group(1)], DATASETS[m.group(2)])] = path
    if not main:
        expected = ", ".join(f"{a}_{d}.npy" for a in ARCHS for d in DATASETS)
        raise PublishedError(f"no published file in {folder}: expected some of {expected}")
    return main, skipped


def load_file(path) -> dict:
    """The dict of one main file, checked: every required key, consistent shapes."""
    path = Path(path)
    try:
        obj = np.load(path, allow_pickle=True)
        d = obj.item() if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == () else obj
    except Exception as e:  # a truncated or foreign file: say which
        raise PublishedError(f"{path}: cannot be read as a pickled dict ({e})") from None
    if not isinstance(d, dict):
        raise PublishedError(f"{path}: holds a {type(d).__name__}, not a dict")
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise PublishedError(f"{path}: lacks key(s) {missing}")
    P = np.asarray(d["P_arr"]).ravel()
    grid = np.asarray(d["log_x_grid"], dtype=float).ravel()
    E = np.asarray(d["mean_val_error_arr"], dtype=float)
    if E.shape != (len(P), len(grid)):
        raise PublishedError(f"{path}: mean_val_error_arr has shape {E.shape}, expected "
                             f"(len(P_arr), len(log_x_grid)) = ({len(P)}, {len(grid)})")
    if np.asarray(d["l_0_arr"]).ravel().shape != P.shape:
        raise PublishedError(f"{path}: l_0_arr has {np.asarray(d['l_0_arr']).size} entries for "
                             f"{len(P)} P values")
    if not (np.all(grid > 0) and np.all(np.diff(grid) > 0)):
        raise PublishedError(f"{path}: log_x_grid must hold increasing positive λ values")
    if not 0 <= int(d["min_P"]) < len(P):
        raise PublishedError(f"{path}: min_P={d['min_P']} is not an index into P_arr")
    return d


def per_P_eps_star(d: dict, n_P: int) -> np.ndarray:
    """Mean over seeds of ε* per P, if stored in a recognisable shape, else NaN."""
    e = d.get("eps_lam_star_P_arr")
    if e is None:
        return np.full(n_P, np.nan)
    e = np.asarray(e, dtype=float)
    if e.ndim == 1 and len(e) == n_P:
        return e
    if e.ndim == 2 and e.shape[0] == n_P:
        with np.errstate(invalid="ignore"):
            return np.nanmean(np.where(np.isfinite(e), e, np.nan), axis=1)
    return np.full(n_P, np.nan)


def frames(d: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The aggregate/1 curves ("mean" rows only) and optima tables of one file."""
    P = np.asarray(d["P_arr"]).ravel().astype(np.int64)
    lam = np.asarray(d["log_x_grid"], dtype=float).ravel()
    E = np.asarray(d["mean_val_error_arr"], dtype=float)
    n_seeds = len(np.asarray(d["seed_arr"]).ravel())
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
    l0 = np.asarray(d["l_0_arr"], dtype=float).ravel()
    ok = np.isfinite(l0) & (l0 > 0)
    optima = pd.DataFrame({
        "P": P, "seed": np.int64(-1), "lambda_star": np.where(ok, l0, np.nan),
        "eps_star": per_P_eps_star(d, len(P)),
        "step_star": pd.array([None] * len(P), dtype="Int64"), "status": "completed",
        "used": ok, "excluded": np.where(ok, "", "no stored λ*"),
        "n_rows": np.int64(G), "n_dropped_nonmonotone": np.int64(0),
        "lambda_min": lam[0], "lambda_max": lam[-1], "cell_id": "", "path": ""},
        columns=list(OPTIMA_COLUMNS))
    return curves, optima


def stored_values(d: dict) -> dict:
    out = {k: float(d[k]) for k in STORED}
    out["min_P_index"] = int(d["min_P"])
    out["min_P"] = int(np.asarray(d["P_arr"]).ravel()[int(d["min_P"])])
    out["gamma_pred"] = out["gamma_1"] * out["gamma_2"]
    return out


def import_dir(root, out) -> dict:
    """Convert every main file of ``root``; returns (and writes as out/import.json) the report."""
    main, skipped = scan(root)
    out = Path(out)
    imported = []
    for (arch, dataset), path in sorted(main.items()):
        d = load_file(path)
        curves, optima = frames(d)
        block = {"file": path.name, "sha256": provenance.sha256_file(path),
                 "n_seeds": len(np.asarray(d["seed_arr"]).ravel()), "stored": stored_values(d),
                 "note": "published seed means: no per-seed data, no bootstrap"}
        meta = provenance.provenance(config=None, inputs=[path], schema=SCHEMA, stage="published",
                                     group={"experiment": "published", "arch": arch,
                                            "dataset": dataset, "measure": MEASURE},
                                     published=block, **provenance.record("aggregate", "published"))
        base = out / "aggregate" / arch / dataset
        io.write_parquet(curves, base / "curves.parquet", meta)
        io.write_parquet(optima, base / "optima.parquet", meta)
        imported.append({"file": path.name, "arch": arch, "dataset": dataset,
                         "n_P": int(len(curves["P"].unique())), **block["stored"]})
        print(f"imported {path.name}: {imported[-1]['n_P']} P values, stored γ₁={block['stored']['gamma_1']:.4f}"
              f" γ₂={block['stored']['gamma_2']:.4f}", file=sys.stderr)
    for s in skipped:
        print(f"not imported {s['file']}: {s['reason']}", file=sys.stderr)
    report = {"source": str(analysis_dir(root)), "imported": imported, "not_imported": skipped}
    io.write_json(report, out / "import.json")
    return report


def stored_from_meta(meta: dict) -> dict | None:
    """The stored fit values in an aggregate footer (None if not a published aggregate)."""
    block = (meta or {}).get("published")
    return None if not block else block.get("stored")



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.published",
                                 description="Convert the authors' published analysis/*.npy files "
                                             "into aggregate/1 files that fit.py refits.")
    ap.add_argument("dir", help="a deep_norm clone, or its analysis/ folder")
    ap.add_argument("--out", default="results/published", help="output folder")
    args = ap.parse_args(argv)
    try:
        import_dir(args.dir, args.out)
    except PublishedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
