"""The sensitivity grid: refits over windows × γ₁ min P × estimators, its overlap share and files."""
from __future__ import annotations

import json
import numpy as np
import pandas as pd
import pytest

from workflow_scripts.files import sha256_file
from workflow_scripts import fit, provenance, sensitivity
from tests import test_fit
from tests.test_fit import plateau_fit_data

aggregate_files = test_fit.aggregate_files  # the fixture, shared

# What the rule passes: the analysis keys the grid does not vary (no window, no estimator).
RULE_SETTINGS = {"min_seeds": 2, "P_min": None, "P_max": None, "bootstrap": {"n": 200, "seed": 0},
                 "sensitivity": {"windows": 9, "bootstrap": 20}}


@pytest.fixture(scope="module")
def plateau_grid():
    data = plateau_fit_data(np.random.default_rng(1))
    return data, *sensitivity.grid(data, RULE_SETTINGS)


def test_grid_covers_every_cell_without_a_configured_window(plateau_grid):
    data, df, summary = plateau_grid
    n_w = RULE_SETTINGS["sensitivity"]["windows"]
    P_mins = 1 + len(data.P) - 2            # every P (None) and each P but the smallest and largest
    assert len(df) == summary["n_cells"] == 2 * P_mins * n_w * (n_w - 1) // 2
    assert set(df["estimator"]) == {"ours", "authors"}
    assert (df["x_left"] < df["x_right"]).all()
    xs = summary["window_values"]
    assert xs[-1] == pytest.approx(1.0) and xs[0] == pytest.approx(1e-4, rel=0.05)  # data reach 1e-4
    assert summary["bootstrap"] == 20 and summary["intervals"].startswith("95% bootstrap")


def test_grid_shows_the_window_dependence(plateau_grid):
    """On the power-law stretch (x ≥ 0.02) γ₁ is the true 0.45; windows reaching into the plateau
    below give less: the grid must show both."""
    _, df, _ = plateau_grid
    ok = df[(df["status"] == "ok") & (df["gamma1_P_min"] == df["gamma1_P_min"].min())]
    on_law = ok[(ok["x_left"] >= 0.02) & (ok["x_right"] <= 0.9)]
    in_plateau = ok[ok["x_right"] <= 1e-3]
    assert len(on_law) and len(in_plateau)
    assert np.allclose(on_law["gamma1"], 0.45, atol=0.03)
    assert (in_plateau["gamma1"] < 0.2).all()
    # the interval columns bracket the value
    assert (ok["gamma1_low"] <= ok["gamma1"]).all() and (ok["gamma1"] <= ok["gamma1_high"]).all()


def test_overlap_share_is_the_share_of_fitted_cells_with_overlapping_intervals(plateau_grid):
    _, df, summary = plateau_grid
    for est, sub in df.groupby("estimator"):
        ok = sub[sub["status"] == "ok"]
        expect = ((ok["gamma_pred_low"] <= ok["gamma_meas_high"])
                  & (ok["gamma_meas_low"] <= ok["gamma_pred_high"])).mean()
        assert summary["overlap_share"][est] == pytest.approx(expect)
        assert summary["n_fitted"][est] == len(ok)
        assert not sub.loc[sub["status"] != "ok", "overlap"].any()


def test_published_data_use_ols_intervals():
    data = plateau_fit_data(np.random.default_rng(2), n_seeds=1)
    data.published = True
    df, summary = sensitivity.grid(data, RULE_SETTINGS)
    assert summary["intervals"] == "±1.96 OLS standard errors"
    ok = df[df["status"] == "ok"]
    assert len(ok) and (ok["gamma1_high"] > ok["gamma1_low"]).all()
    half = (ok["gamma1_high"] - ok["gamma1_low"]) / 2
    assert np.allclose(ok["gamma1"], (ok["gamma1_high"] + ok["gamma1_low"]) / 2)
    assert (half < 0.2).all()


def test_no_curve_left_of_the_optimum_is_impossible():
    Ps = [100, 200, 400]
    grid = np.linspace(0, 1, 30)          # every curve starts at its minimum
    curves = [np.exp(grid)[None, :].repeat(3, 0) for _ in Ps]
    data = fit.FitData(P=np.array(Ps), grids=[grid] * 3, curves=curves,
                       log_lambda_star=[np.zeros(3)] * 3, eps_star=[np.ones(3)] * 3)
    with pytest.raises(fit.FitError, match="left of its λ_opt"):
        sensitivity.grid(data, RULE_SETTINGS)


def test_cli_writes_table_summary_and_figure(aggregate_files, tmp_path):
    _, curves, optima = aggregate_files
    out = tmp_path / "out"
    rc = sensitivity.main(["--curves", str(curves), "--optima", str(optima), "--settings",
                           json.dumps(RULE_SETTINGS), "--out-table", str(out / "s.parquet"),
                           "--out-json", str(out / "s.json"), "--figure", str(out / "s.png")])
    assert rc == 0
    summary = json.loads((out / "s.json").read_text())
    assert summary["schema"] == "sensitivity/1" and summary["status"] == "ok"
    assert summary["group"]["arch"] == "vit"
    df = pd.read_parquet(out / "s.parquet")
    assert len(df) == summary["n_cells"] > 0
    assert (out / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the heat map's record: its sha256, the table it was drawn from, the overlap shares shown
    rec_path, rec = provenance.read_record(out / "s.png")
    assert rec_path == out / "s.png.json" and rec["kind"] == "figure" and rec["plot"] == "sensitivity"
    assert rec["outputs"][0]["sha256"] == sha256_file(out / "s.png")
    assert [i["path"] for i in rec["provenance"]["inputs"]] == [str(out / "s.parquet")]
    assert rec["shown"]["overlap_share"] == summary["overlap_share"]
    assert provenance.read_record(out / "s.parquet") == (out / "s.json", summary)
    # the file route gives the in-memory grid's numbers
    mem, _ = sensitivity.grid(fit.load_fit_data(curves, optima)[0], RULE_SETTINGS)
    np.testing.assert_array_equal(df["gamma1"].to_numpy(), mem["gamma1"].to_numpy())
