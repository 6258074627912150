"""The published-curve import and the authors' estimator: refitting a file in the authors' format
gives the γ₁ and γ₂ stored in it.

The files are built here with exactly the deep_norm layout (the real ones are not ours to ship),
and their stored values are computed by the authors' algorithm written out independently below
(numpy polyfit in log10, per-P slopes averaged), not by fit.py.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from workflow_scripts import config as cfg
from workflow_scripts import fit, published
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


def write_published(folder, case, seed=0):
    arch, dataset, grid, P_arr, g1, g2, lam0, span = CASES[case]
    P_arr = np.array(P_arr)
    a = reproduce_settings(case)
    min_P = int(np.flatnonzero(P_arr >= a["gamma1_P_min"])[0])
    rng = np.random.default_rng(seed)
    curves, lam_star, eps_star = seed_curves(rng, P_arr, 5, grid, g1, g2, lam0, span)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.array([np.nanmean(c, axis=0) for c in curves])
    l_0 = lam_star.mean(axis=1)
    stored = authors_fit(P_arr, grid, mean, l_0, a["window"]["x_left"], a["window"]["x_right"], min_P,
                         a["P_min"] or 0)
    d = {"P_arr": P_arr, "seed_arr": np.arange(5), "log_x_grid": grid, "mean_val_error_arr": mean,
         "l_0_arr": l_0, "eps_lam_star_P_arr": eps_star, "lambda_star_arr": lam_star,
         "min_P": min_P, **stored}
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{FILE[arch]}_{FILE[dataset]}.npy", d, allow_pickle=True)
    return d


@pytest.mark.parametrize("case", sorted(CASES))
def test_authors_estimator_gives_the_stored_exponents(tmp_path, case):
    d = write_published(tmp_path / "deep_norm" / "analysis", case)
    report = published.import_dir(tmp_path / "deep_norm", tmp_path / "out")
    (row,) = report["imported"]
    data, meta = load_fit_data(*(tmp_path / "out" / "aggregate" / row["arch"] / row["dataset"] / f
                                 for f in ("curves.parquet", "optima.parquet")))
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


def test_our_estimator_differs_on_the_same_file(tmp_path):
    """The two estimators are not the same computation (pooled vs mean of slopes, refined optima)."""
    d = write_published(tmp_path / "a", "cnn-mnist", seed=3)
    published.import_dir(tmp_path / "a", tmp_path / "out")
    data, _ = load_fit_data(tmp_path / "out/aggregate/cnn/mnist/curves.parquet",
                            tmp_path / "out/aggregate/cnn/mnist/optima.parquet")
    both = fit.estimate(data, reproduce_settings("cnn-mnist", "both"))
    assert set(both["by_estimator"]) == {"ours", "authors"}
    ours, auth = (both["by_estimator"][k]["estimates"] for k in ("ours", "authors"))
    assert both["estimates"] == ours
    assert abs(auth["gamma1"]["value"] - d["gamma_1"]) < 1e-3
    assert ours["gamma2"]["value"] != pytest.approx(auth["gamma2"]["value"], abs=1e-6)


def test_import_reports_suffixed_files_and_bad_input(tmp_path):
    folder = tmp_path / "analysis"
    write_published(folder, "cnn-mnist")
    np.save(folder / "ResNet_CIFAR10_wd.npy", {"other": 1}, allow_pickle=True)
    np.save(folder / "CNN_CIFAR10_SGD.npy", {"other": 1}, allow_pickle=True)
    report = published.import_dir(tmp_path, tmp_path / "out")
    assert [r["file"] for r in report["imported"]] == ["CNN_MNIST.npy"]
    assert sorted(s["file"] for s in report["not_imported"]) == ["CNN_CIFAR10_SGD.npy",
                                                                 "ResNet_CIFAR10_wd.npy"]
    assert json.loads((tmp_path / "out" / "import.json").read_text()) == report

    with pytest.raises(published.PublishedError, match="not a directory"):
        published.scan(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(published.PublishedError, match="expected some of CNN_MNIST.npy"):
        published.scan(empty)
    d = np.load(folder / "CNN_MNIST.npy", allow_pickle=True).item()
    del d["l_0_arr"]
    np.save(folder / "CNN_MNIST.npy", d, allow_pickle=True)
    with pytest.raises(published.PublishedError, match=r"CNN_MNIST.npy: lacks key\(s\) \['l_0_arr'\]"):
        published.import_dir(tmp_path, tmp_path / "out2")
    assert published.main([str(tmp_path), "--out", str(tmp_path / "out3")]) == 2


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


@pytest.mark.slow
def test_table1_published_target_refits_the_files_and_nothing_else(tmp_path):
    folder = tmp_path / "deep_norm" / "analysis"
    stored = {c: write_published(folder, c) for c in ("cnn-mnist", "vit-cifar100")}
    np.save(folder / "ResNet_CIFAR10_wd.npy", {"x": 1}, allow_pickle=True)
    wd = tmp_path / "wd"
    conf = f"published={{dir: {tmp_path / 'deep_norm'}}}"
    plan = _snakemake(wd, "-n", "--config", conf, "--", "table1_published")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert _jobs(plan.stdout + plan.stderr) == {"published_import", "published_fit", "table1_published"}
    done = _snakemake(wd, "--cores", "1", "--config", conf, "--", "table1_published")
    assert done.returncode == 0, done.stderr[-3000:]
    df = pd.read_csv(wd / "results" / "tables" / "published" / "table1.csv")
    assert sorted(zip(df["arch"], df["dataset"], df["estimator"])) == [
        ("cnn", "mnist", "authors"), ("cnn", "mnist", "ours"),
        ("vit", "cifar100", "authors"), ("vit", "cifar100", "ours")]
    for case, d in stored.items():
        arch, dataset = CASES[case][:2]
        row = df[(df["arch"] == arch) & (df["dataset"] == dataset) & (df["estimator"] == "authors")].iloc[0]
        assert abs(row["gamma1"] - d["gamma_1"]) < 1e-3 and abs(row["gamma2"] - d["gamma_2"]) < 1e-3
        assert row["stored_gamma1"] == pytest.approx(d["gamma_1"])
        assert row["paper_gamma_pred"] > 0  # the paper's Table 1 beside it
    report = json.loads((wd / "results" / "published" / "import.json").read_text())
    assert [s["file"] for s in report["not_imported"]] == ["ResNet_CIFAR10_wd.npy"]
    again = _snakemake(wd, "-n", "--config", conf, "--", "table1_published")
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_table1_published_with_a_wrong_folder_says_what_is_wrong(tmp_path):
    out = _snakemake(tmp_path, "-n", "--config", f"published={{dir: {tmp_path / 'nowhere'}}}",
                     "--", "table1_published")
    msg = out.stdout + out.stderr
    assert out.returncode != 0 and "published.dir" in msg and "is not a directory" in msg
    folder = tmp_path / "analysis"
    d = write_published(folder, "cnn-mnist")
    del d["gamma_2"]
    np.save(folder / "CNN_MNIST.npy", d, allow_pickle=True)
    out = _snakemake(tmp_path, "-n", "--config", f"published={{dir: {tmp_path}}}", "--", "table1_published")
    assert out.returncode != 0 and "CNN_MNIST.npy: lacks key(s) ['gamma_2']" in out.stdout + out.stderr
