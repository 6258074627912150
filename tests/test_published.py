"""The published-curve import and the authors' estimator: refitting a file in the authors' format
gives the γ₁ and γ₂ stored in it.

The files are built here with exactly the deep_norm layout (the real ones are not ours to ship),
and their stored values are computed by the authors' algorithm written out independently below
(numpy polyfit in log10, per-P slopes averaged), not by fit.py.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from workflow_scripts import config as cfg
from workflow_scripts import fit, published
from workflow_scripts import table as tab
from workflow_scripts.config import load_config
from workflow_scripts.fit import load_fit_data

from .conftest import REPO


def seed_curves(rng, P_arr, n_seeds, lam_grid, gamma1, gamma2, lam0, lam_span):
    """Per-seed test errors on lam_grid (NaN outside each seed's λ range) and per-seed λ*."""
    curves, lam_star, eps_star = [], [], []
    for i, P in enumerate(P_arr):
        rows, ls, es = [], [], []
        for s in range(n_seeds):
            lo = lam0 * P ** gamma2 * math.exp(0.1 * rng.standard_normal())
            e_opt = 0.3 * (P / P_arr[0]) ** (-gamma1 * gamma2) * math.exp(0.05 * rng.standard_normal())
            # the seed's own trajectory: λ from lo·10^-lam_span up to 3·lo, then read onto the grid
            lam = lo * np.geomspace(10.0 ** -lam_span, 3.0, 300) * math.exp(0.2 * rng.standard_normal())
            x = lam / lo
            err = e_opt * np.where(x <= 1, x ** -gamma1, x ** (0.3 * gamma1))
            err = err * np.exp(0.02 * rng.standard_normal(len(lam)))
            row = np.interp(np.log10(lam_grid), np.log10(lam), err, left=np.nan, right=np.nan)
            rows.append(row)
            j = int(np.argmin(err))
            ls.append(lam[j])
            es.append(err[j])
        curves.append(np.array(rows))
        lam_star.append(ls)
        eps_star.append(es)
    return curves, np.array(lam_star), np.array(eps_star)


def authors_fit(P_arr, grid, mean, l_0, x_left, x_right, min_P, gamma2_P_min):
    """The authors' notebook, step by step (independent of fit.py)."""
    slopes, icpts, variances = [], [], []
    for i in range(min_P, len(P_arr)):
        row = mean[i]
        j = int(np.nanargmin(row))
        x = grid / grid[j]
        y = row / row[j]
        sel = np.isfinite(y) & (x <= x_right) & ((x >= x_left) if x_left > 0 else True)
        X, Y = np.log10(x[sel]), np.log10(y[sel])
        b, a = np.polyfit(X, Y, 1)
        resid = Y - (a + b * X)
        variances.append(resid @ resid / (len(X) - 2) / ((X - X.mean()) @ (X - X.mean())))
        slopes.append(b)
        icpts.append(a)
    use = P_arr >= gamma2_P_min
    lx, ly = np.log(P_arr[use]), np.log(l_0[use])
    g2, a2 = np.polyfit(lx, ly, 1)
    r2 = ly - (a2 + g2 * lx)
    err2 = math.sqrt(r2 @ r2 / (len(lx) - 2) / ((lx - lx.mean()) @ (lx - lx.mean())))
    return {"gamma_1": -float(np.mean(slopes)), "k1": float(np.mean(10.0 ** np.array(icpts))),
            "err_gamma_1": math.sqrt(float(np.mean(variances))), "gamma_2": float(g2),
            "k2": math.exp(a2), "err_gamma_2": err2}


# Files shaped like the authors' for four pairs, refitted with the windows of config/config.yaml's
# `reproduce` experiment (their notebook's). name: (arch, dataset, λ grid, P_arr, true γ₁, γ₂,
# λ_opt scale, decades of λ/λ_opt the seeds reach).
CASES = {
    "cnn-mnist": ("cnn", "mnist", np.geomspace(1e-4, 1e5, 130), [1500, 3000, 6000, 12000, 24000, 48000],
                  0.3, 0.6, 0.5, 4),
    "cnn-cifar10": ("cnn", "cifar10", np.geomspace(1e-4, 1e5, 130), [8000, 16000, 28000, 36000, 48000],
                    0.35, 0.5, 0.5, 3),
    "resnet-cifar10": ("resnet", "cifar10", np.geomspace(1e-4, 1e6, 150),
                       [4000, 8000, 11000, 16000, 32000, 48000], 0.5, 0.9, 0.5, 4),
    "vit-cifar100": ("vit", "cifar100", np.geomspace(1e-40, 1e8, 200), [4000, 8000, 16000, 31000, 48000],
                     0.05, 1.2, 1e-3, 35),
}
FILE = {"cnn": "CNN", "resnet": "ResNet", "vit": "ViT", "mnist": "MNIST", "cifar10": "CIFAR10",
        "cifar100": "CIFAR100"}
REPRODUCE = load_config(REPO / "config" / "config.yaml")


def reproduce_settings(case, estimator="authors"):
    arch, dataset = CASES[case][:2]
    return {**cfg.analysis_settings(REPRODUCE, "reproduce", arch, dataset), "estimator": estimator,
            "bootstrap": {"n": 100, "seed": 0}}


def mean_curves(curves):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.array([np.nanmean(c, axis=0) for c in curves])


def write_published(folder, case, seed=0, drop=(), suffix=""):
    """A main-layout file (``suffix`` "_SGD" for the SGD layout, the same); ``drop``: stored keys
    the file lacks (the real CNN_MNIST.npy has no k2)."""
    arch, dataset, grid, P_arr, g1, g2, lam0, span = CASES[case]
    P_arr = np.array(P_arr)
    a = reproduce_settings(case)
    min_P = int(np.flatnonzero(P_arr >= a["gamma1_P_min"])[0])
    rng = np.random.default_rng(seed)
    curves, lam_star, eps_star = seed_curves(rng, P_arr, 5, grid, g1, g2, lam0, span)
    mean = mean_curves(curves)
    l_0 = lam_star.mean(axis=1)
    stored = authors_fit(P_arr, grid, mean, l_0, a["window"]["x_left"], a["window"]["x_right"], min_P,
                         a["P_min"] or 0)
    d = {"P_arr": P_arr, "seed_arr": np.arange(5), "log_x_grid": grid, "mean_val_error_arr": mean,
         "l_0_arr": l_0, "eps_lam_star_P_arr": eps_star, "lambda_star_arr": lam_star,
         "min_P": min_P, "C2": 1.5, "factor": 2.0, **stored}
    for k in drop:
        del d[k]
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{FILE[arch]}_{FILE[dataset]}{suffix}.npy", d, allow_pickle=True)
    return d


# The appendix files, built with the settings config/config.yaml recovered for them
# (published.appendix). name: (table, arch, dataset, grid, P_arr, per curve set (γ₁, γ₂, λ_opt scale,
# decades reached, stored window (x_left, x_right); None = no bound)).
APPENDIX = {
    "cnn-wd": ("weight_decay", "cnn", "cifar10", np.geomspace(1e-4, 1e5, 130),
               [4000, 6000, 11000, 16000, 26000, 36000, 48000],
               [(0.35, 0.5, 0.5, 3, (None, 0.3)), (0.3, 0.4, 0.3, 3, (1e-2, 0.2)),
                (0.25, 0.3, 0.2, 3, (None, 0.1))]),
    "resnet-wd": ("weight_decay", "resnet", "cifar10", np.geomspace(1e-4, 1e6, 150),
                  [16000, 26000, 36000, 48000],
                  [(0.5, 0.9, 0.5, 4, (1.5e-3, 4e-3)), (0.45, 0.8, 0.5, 4, (1e-3, 1e-2)),
                   (0.4, 0.7, 0.5, 4, (None, 1e-2))]),
    "resnet-norms": ("norms", "resnet", "cifar10", np.geomspace(1e-4, 1e6, 200),
                     [4000, 8000, 16000, 26000, 36000, 48000],
                     [(0.5, 0.9, 0.5, 4, (1e-3, 1e-2)), (0.45, 0.6, 0.4, 4, (1e-3, 1e-2)),
                      (0.6, 0.5, 0.5, 4, (None, 1e-2)), (0.3, 1.5, 0.5, 4, (1e-3, 0.05))]),
    "cnn-norms": ("norms", "cnn", "cifar10", np.geomspace(1e-5, 1e6, 2000),
                  [4000, 8000, 16000, 26000, 48000],
                  [(0.35, 0.5, 0.5, 3, (None, 0.3)), (0.3, 0.45, 0.5, 3, (1e-3, 0.3)),
                   (0.3, 0.6, 0.5, 3, (1e-3, 0.1)), (0.2, 1.2, 0.5, 3, (None, 0.1))]),
    "cnn-cifar10-sgd": ("sgd", "cnn", "cifar10", np.geomspace(1e-4, 1e5, 130),
                        [4000, 8000, 16000, 26000, 36000, 48000], [(0.3, 0.5, 0.5, 3, None)]),
    "cnn-cifar100-sgd": ("sgd", "cnn", "cifar100", np.geomspace(1e-4, 1e5, 130),
                         [4000, 8000, 16000, 26000, 36000, 48000], [(0.2, 0.4, 0.5, 3, None)]),
}
SUFFIX = {"weight_decay": "_wd", "norms": "_norms", "sgd": "_SGD"}


def write_appendix(folder, name, seed=0):
    """A file of an appendix layout; returns per curve set the stored values the authors'
    algorithm (``authors_fit``, above) gives with the recovered settings."""
    table, arch, dataset, grid, P_arr, sets = APPENDIX[name]
    P_arr = np.array(P_arr)
    s = published.settings_for(REPRODUCE, table, arch, dataset)
    min_P = 0 if s["gamma1_P_min"] is None else int(np.flatnonzero(P_arr >= s["gamma1_P_min"])[0])
    rng = np.random.default_rng(seed)
    means, l0s, eps, lams, fits = [], [], [], [], []
    for g1, g2, lam0, span, window in sets:
        curves, lam_star, eps_star = seed_curves(rng, P_arr, 4, grid, g1, g2, lam0, span)
        means.append(mean_curves(curves))
        l0s.append(lam_star.mean(axis=1))
        eps.append(eps_star.mean(axis=1))
        lams.append(lam_star.mean(axis=1))
        x_left, x_right = window if window is not None else (s["window"]["x_left"], s["window"]["x_right"])
        fits.append(authors_fit(P_arr, grid, means[-1], l0s[-1], x_left or 0, x_right, min_P,
                                s["P_min"] or 0))
    base = {"P_arr": P_arr, "seed_arr": np.arange(4), "log_x_grid": grid}
    if table == "sgd":
        d = {**base, "mean_val_error_arr": means[0], "l_0_arr": l0s[0], "eps_lam_star_P_arr": eps[0],
             "lambda_star_arr": lams[0], **fits[0]}
        if dataset == "cifar100":
            d["min_P"] = min_P
        # CNN-CIFAR-10 SGD stores no min_P, as the real file
    else:
        d = {**base, "mean_val_error_arr": np.array(means), "l_0_arr": np.array(l0s),
             "x_left_arr": np.array([w[4][0] for w in sets], dtype=object),
             "x_right_arr": np.array([w[4][1] for w in sets], dtype=object),
             **{f"{k}_arr": np.array([f[k] for f in fits]) for k in ("gamma_1", "err_gamma_1", "gamma_2",
                                                                      "err_gamma_2")}}
        if table == "weight_decay":
            d["eps_lam_star_P_arr"], d["lambda_star_arr"] = np.array(eps), np.array(lams)
        else:  # the norms: these two belong to the last norm only
            d["eps_lam_star_P_arr"], d["lambda_star_arr"] = eps[-1], lams[-1]
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{FILE[arch]}_{FILE[dataset]}{SUFFIX[table]}.npy", d, allow_pickle=True)
    return fits


def aggregate_of(out, experiment, arch, dataset, measure=published.MEASURE):
    base = published.aggregate_dir(out, experiment, arch, dataset, measure)
    return base / "curves.parquet", base / "optima.parquet"


@pytest.mark.parametrize("case", sorted(CASES))
def test_authors_estimator_gives_the_stored_exponents(tmp_path, case):
    d = write_published(tmp_path / "deep_norm" / "analysis", case)
    report = published.import_dir(tmp_path / "deep_norm", tmp_path / "out")
    (row,) = report["imported"]
    data, meta = load_fit_data(*aggregate_of(tmp_path / "out", "published", row["arch"], row["dataset"]))
    assert data.published and meta["published"]["stored"]["gamma_1"] == pytest.approx(d["gamma_1"])
    res = fit.estimate(data, reproduce_settings(case))
    e = res["estimates"]
    assert abs(e["gamma1"]["value"] - d["gamma_1"]) < 1e-3
    assert abs(e["gamma2"]["value"] - d["gamma_2"]) < 1e-3
    assert e["gamma1"]["se_ols"] == pytest.approx(d["err_gamma_1"], rel=1e-6)
    assert e["gamma2"]["se_ols"] == pytest.approx(d["err_gamma_2"], rel=1e-6)
    assert e["k1"]["value"] == pytest.approx(d["k1"], rel=1e-6)
    # no per-seed data: no bootstrap, and fit.json says why
    assert e["gamma1"]["ci_low"] is None and "no per-seed" in res["bootstrap"]["skipped"]
    P_arr = np.array(CASES[case][3])
    assert res["P_used"]["gamma1"] == [int(P) for P in P_arr[d["min_P"]:]]


@pytest.mark.parametrize("name", sorted(APPENDIX))
def test_appendix_layouts_refit_to_their_stored_exponents(tmp_path, name):
    """Every curve set of the _wd (3), _norms (4, grids of 200 and 2000 points) and _SGD files,
    refitted with the recovered settings (window: stored read from the file), gives the values the
    authors' algorithm stores, and the aggregates carry them."""
    table, arch, dataset, grid, P_arr = APPENDIX[name][:5]
    fits = write_appendix(tmp_path / "analysis", name)
    report = published.import_dir(tmp_path, tmp_path / "out", table)
    assert json.loads((tmp_path / "out" / "import" / f"{table}.json").read_text()) == report
    sets = published.TABLES[table].curve_sets()
    assert len(sets) == len(fits) == {"weight_decay": 3, "norms": 4, "sgd": 1}[table]
    for (experiment, measure), want in zip(sets, fits):
        curves, optima = aggregate_of(tmp_path / "out", experiment, arch, dataset, measure)
        out = tmp_path / "fit" / experiment / measure / "fit.json"
        res = published.refit(curves, optima, published.settings_for(REPRODUCE, table, arch, dataset), out)
        auth = res["by_estimator"]["authors"]["estimates"]
        assert abs(auth["gamma1"]["value"] - want["gamma_1"]) < 1e-3, (experiment, measure)
        assert abs(auth["gamma2"]["value"] - want["gamma_2"]) < 1e-3, (experiment, measure)
        assert auth["gamma1"]["se_ols"] == pytest.approx(want["err_gamma_1"], rel=1e-6)
        stored = res["published"]["stored"]
        assert stored["gamma_1"] == pytest.approx(want["gamma_1"])
        assert stored["gamma_pred"] == pytest.approx(want["gamma_1"] * want["gamma_2"])
        window = res["settings"]["window"]
        assert window["x_right"] > 0 and window["x_left"] >= 0  # resolved, never "stored"
        assert "by_estimator" in res and res["by_estimator"]["ours"]["status"] == "ok"
        opt, _ = published.io.read_parquet(optima)
        assert set(opt["path"]) == {str(tmp_path / "analysis" / report["imported"][0]["file"])}
    if table == "sgd":  # CNN-CIFAR-10 SGD stores no min_P (as the real file): null, not an error
        min_P = report["imported"][0]["curve_sets"][0]["stored"]["min_P"]
        assert min_P is None if dataset == "cifar10" else min_P == P_arr[0]
    else:
        assert report["imported"][0]["curve_sets"][0]["stored"].get("k1") is None


def test_stored_window_none_entries_mean_no_bound(tmp_path):
    write_appendix(tmp_path / "a", "cnn-wd")
    published.import_dir(tmp_path / "a", tmp_path / "out", "weight_decay")
    windows = []
    for e, m in published.TABLES["weight_decay"].curve_sets():
        meta = published.io.read_parquet_metadata(aggregate_of(tmp_path / "out", e, "cnn", "cifar10")[0])
        windows.append(published.resolve_window({"window": "stored"}, meta, "x")["window"])
    assert windows == [{"x_left": 0.0, "x_right": 0.3}, {"x_left": 1e-2, "x_right": 0.2},
                       {"x_left": 0.0, "x_right": 0.1}]


def test_our_estimator_differs_on_the_same_file(tmp_path):
    """The two estimators are not the same computation (pooled vs mean of slopes, refined optima)."""
    d = write_published(tmp_path / "a", "cnn-mnist", seed=3)
    published.import_dir(tmp_path / "a", tmp_path / "out")
    data, _ = load_fit_data(*aggregate_of(tmp_path / "out", "published", "cnn", "mnist"))
    both = fit.estimate(data, reproduce_settings("cnn-mnist", "both"))
    assert set(both["by_estimator"]) == {"ours", "authors"}
    ours, auth = (both["by_estimator"][k]["estimates"] for k in ("ours", "authors"))
    assert both["estimates"] == ours
    assert abs(auth["gamma1"]["value"] - d["gamma_1"]) < 1e-3
    assert ours["gamma2"]["value"] != pytest.approx(auth["gamma2"]["value"], abs=1e-6)


def test_files_without_k2_C2_factor_min_P_import_with_nulls(tmp_path):
    """Three real main files have no k2, one SGD file no min_P: only the four arrays the fit reads
    are required; the report is strict JSON with null where a value is not stored."""
    folder = tmp_path / "analysis"
    write_published(folder, "cnn-mnist", drop=("k2", "C2", "factor", "min_P"))
    d = write_published(folder, "vit-cifar100", drop=("seed_arr", "eps_lam_star_P_arr"))
    report = published.import_dir(tmp_path, tmp_path / "out")
    text = (tmp_path / "out" / "import.json").read_text()
    assert "NaN" not in text and json.loads(text, parse_constant=lambda c: pytest.fail(c)) == report
    by = {r["file"]: r["curve_sets"][0]["stored"] for r in report["imported"]}
    assert by["CNN_MNIST.npy"]["k2"] is None and by["CNN_MNIST.npy"]["min_P"] is None
    assert by["CNN_MNIST.npy"]["C2"] is None and by["CNN_MNIST.npy"]["gamma_2"] is not None
    assert by["ViT_CIFAR100.npy"]["k2"] == pytest.approx(d["k2"]) and by["ViT_CIFAR100.npy"]["C2"] == 1.5
    opt, _ = published.io.read_parquet(aggregate_of(tmp_path / "out", "published", "vit", "cifar100")[1])
    assert opt["eps_star"].isna().all()  # not stored: NaN, not invented


def test_import_reports_unknown_files_and_bad_input(tmp_path):
    folder = tmp_path / "analysis"
    write_published(folder, "cnn-mnist")
    np.save(folder / "ResNet_CIFAR10_other.npy", {"other": 1}, allow_pickle=True)
    report = published.import_dir(tmp_path, tmp_path / "out")
    assert [r["file"] for r in report["imported"]] == ["CNN_MNIST.npy"]
    assert [s["file"] for s in report["not_imported"]] == ["ResNet_CIFAR10_other.npy"]
    assert json.loads((tmp_path / "out" / "import.json").read_text()) == report

    with pytest.raises(published.PublishedError, match="not a directory"):
        published.scan(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(published.PublishedError, match="expected some of CNN_MNIST.npy"):
        published.scan(empty)
    with pytest.raises(published.PublishedError, match="no file of table 'sgd'"):
        published.import_dir(tmp_path, tmp_path / "out1", "sgd")


def _nothing_written(out):
    return not out.exists() or not any(p.is_file() for p in out.rglob("*"))


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.pop("l_0_arr"), "lacks key 'l_0_arr'"),
    (lambda d: d.update(mean_val_error_arr=d["mean_val_error_arr"][:, :-1]),
     "key 'mean_val_error_arr' has shape"),
    (lambda d: d.update(log_x_grid=d["log_x_grid"][::-1]), "key 'log_x_grid' must hold increasing"),
    (lambda d: d.update(min_P=99), "key 'min_P' = 99 is not an index"),
    (lambda d: d.update(P_arr=np.array(["a", "b"])), "key 'P_arr' holds an array of dtype <U1"),
])
def test_a_wrong_layout_names_file_and_key_and_writes_nothing(tmp_path, damage, message):
    folder = tmp_path / "analysis"
    write_published(folder, "cnn-cifar10")  # a good file beside it: still nothing is written
    d = write_published(folder, "cnn-mnist")
    damage(d)
    np.save(folder / "CNN_MNIST.npy", d, allow_pickle=True)
    with pytest.raises(published.PublishedError, match=re.escape(f"CNN_MNIST.npy: {message}")):
        published.import_dir(tmp_path, tmp_path / "out")
    assert _nothing_written(tmp_path / "out")
    assert published.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert _nothing_written(tmp_path / "out")


def test_wrong_leading_axis_and_truncated_files_are_refused(tmp_path):
    folder = tmp_path / "analysis"
    write_appendix(folder, "cnn-wd")
    path = folder / "CNN_CIFAR10_wd.npy"
    d = published.read_npy_dict(path)
    # a norms-shaped file (leading axis 3 is not 4) saved as _norms
    np.save(folder / "CNN_CIFAR10_norms.npy", d, allow_pickle=True)
    with pytest.raises(published.PublishedError,
                       match=r"CNN_CIFAR10_norms.npy: key 'mean_val_error_arr' has shape \(3, "):
        published.import_dir(tmp_path, tmp_path / "out", "norms")
    d["x_left_arr"] = np.array([None, 1e-2], dtype=object)
    np.save(path, d, allow_pickle=True)
    with pytest.raises(published.PublishedError, match=r"CNN_CIFAR10_wd.npy: key 'x_left_arr' has shape"):
        published.import_dir(tmp_path, tmp_path / "out", "weight_decay")
    write_appendix(folder, "cnn-wd")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(published.PublishedError, match="CNN_CIFAR10_wd.npy: cannot be read as a pickled dict"):
        published.import_dir(tmp_path, tmp_path / "out", "weight_decay")
    np.save(path, np.arange(3.0))
    with pytest.raises(published.PublishedError, match="not a pickled dict"):
        published.read_npy_dict(path)
    assert _nothing_written(tmp_path / "out")


class _RunsCode:
    """Pickles as a call of builtins.exec: what a hostile file would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def write_hostile(folder, marker, name="CNN_MNIST.npy"):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / name, {"P_arr": np.arange(1, 4), "payload": _RunsCode(marker)}, allow_pickle=True)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "marker"
    folder = tmp_path / "analysis"
    write_hostile(folder, marker)
    with pytest.raises(published.PublishedError,
                       match=r"CNN_MNIST.npy: refused to load the global builtins.exec"):
        published.read_npy_dict(folder / "CNN_MNIST.npy")
    code = subprocess.run([sys.executable, "-m", "workflow_scripts.published", str(tmp_path), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO)
    assert code.returncode == 2 and "refused to load the global builtins.exec" in code.stderr
    assert not marker.exists() and _nothing_written(tmp_path / "out")
    # and the audit, which reads the .npy at the end of a chain, refuses it too
    from workflow_scripts import audit

    aud = audit.Auditor(tmp_path)
    node = aud.audit(folder / "CNN_MNIST.npy")
    assert node.kind == "published" and "refused" in node.problems[0] and not marker.exists()
    np.load(folder / "CNN_MNIST.npy", allow_pickle=True)  # the file is really hostile: np.load runs it
    assert marker.read_text() == "ran"


def test_numpy_1_pickles_and_object_arrays_of_numbers_load(tmp_path):
    """Files written by numpy 1 name numpy.core.multiarray; both spellings are admitted, and object
    arrays holding numbers and None (x_left_arr) pass, while any other object does not."""
    import pickle

    d = {"a": np.arange(3.0), "w": np.array([None, 1e-3], dtype=object), "n": np.int64(3), "s": "x"}
    arr = np.empty((), dtype=object)
    arr[()] = d
    body = pickle.dumps(arr, protocol=2)
    assert b"numpy._core" in body or b"numpy.core" in body
    body = body.replace(b"numpy._core.", b"numpy.core.")
    header = io_header()
    path = tmp_path / "old.npy"
    path.write_bytes(header + body)
    got = published.read_npy_dict(path)
    assert np.array_equal(got["a"], d["a"]) and list(got["w"]) == [None, 1e-3] and got["n"] == 3
    np.save(path, {"bad": np.array([b"x"], dtype=object)}, allow_pickle=True)
    with pytest.raises(published.PublishedError, match="key 'bad' holds a bytes"):
        published.read_npy_dict(path)
    np.save(path, {"bad": np.array([("a", 1)], dtype=[("x", "U1"), ("y", "i4")])}, allow_pickle=True)
    with pytest.raises(published.PublishedError, match="key 'bad' holds an array of dtype"):
        published.read_npy_dict(path)


def io_header() -> bytes:
    """The .npy header of a 0-d object array (what np.save writes before the pickle)."""
    import io as stdio

    from numpy.lib import format as npy_format

    buf = stdio.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    return buf.getvalue()


def test_authors_estimator_on_per_seed_curves_averages_seeds_and_their_lambda_star():
    """On our own aggregates (per-seed curves) the authors' estimator takes the nanmean over seeds
    and the arithmetic mean of the seeds' λ*, and gets bootstrap intervals like ours."""
    rng = np.random.default_rng(7)
    P_ARR = np.array([1000, 2000, 4000, 8000, 16000, 32000])
    grid = np.geomspace(1e-4, 1e4, 100)
    curves, lam_star, eps_star = seed_curves(rng, P_ARR, 6, grid, 0.4, 0.8, 0.5, 4)
    data = fit.FitData(P=P_ARR, grids=[np.log(grid)] * len(P_ARR), curves=curves,
                       log_lambda_star=list(np.log(lam_star)), eps_star=list(eps_star))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.array([np.nanmean(c, axis=0) for c in curves])
    want = authors_fit(P_ARR, grid, mean, lam_star.mean(axis=1), 1e-3, 0.1, 1, 0)
    s = {"window": {"x_left": 1e-3, "x_right": 0.1}, "gamma1_P_min": int(P_ARR[1]),
         "min_seeds": 1, "estimator": "authors", "bootstrap": {"n": 200, "seed": 0}}
    e = fit.estimate(data, s)["estimates"]
    assert e["gamma1"]["value"] == pytest.approx(want["gamma_1"], abs=1e-9)
    assert e["gamma2"]["value"] == pytest.approx(want["gamma_2"], abs=1e-9)
    for k in ("gamma1", "gamma2", "gamma_pred", "gamma_meas"):
        assert e[k]["ci_low"] <= e[k]["value"] <= e[k]["ci_high"] and e[k]["n_valid"] == 200
    assert abs(e["gamma1"]["value"] - 0.4) < 0.03  # and it finds the law it was built with


def _snakemake(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
           str(workdir), "--configfile", str(REPO / "config" / "config.yaml"), *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def _jobs(out: str) -> set[str]:
    """Rule names in the 'Job stats' table of a snakemake run."""
    names = set()
    for ln in out.split("Job stats:")[1].splitlines()[3:]:
        if not ln.strip() or ln.startswith("total"):
            break
        names.add(ln.split()[0])
    return names


PUBLISHED_RULES = {"published_fit", "published_sensitivity"} | {
    f"{kind}_{t}" for t in published.TABLES for kind in ("published_import", "published_table")} | {
    t.target for t in published.TABLES.values()} | {f"sensitivity_{t}_published" for t in published.TABLES}
TARGETS = [t.target for t in published.TABLES.values()] + [f"sensitivity_{t}_published"
                                                           for t in published.TABLES]


@pytest.mark.slow
def test_published_targets_refit_every_layout_nothing_else_and_every_number_audits(tmp_path):
    from workflow_scripts import audit

    folder = tmp_path / "deep_norm" / "analysis"
    stored = {("published", "cnn", "mnist", published.MEASURE): write_published(folder, "cnn-mnist",
                                                                                drop=("k2",)),
              ("published", "vit", "cifar100", published.MEASURE): write_published(folder, "vit-cifar100")}
    for name in ("cnn-wd", "resnet-norms", "cnn-cifar10-sgd", "cnn-cifar100-sgd"):
        table, arch, dataset = APPENDIX[name][:3]
        for (e, m), f in zip(published.TABLES[table].curve_sets(), write_appendix(folder, name)):
            stored[(e, arch, dataset, m)] = f
    np.save(folder / "ResNet_CIFAR10_other.npy", {"x": 1}, allow_pickle=True)
    wd = tmp_path / "wd"
    conf = f"published={{dir: {tmp_path / 'deep_norm'}}}"
    plan = _snakemake(wd, "-n", *TARGETS, "--config", conf)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert _jobs(plan.stdout + plan.stderr) == PUBLISHED_RULES  # nothing of training or our fits
    done = _snakemake(wd, "--cores", "2", *TARGETS, "--config", conf)
    assert done.returncode == 0, done.stderr[-3000:]
    checked = 0
    for table in published.TABLES:
        csv = wd / "results" / "published" / "tables" / f"{table}.csv"
        df = pd.read_csv(csv)
        experiments = {e for e, _ in published.TABLES[table].curve_sets()}
        assert len(df) == 2 * sum(1 for k in stored if k[0] in experiments)  # both estimators
        for _, r in df.iterrows():
            want = stored[(r["experiment"], r["arch"], r["dataset"], r["measure"])]
            if r["estimator"] == "authors":
                assert abs(r["gamma1"] - want["gamma_1"]) < 1e-3 and abs(r["gamma2"] - want["gamma_2"]) < 1e-3
            assert r["stored_gamma1"] == pytest.approx(want["gamma_1"])
            row = f"{r['experiment']}/{r['arch']}/{r['dataset']}/{r['measure']}/{r['estimator']}"
            for number in tab.EXPONENTS:  # every number the table prints
                aud, _, num = audit.run_audit(csv, row=row, number=number)
                assert not aud.failures, (table, row, number, aud.failures)
                assert num.source.name == "fit.json"
                checked += 1
        assert (wd / "results" / "published" / "import" / f"{table}.json").exists()
    assert checked == 5 * 2 * len(stored)
    md = (wd / "results" / "published" / "tables" / "table1.md").read_text()
    assert "| — |" in md  # CNN-MNIST's k2 is not stored: shown as —
    for g in stored:
        assert (wd / "results" / "published" / "figures" / "/".join(g) / "sensitivity.png").stat().st_size
    again = _snakemake(wd, "-n", *TARGETS, "--config", conf)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_a_hostile_file_runs_nothing_on_any_command(tmp_path):
    """A pickle that would write a marker: listed (not opened) while the workflow is parsed, refused
    by the import job; the marker never appears and no output is left."""
    marker = tmp_path / "marker"
    write_hostile(tmp_path / "deep_norm" / "analysis", marker)
    conf = f"published={{dir: {tmp_path / 'deep_norm'}}}"
    plan = _snakemake(tmp_path / "wd", "-n", "table1_published", "--config", conf)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert not marker.exists()
    done = _snakemake(tmp_path / "wd", "--cores", "1", "table1_published", "--config", conf)
    assert done.returncode != 0 and not marker.exists()
    log = (tmp_path / "wd" / "results" / "logs" / "published" / "import_table1.log").read_text()
    assert "CNN_MNIST.npy: refused to load the global builtins.exec" in log
    assert not (tmp_path / "wd" / "results" / "published").exists() or not any(
        p.is_file() for p in (tmp_path / "wd" / "results" / "published").rglob("*"))


@pytest.mark.slow
def test_table1_published_with_a_wrong_folder_says_what_is_wrong(tmp_path):
    out = _snakemake(tmp_path, "-n", "table1_published", "--config",
                     f"published={{dir: {tmp_path / 'nowhere'}}}")
    msg = out.stdout + out.stderr
    # the config check (config.py) refuses it before any rule is parsed
    assert out.returncode != 0 and "published.dir" in msg and "does not exist" in msg


def test_an_ambiguous_row_lists_only_its_matches():
    """On a published table (both estimators) --row cnn/mnist matches two rows: the error names
    those two, not every row, and says how to choose; the estimator as last component selects."""
    from workflow_scripts import audit

    cands = [({"experiment": "published", "arch": a, "dataset": d, "measure": published.MEASURE,
               "estimator": e}, (a, d, e)) for a, d in (("cnn", "mnist"), ("vit", "cifar100"))
             for e in ("authors", "ours")]
    with pytest.raises(audit.UsageError) as err:
        audit.select_one(cands, "cnn/mnist", "table1.csv")
    msg = str(err.value)
    assert "matches 2 of the rows" in msg and "vit" not in msg and "end with ours or authors" in msg
    assert audit.select_one(cands, "cnn/mnist/authors", "table1.csv") == ("cnn", "mnist", "authors")
    with pytest.raises(audit.UsageError, match="matches 0 of the rows.*vit/cifar100"):
        audit.select_one(cands, "resnet/mnist", "table1.csv")
