"""The perceptron's theory at large α: the refined quadrature, the α → ∞ limit curve, the
analysis in the paper's variables (ε/ε₀ against absolute λ, local slope, γ₁ and γ₂)."""
import json
import math

import numpy as np
import pytest

from workflow_scripts import io, perceptron as pc, perceptron_figures as pf


def _dense_grid(R, lam):
    """A reference grid: 4x the uniform panels, order 24, refined 100x further than the default."""
    s = math.sqrt(max(1 - R * R, 0.0))
    return pc._omega_grid(panels=960, order=24, refine=1e-4 * min(s, 1 / lam))


def test_quadrature_is_accurate_at_alpha_2000(monkeypatch):
    """ε from the per-call refined grid against a much denser grid at α = 2000, λ from 0.1 to past
    λ_opt ≈ 0.88 α: relative difference < 1e-6 (the uniform grid alone is ~10% off here)."""
    lams = np.geomspace(0.1, 3000, 8)
    r = pc.replica_fixed_norm(2000.0, lams)
    assert r["converged"].all()
    monkeypatch.setattr(pc, "omega_grid_for", _dense_grid)
    ref = pc.replica_fixed_norm(2000.0, lams)
    assert ref["converged"].all()
    rel = np.abs(r["test_error"].to_numpy() / ref["test_error"].to_numpy() - 1)
    assert rel.max() < 1e-6, rel
    monkeypatch.setattr(pc, "omega_grid_for", lambda R, lam: (pc.OMEGA, pc.OMEGA_W))
    old = pc.replica_fixed_norm(2000.0, lams[-3:])
    # the refinement is what makes the difference (the old grid is off by percents)
    assert np.max(np.abs(old["test_error"].to_numpy() / ref["test_error"].to_numpy()[-3:] - 1)) > 1e-3


def test_refined_grid_covers_the_tails_and_integrates_the_step():
    om, w = pc.omega_grid_for(0.9999995, 50.0)        # s = 1e-3
    assert om.min() < -11.9 and om.max() > 11.9
    assert np.all(np.diff(om) > 0) and np.all(w > 0)
    p, k, s = pc._field_density(0.9999995, om)
    assert np.sum(w * p) == pytest.approx(1.0, abs=1e-12)               # a density
    # E|u| = √(2/π) via m = k + Rωp
    assert np.sum(w * (k + 0.9999995 * om * p)) == pytest.approx(math.sqrt(2 / math.pi), abs=1e-12)
    assert np.diff(om).min() < 1e-5                                      # min(s, 1/λ)/100 = 1e-5


# ---------------------------------------------------------------------------------------------
# the α → ∞ limit curve

def test_limit_curve_ends_hebb_and_inverse_sqrt():
    assert pc.limit_curve([1e-5])[0] == pytest.approx(1.0, abs=1e-4)        # f(0+) = 1 (Hebb)
    assert pc.LIMIT_C == pytest.approx(0.555, abs=5e-4)
    big = np.array([1e2, 1e3, 1e4])
    g = pc.limit_curve(big) * np.sqrt(big)
    assert np.all(np.abs(g / pc.LIMIT_C - 1) < [1e-4, 1e-5, 1e-6])       # corrections O(1/λ²)
    lam = np.geomspace(1, 1e4, 30)
    slope = -np.gradient(np.log(pc.limit_curve(lam)), np.log(lam))
    assert np.all(np.diff(slope) > -1e-9) and slope[-1] == pytest.approx(0.5, abs=1e-4)
    assert np.all(np.diff(pc.limit_curve(np.geomspace(1e-3, 1e3, 40))) < 0)  # decreasing


def test_replica_at_alpha_2000_approaches_the_limit_curve():
    """ε/ε_Hebb at α = 2000 against f(λ). The expansion drops terms of relative order s λ with
    s ≈ f(λ) ε_Hebb π ~ f/√α, so the deviation must be below λ f(λ)/√α and shrink as λ → 0
    (measured: 7e-6 at λ = 0.01, 1.4e-3 at λ = 1, 1.2e-2 at λ = 10)."""
    alpha, lam = 2000.0, np.array([0.01, 0.1, 1.0, 3.0, 10.0])
    r = pc.replica_fixed_norm(alpha, lam)
    assert r["converged"].all()
    f = pc.limit_curve(lam)
    dev = np.abs(r["test_error"].to_numpy() / pc.hebb_error(alpha) / f - 1)
    assert np.all(dev < lam * f / math.sqrt(alpha)), dev
    assert np.all(np.diff(dev) > 0) and dev[0] < 1e-4


# ---------------------------------------------------------------------------------------------
# the analysis in the paper's variables

def test_curve_optimum_interpolates_between_grid_points():
    lam = np.geomspace(1, 100, 21)
    eps = np.exp((np.log(lam) - math.log(17.0)) ** 2)            # minimum at 17, off the grid
    lo, eo = pc.curve_optimum(lam, eps)
    assert lo == pytest.approx(17.0, rel=1e-9) and eo == pytest.approx(1.0, rel=1e-9)
    assert math.isnan(pc.curve_optimum(lam, -np.log(lam))[0])     # minimum at the end of the grid
    assert pc.window_bounds({"lambda_min": 3, "lambda_max": 5, "lambda_max_over_opt": 0.01}, 880) == (3, 5)
    assert pc.window_bounds({"lambda_min": 3, "lambda_max_over_opt": 0.01}, 880) == (3, pytest.approx(8.8))


def test_paper_variables_from_theory_and_gd_end_to_end(tmp_path):
    """Reduced size (α ∈ {5, 50, 200, 1000}, 10 λ a decade): theory γ₁ within 0.01 of ½ at
    α = 1000 in [3, 0.01 λ_opt], γ₂ within 0.02 of 1 over [50, 1000]; GD (N = 100, 3 seeds,
    α ∈ {2, 3, 5}) reported with jackknife errors; validation.json and the figure written."""
    spec = {"min": 0.05, "per_decade": 10, "max_over_alpha": 2}
    sc = tmp_path / "scaling.parquet"
    assert pc.main(["theory-scaling", "--alphas", "5", "50", "200", "1000", "--lambdas",
                    json.dumps(spec), "--out", str(sc)]) == 0
    th, _ = io.read_parquet(sc)
    assert th["converged"].all()
    assert np.allclose(th["ratio"], th["test_error"] / th["eps0"])
    runs = []
    for a in (2, 3, 5):
        d = tmp_path / f"alpha{a}"
        pc.main(["train", "--N", "100", "--alpha", str(a), "--seeds", "0", "1", "2", "--steps",
                 "1500", "--n-log", "40", "--out-dir", str(d)])
        runs.append(str(d))
    settings = {"window": {"lambda_min": 3, "lambda_max": None, "lambda_max_over_opt": 0.01},
                "gamma2_alphas": {"min": 50, "max": 1000},
                "gd_window": {"lambda_min": 1, "lambda_max": 3, "lambda_max_over_opt": None},
                "gd_gamma2_alphas": {"min": 2, "max": 5},
                "tolerances": {"gamma1_theory": 0.01, "gamma2_theory": 0.02}}
    val = tmp_path / "validation.json"
    pc.main(["validate", *runs, "--scaling", str(sc), "--scaling-settings", json.dumps(settings),
             "--out", str(val)])
    pv = io.read_json(val)["checks"]["paper_variables"]
    c = pv["checks"]
    assert c["theory_gamma1_half"]["pass"] and c["theory_gamma1_half"]["alpha"] == 1000
    assert c["theory_gamma2_one"]["pass"] and c["theory_gamma2_one"]["alphas"] == [50, 200, 1000]
    assert pv["pass"]
    # the local slope peaks below ½ and rises with α (the laws are asymptotic)
    peaks = [r["slope_peak"] for r in pv["theory"]["per_alpha"]]
    assert np.all(np.diff(peaks) > 0) and peaks[-1] < 0.5
    gd = pv["gd"]
    assert gd["gamma1"]["value"] is not None and gd["gamma1"]["se"] > 0
    assert gd["gamma2"]["alphas"] == [2, 3, 5] and gd["gamma2"]["n_seeds"] == 3
    # the theory at the GD α it has (5) and the GD window, and GD's distance from it in se
    assert c["gd_gamma1"]["theory_same_alphas_and_window"] is not None
    assert math.isfinite(c["gd_gamma1"]["z"])
    out = tmp_path / "pv.png"
    pf.main(["paper-variables", "--scaling", str(sc), "--validation", str(val), "--runs", *runs,
             "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = io.read_json(str(out) + ".json")["shown"]
    assert shown["gd_alphas"] == [2.0, 3.0, 5.0] and shown["checks"]["theory_gamma2_one"]["pass"]


def test_float32_keeps_the_large_alpha_curve():
    """The large-α runs may use dtype float32: at α = 200 (ε ~ 0.01, where rounding matters most
    relative to ε) the float32 trajectory's ε/ε₀ and λ follow float64's to 1e-3 relative."""
    a = pc.simulate(50, 200.0, [0], 300, n_log=15)[0][0]
    b = pc.simulate(50, 200.0, [0], 300, n_log=15, dtype="float32")[0][0]
    ra = a["test_error"] / a["test_error"].iloc[0]
    rb = b["test_error"] / b["test_error"].iloc[0]
    assert np.allclose(ra, rb, rtol=1e-3, atol=0)
    assert np.allclose(a["lambda"], b["lambda"], rtol=1e-5, atol=0)
