"""The hybrid integrator (perceptron/flow.py): K₀ GD steps, then BDF on the gradient flow, must
trace fixed-step GD's ε(λ); the pure flow from w = 0 must not (so the agreement can fail)."""
import math

import numpy as np
import pandas as pd
import pytest

from workflow_scripts import perceptron as pc
from workflow_scripts.config import ConfigError, load_config
from workflow_scripts.trajectory import read_trajectory

N, SEEDS = 100, (0, 1)
# GD steps to λ ≈ 2 λ_opt at α = 5 (λ ≈ 9.5-10) and to λ ≈ 22.5, 1.15-1.45 times GD's λ_opt, at
# α = 20 (2 λ_opt would need about 10⁵ GD steps, 30 CPU-s: too long for a test)
STEPS = {5.0: 3000, 20.0: 20000}


@pytest.fixture(scope="module")
def runs():
    """{α: (GD, hybrid, pure flow)} results of ``simulate``/``simulate_flow`` for both seeds."""
    return {a: (pc.simulate(N, a, SEEDS, s, n_log=60),
                pc.simulate_flow(N, a, SEEDS, s, n_log=60),
                pc.simulate_flow(N, a, SEEDS, s, n_log=60, flow={"k0": 0}))
            for a, s in STEPS.items()}


def relative_gap_at_gd_lambdas(gd: pd.DataFrame, other: pd.DataFrame) -> np.ndarray:
    """|ε_other(λ)/ε_GD(λ) − 1| at each GD row's λ (other's ε linear in log λ between its rows),
    NaN where λ is outside other's range."""
    lam = gd["lambda"].to_numpy()
    ll = np.log(other["lambda"].to_numpy())
    assert np.all(np.diff(ll) > 0)
    eps = np.interp(np.log(lam), ll, other["test_error"].to_numpy())
    gap = np.abs(eps / gd["test_error"].to_numpy() - 1)
    gap[(np.log(lam) < ll[0]) | (np.log(lam) > ll[-1])] = np.nan
    return gap


@pytest.mark.parametrize("alpha", sorted(STEPS))
def test_hybrid_traces_fixed_step_gd(runs, alpha):
    gd, hybrid, _ = runs[alpha]
    k0 = pc.FLOW_DEFAULTS["k0"]
    for s in SEEDS:
        g, (h, info) = gd[s][0], hybrid[s]
        assert list(h["step"]) == list(g["step"])               # GD's logging grid, equivalent steps
        cols = [c for c in g.columns if c != "wall_time"]
        pd.testing.assert_frame_equal(h[h["step"] <= k0][cols], g[g["step"] <= k0][cols])  # exact GD
        gap = relative_gap_at_gd_lambdas(g, h)
        assert np.isfinite(gap[1:-1]).all()
        assert np.nanmax(gap) < 1e-4, (alpha, s, np.nanmax(gap))
        assert np.argmin(g["test_error"].to_numpy()) < len(g) - 3  # the curve passes its minimum
        it = info["integrator"]
        assert it["stopped"] == "steps" and it["equivalent_steps"] == pytest.approx(STEPS[alpha])
        assert it["hessians"] >= 1 and it["gradients"] < STEPS[alpha] / 5


@pytest.mark.parametrize("alpha", sorted(STEPS))
def test_pure_flow_from_zero_is_not_gds_path(runs, alpha):
    """A first-order finite-step effect: at λ < 1 the flow from w = 0 misses GD's ε by 10-17%
    (measured), a thousand times the hybrid's tolerance; the paths meet again at large λ."""
    gd, _, pure = runs[alpha]
    for s in SEEDS:
        g = gd[s][0]
        gap = relative_gap_at_gd_lambdas(g, pure[s][0])
        small = g["lambda"].to_numpy() < 1
        assert small.sum() >= 3
        assert np.nanmax(gap[small]) > 0.03, (alpha, s, np.nanmax(gap[small]))
        assert pure[s][1]["integrator"]["gd_steps"] == 0


def test_lambda_stop_is_a_terminal_event():
    alpha, stop = 5.0, 1.0
    (df, info), = pc.simulate_flow(N, alpha, [3], 10 ** 6, n_log=80,
                                   flow={"lambda_stop_over_alpha": stop}).values()
    it = info["integrator"]
    assert it["stopped"] == "lambda_stop" and it["lambda_stop"] == stop * alpha
    lam = df["lambda"].to_numpy()
    assert lam[-1] <= stop * alpha and lam[-1] == pytest.approx(stop * alpha, rel=1e-3)
    assert df["step"].iloc[-1] == math.floor(it["equivalent_steps"])   # the last whole step
    assert df["step"].is_monotonic_increasing and it["equivalent_steps"] < 10 ** 6
    # a stop below λ after k0 GD steps ends the run there, on GD's rows
    (df0, info0), = pc.simulate_flow(N, alpha, [3], 10 ** 6, n_log=80,
                                     flow={"k0": 500, "lambda_stop_over_alpha": 0.01}).values()
    assert info0["integrator"]["stopped"] == "lambda_stop" and df0["step"].iloc[-1] <= 500


def test_train_cli_hybrid_footer_and_determinism(tmp_path):
    args = ["train", "--N", "100", "--alpha", "5", "--seeds", "0", "--steps", "2000", "--n-log",
            "30", "--integrator", "gd_then_flow", "--flow", '{"k0": 50, "rtol": 1e-7}']
    for run in ("a", "b"):
        assert pc.main([*args, "--out-dir", str(tmp_path / run)]) == 0
    (a, ma), (b, mb) = (read_trajectory(tmp_path / r / "seed0.parquet") for r in ("a", "b"))
    cols = [c for c in a.columns if c != "wall_time"]
    pd.testing.assert_frame_equal(a[cols], b[cols])                  # same config + seed, same rows
    assert ma["config_hash"] == mb["config_hash"]
    assert ma["config"]["integrator"] == "gd_then_flow"
    assert ma["config"]["flow"] == {"k0": 50, "rtol": 1e-7, "atol": 1e-9,
                                    "lambda_stop_over_alpha": None}
    it = ma["integrator"]
    assert it["name"] == "gd_then_flow" and it["gd_steps"] == 50 and it["rtol"] == 1e-7
    assert it["gradients"] > 50 and it["hessians"] >= 1 and it["method"].endswith("BDF")
    assert a["step"].iloc[-1] == 2000 and a["wall_time"].is_monotonic_increasing
    # fixed-step GD keeps its config (no flow block), with its integrator named
    assert pc.main(["train", "--N", "100", "--alpha", "5", "--seeds", "0", "--steps", "20",
                    "--out-dir", str(tmp_path / "gd")]) == 0
    _, mg = read_trajectory(tmp_path / "gd" / "seed0.parquet")
    assert mg["config"]["integrator"] == "gd" and "flow" not in mg["config"]
    assert "integrator" not in mg


def test_bad_flow_settings_name_the_key():
    with pytest.raises(ValueError, match="perceptron.flow.k0"):
        pc.flow_settings({"k0": -1})
    with pytest.raises(ValueError, match="unknown keys"):
        pc.flow_settings({"k_0": 5})
    with pytest.raises(ValueError, match="float64"):
        pc.train(50, 2, [0], "unused", steps=10, integrator="gd_then_flow", dtype="float32")
    base = {"experiments": {"main": {"archs": ["cnn"], "datasets": ["digits"],
                                     "P": {"digits": [75]}, "seeds": [0, 1]}}}  # min_seeds 2
    with pytest.raises(ConfigError, match="perceptron.dtype"):
        load_config({**base, "perceptron": {"N": 200, "integrator": "gd_then_flow",
                                            "dtype": "float32"}})
    with pytest.raises(ConfigError, match="k0"):
        load_config({**base, "perceptron": {"N": 200, "flow": {"k0": -3}}})


def test_a_bdf_failure_stops_the_cell(monkeypatch):
    """A flow the solver cannot follow (a gradient that blows up in finite time, put in place of
    the loss's) raises with scipy's own message instead of writing a truncated curve."""
    from workflow_scripts.perceptron import flow as fl

    def exploding(name, D):  # −ℓ' growing like Δ²: Δ' ∝ Δ² reaches infinity at finite t
        return 1.0 + D ** 2
    monkeypatch.setattr(fl, "loss_neg_derivative", exploding)
    with pytest.raises(RuntimeError, match="BDF failed .*seed=0.*step size"):
        fl.simulate_flow(20, 2.0, [0], 10 ** 6, flow={"k0": 0})
