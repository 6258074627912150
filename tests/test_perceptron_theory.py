"""The perceptron's theory at large α: the refined quadrature, the α → ∞ limit curve, the
analysis in the paper's variables (ε/ε₀ against absolute λ, local slope, γ₁ and γ₂)."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from workflow_scripts import io, perceptron as pc
from workflow_scripts.perceptron import figures as pf
from workflow_scripts.perceptron.losses import _field_density, _omega_grid
from workflow_scripts.perceptron.validation import _paper_variable_checks


def _dense_grid(R, lam):
    """A reference grid: 4x the uniform panels, order 24, refined 100x further than the default."""
    s = math.sqrt(max(1 - R * R, 0.0))
    return _omega_grid(panels=960, order=24, refine=1e-4 * min(s, 1 / lam))


def test_quadrature_is_accurate_at_alpha_2000(monkeypatch):
    """ε from the per-call refined grid against a much denser grid at α = 2000, λ from 0.1 to past
    λ_opt ≈ 0.88 α: relative difference < 1e-6 (the uniform grid alone is ~10% off here)."""
    lams = np.geomspace(0.1, 3000, 8)
    r = pc.replica_fixed_norm(2000.0, lams)
    assert r["converged"].all()
    # the theory module looks the grid up itself: patch it there
    monkeypatch.setattr(pc.theory, "omega_grid_for", _dense_grid)
    ref = pc.replica_fixed_norm(2000.0, lams)
    assert ref["converged"].all()
    rel = np.abs(r["test_error"].to_numpy() / ref["test_error"].to_numpy() - 1)
    assert rel.max() < 1e-6, rel
    monkeypatch.setattr(pc.theory, "omega_grid_for", lambda R, lam: (pc.OMEGA, pc.OMEGA_W))
    old = pc.replica_fixed_norm(2000.0, lams[-3:])
    # the refinement is what makes the difference (the old grid is off by percents)
    assert np.max(np.abs(old["test_error"].to_numpy() / ref["test_error"].to_numpy()[-3:] - 1)) > 1e-3


def test_refined_grid_covers_the_tails_and_integrates_the_step():
    om, w = pc.omega_grid_for(0.9999995, 50.0)        # s = 1e-3
    assert om.min() < -11.9 and om.max() > 11.9
    assert np.all(np.diff(om) > 0) and np.all(w > 0)
    p, k, s = _field_density(0.9999995, om)
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
                "tolerances": {"gamma1_theory": 0.01, "gamma2_theory": 0.02},
                # 3 seeds at N = 100: GD is reported, not asserted (noise mode, nothing asserted)
                "gd_checks": {"noise_asserted": []}}
    val = tmp_path / "validation.json"
    pc.main(["validate", *runs, "--scaling", str(sc), "--scaling-settings", json.dumps(settings),
             "--out", str(val)])
    pv = io.read_json(val)["checks"]["paper_variables"]
    c = pv["checks"]
    assert c["theory_gamma1_half"]["pass"] and c["theory_gamma1_half"]["alpha"] == 1000
    assert c["theory_gamma2_one"]["pass"] and c["theory_gamma2_one"]["alphas"] == [50, 200, 1000]
    assert pv["pass"] and pv["asserted"] == ["theory_gamma1_half", "theory_gamma2_one"]
    for k in ("gd_gamma1", "gd_gamma2"):
        assert c[k]["mode"] == "noise" and not c[k]["asserted"] and "pass" not in c[k]
        assert isinstance(c[k]["within_noise"], bool) and c[k]["bounds_apply_from_alpha"] in (1000, 50)
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


# ---------------------------------------------------------------------------------------------
# the GD checks: bounds where the paper block was run, noise elsewhere (synthetic curves with a
# known γ₁ and γ₂, through the validate code path)

def _curve(lam, lam_opt, g1=0.5):
    """ε/ε₀ with local slope g1·(1 − λ/λ_opt): ≈ g1 on [3, 0.01 λ_opt], minimum at λ_opt."""
    return lam ** (-g1) * np.exp(g1 * lam / lam_opt)


def _synthetic(tmp_path, *, g2=1.0, g1=0.5, end_over_opt=1.6, gd_alphas=(5, 10, 20), big=1000,
               seeds=6, tilt=0.003):
    """A synthetic scaling Parquet (λ_opt = 0.9 α) and GD runs {α: [(df, meta)]} with
    λ_opt = 0.9·5·(α/5)^g2, each (α, seed) tilted by λ^δ, δ ~ N(0, tilt) (a noisy λ_opt, so the
    jackknife se is > 0); the run at α = big stops at λ = 20, far below its λ_opt."""
    rows = []
    for a in (5, 10, 20, 1000):
        lam = np.geomspace(0.05, 3 * 0.9 * a, 150)
        r = _curve(lam, 0.9 * a)
        rows.append(pd.DataFrame({"alpha": float(a), "lambda": lam, "test_error": 0.1 * r / r[0],
                                  "eps0": 0.1, "converged": True}))
    sc = tmp_path / "scaling.parquet"
    io.write_parquet(pd.concat(rows, ignore_index=True), sc, {"stage": "test"})
    rng = np.random.default_rng(0)
    by_alpha = {}
    for a in (*gd_alphas, big):
        delta = rng.normal(0, tilt, seeds)
        lo = 0.9 * 5 * (a / 5) ** g2
        lam = np.geomspace(0.4, 20.0 if a == big else end_over_opt * lo, 90)
        for s in range(seeds):
            e = 0.2 * _curve(lam, lo, g1) * lam ** delta[s]
            df = pd.DataFrame({"step": np.arange(1, len(lam) + 1), "lambda": lam, "test_error": e})
            by_alpha.setdefault(float(a), []).append((df, {"config": {"seed": s, "alpha": a}}))
    return sc, by_alpha


PAPERLIKE = {"window": {"lambda_min": 3, "lambda_max": None, "lambda_max_over_opt": 0.01},
             "gamma2_alphas": {"min": 5, "max": 1000},
             "gd_window": {"lambda_min": 3, "lambda_max": None, "lambda_max_over_opt": 0.01},
             "gd_gamma2_alphas": {"min": 5, "max": 20},
             "tolerances": {"gamma1_theory": 0.01, "gamma2_theory": 0.02},
             "gd_checks": {"bounds_from_alpha": {"gamma1": 1000, "gamma2": 20},
                           "lambda_end_over_opt": 1.2, "sigmas": 3, "max_se": 0.2,
                           "noise_asserted": ["gamma2"]}}


def test_gd_bounds_where_the_paper_block_was_run(tmp_path):
    sc, runs = _synthetic(tmp_path)
    pv = _paper_variable_checks(sc, PAPERLIKE, runs, [])
    c = pv["checks"]
    assert pv["pass"] and set(pv["asserted"]) == {"theory_gamma1_half", "theory_gamma2_one",
                                                  "gd_gamma1", "gd_gamma2"}
    g1, g2 = c["gd_gamma1"], c["gd_gamma2"]
    assert g1["mode"] == g2["mode"] == "bounds" and g1["asserted"] and g2["asserted"]
    assert g1["alpha"] == 1000 and g1["target"] == 0.5 and g1["tolerance"] == 0.01
    assert abs(g1["value"] - 0.5) < 0.01 and g1["se"] > 0
    assert g2["alphas"] == [5, 10, 20] and abs(g2["value"] - 1) < 0.02 and g2["passed_lambda_opt"]
    # the α = 1000 run stopped at λ = 20: its window ends at 0.01 × the replica λ_opt (900)
    row = [r for r in pv["gd"]["per_alpha"] if r["alpha"] == 1000][0]
    assert row["lambda_opt"] is None and row["window_lambda_opt"] == "fallback"
    assert row["window"] == [3.0, pytest.approx(9.0, rel=2e-3)]  # replica λ_opt ≈ 900


@pytest.mark.parametrize("bad", ["gamma2", "gamma1", "not_passed"])
def test_gd_bounds_fail_when_gd_misses_them(tmp_path, bad):
    kw = {"gamma2": {"g2": 0.9}, "gamma1": {"g1": 0.45}, "not_passed": {"end_over_opt": 1.1}}[bad]
    sc, runs = _synthetic(tmp_path, **kw)
    pv = _paper_variable_checks(sc, PAPERLIKE, runs, [])
    c = pv["checks"]
    assert c["theory_gamma1_half"]["pass"] and c["theory_gamma2_one"]["pass"]
    assert not pv["pass"]
    failed = {k for k, v in c.items() if not v.get("pass", True)}
    assert failed == {"gd_gamma2" if bad == "not_passed" else f"gd_{bad}"}
    if bad == "not_passed":
        assert not c["gd_gamma2"]["passed_lambda_opt"]
        assert c["gd_gamma2"]["lambda_end_over_opt"]["20"] < 1.2


def test_gd_noise_mode_below_the_paper_alphas(tmp_path):
    """Where the large-α runs are absent the bounds do not apply: γ₂ against the replica at the
    same α within 3 se (asserted), γ₁ reported only; a GD γ₂ off by many se fails."""
    st = {**PAPERLIKE, "gd_checks": {**PAPERLIKE["gd_checks"],
                                     "bounds_from_alpha": {"gamma1": 5000, "gamma2": 50}}}
    sc, runs = _synthetic(tmp_path, tilt=0.03)
    pv = _paper_variable_checks(sc, st, runs, [])
    g1, g2 = pv["checks"]["gd_gamma1"], pv["checks"]["gd_gamma2"]
    assert 0.01 < g2["se"] < 0.2
    assert g1["mode"] == g2["mode"] == "noise"
    assert not g1["asserted"] and "pass" not in g1 and "gd_gamma1" not in pv["asserted"]
    assert g2["asserted"] and g2["pass"] and pv["pass"]
    assert g2["target"] == pytest.approx(1.0, abs=1e-3) and g2["tolerance"] == pytest.approx(3 * g2["se"])
    sc, runs = _synthetic(tmp_path, g2=0.6, tilt=0.03)
    pv = _paper_variable_checks(sc, st, runs, [])
    assert abs(pv["checks"]["gd_gamma2"]["z"]) > 3 and not pv["checks"]["gd_gamma2"]["pass"]
    assert not pv["pass"]
    # an uninformative se (above max_se) fails too
    st2 = {**st, "gd_checks": {**st["gd_checks"], "max_se": 1e-6}}
    sc, runs = _synthetic(tmp_path, tilt=0.03)
    assert not _paper_variable_checks(sc, st2, runs, [])["checks"]["gd_gamma2"]["pass"]


def test_large_alpha_runs_must_not_share_a_main_alpha():
    from workflow_scripts.config import ConfigError, load_config
    base = {"experiments": {"main": {"archs": ["cnn"], "datasets": ["digits"],
                                     "P": {"digits": [75]}, "seeds": [0, 1]}}}
    large = {"enabled": True, "alphas": [10, 500]}
    with pytest.raises(ConfigError, match="large_alpha.alphas"):  # before any job
        load_config({**base, "perceptron": {"N": 200, "large_alpha": large}})
    cfg = load_config({**base, "perceptron": {"N": 200, "large_alpha": {**large, "alphas": [500]}}})
    with pytest.raises(ValueError, match="large_alpha.alphas"):
        pc.check_config({**cfg["perceptron"], "large_alpha": {**cfg["perceptron"]["large_alpha"],
                                                              "alphas": [10, 500]}})
