"""The teacher–student perceptron: theory, simulation, fixed-norm curve, contract, CLIs and rules."""
import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from workflow_scripts import aggregate, fit, io, perceptron as pc
from workflow_scripts.perceptron import figures as pf
from workflow_scripts.perceptron.losses import _field_weights
from workflow_scripts.perceptron.theory import _prox_shift
from workflow_scripts.config import load_config
from workflow_scripts.provenance import canonical_json
from workflow_scripts.trajectory import BASE_COLUMNS, read_trajectory

from .conftest import REPO


# ---------------------------------------------------------------------------------------------
# closed forms and replica theory

def test_bayes_optimal_error_at_alpha5():
    assert abs(pc.bayes_error(5.0) - 0.0839) < 5e-4
    assert pc.bayes_error(5.0) < pc.gibbs_error(5.0)


def test_large_alpha_asymptotes():
    a = 200.0
    assert a * pc.bayes_error(a) == pytest.approx(0.442, abs=2e-3)
    assert a * pc.gibbs_error(a) == pytest.approx(0.625, abs=3e-3)
    assert a * pc.max_stability(a)["test_error"] == pytest.approx(0.500, abs=2e-3)
    assert math.sqrt(1e6) * pc.hebb_error(1e6) == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-3)
    assert 1 / math.sqrt(2 * math.pi) == pytest.approx(0.399, abs=5e-4)


def test_error_ordering_at_finite_alpha():
    for a in (1.0, 3.0, 10.0):
        ms = pc.max_stability(a)["test_error"]
        assert pc.bayes_error(a) < ms < pc.hebb_error(a)
        assert pc.bayes_error(a) < pc.gibbs_error(a)


def test_replica_small_lambda_is_hebb():
    r = pc.replica_fixed_norm(3.0, [1e-3])
    assert bool(r["converged"].iloc[0])
    assert r["overlap"].iloc[0] == pytest.approx(float(pc.hebb_overlap(3.0)), abs=2e-4)


def _replica_energy(R, x, lam, alpha):
    """e(R, x) = −(1−R²)/(2x) + α E M_x(ω): the functional whose saddle the equations solve."""
    p, _, _ = _field_weights(R)
    psi = _prox_shift(pc.OMEGA, x, lam)
    M = np.logaddexp(0.0, -2 * lam * (pc.OMEGA + psi)) + psi ** 2 / (2 * x)
    return -(1 - R * R) / (2 * x) + alpha * np.sum(pc.OMEGA_W * p * M)


def test_replica_equations_are_the_saddle_of_the_energy():
    """Min over R of max over x of the energy (no derivatives) gives the root of the equations."""
    lam, alpha = 1.5, 3.0
    root = pc.replica_fixed_norm(alpha, [lam])

    def g(R):
        r = optimize.minimize_scalar(lambda lx: -_replica_energy(R, math.exp(lx), lam, alpha),
                                     bounds=(-8, 8), method="bounded", options={"xatol": 1e-10})
        return -r.fun

    R = optimize.minimize_scalar(g, bounds=(0.5, 0.999), method="bounded",
                                 options={"xatol": 1e-9}).x
    assert R == pytest.approx(root["overlap"].iloc[0], abs=2e-5)


def test_replica_minimum_is_bayes_and_tends_to_max_stability():
    alpha = 5.0
    r = pc.replica_fixed_norm(alpha, np.geomspace(0.5, 60, 40))
    assert r["converged"].all()
    eps = r["test_error"].to_numpy()
    eb = pc.bayes_error(alpha)
    # the optimally tuned norm comes within 0.3% of Bayes, and never beats it
    assert eb - 1e-6 <= eps.min() <= eb * 1.003
    i = int(np.argmin(eps))
    assert 3 < r["lambda"].iloc[i] < 6
    # past the optimum ε grows monotonically towards the maximal-stability error (λ → ∞)
    assert np.all(np.diff(eps[i:]) > 0)
    assert eps[-1] < pc.max_stability(alpha)["test_error"]


def test_replica_agrees_with_finite_N_fixed_norm_minimiser():
    N, alpha, lams = 400, 2.0, [0.3, 1.5, 4.0]
    fn = pd.concat([pc.fixed_norm_curve(N, alpha, s, lams) for s in range(4)])
    rep = pc.replica_fixed_norm(alpha, lams)
    assert fn["converged"].all()
    assert (fn["kkt_multiplier"] > 0).all()          # gradient points into the ball: the optimum
    assert (fn["grad_tangential_rel"] < 1e-4).all()
    for lam, sub in fn.groupby("lambda"):
        e = sub["test_error"].to_numpy()
        theory = float(rep[np.isclose(rep["lambda"], lam)]["test_error"].iloc[0])
        assert abs(e.mean() - theory) < 3 * e.std(ddof=1) / 2 + 0.004


# ---------------------------------------------------------------------------------------------
# simulation

def test_log_steps_include_first_and_last():
    s = pc.log_steps(100000, 120)
    assert s[0] == 1 and s[-1] == 100000 and np.all(np.diff(s) > 0)
    assert list(pc.log_steps(1, 5)) == [1]
    with pytest.raises(ValueError, match="n_log"):
        pc.log_steps(10, 1)


def test_learning_rate_is_below_the_hessian_bound():
    N, alpha = 400, 5.0
    X = pc.make_inputs(N, int(alpha * N), 0, "gaussian")
    lmax = np.linalg.eigvalsh(X.T @ X / len(X))[-1]
    assert lmax == pytest.approx((1 + alpha ** -0.5) ** 2, rel=0.05)  # Marchenko–Pastur edge
    assert pc.learning_rate(alpha, 1.0) * lmax < 1.1                   # the 1/L step, far from 2/L
    with pytest.raises(ValueError, match="lr_scale"):
        pc.learning_rate(alpha, 2.0)


@pytest.mark.parametrize("inputs", ["gaussian", "binary"])
def test_data_streams_nested_and_deterministic(inputs):
    N = 50
    small, big = pc.make_inputs(N, 100, 3, inputs), pc.make_inputs(N, 250, 3, inputs)
    assert np.array_equal(small, big[:100])                   # nested across P (α)
    assert not np.array_equal(small, pc.make_inputs(N, 100, 4, inputs))
    assert np.array_equal(pc.make_teacher(N, 3), pc.make_teacher(N, 3))
    if inputs == "binary":
        assert set(np.unique(big)) == {-1.0, 1.0}
    spec = pc.data_spec(N, 100, 3, inputs)
    assert pc.dataset_sha256(spec) == hashlib.sha256(canonical_json(spec).encode()).hexdigest()
    with pytest.raises(ValueError, match="inputs"):
        pc.make_inputs(N, 10, 0, "uniform")


def test_alpha_times_N_must_be_integer():
    assert pc.n_examples(200, 1.5) == 300
    with pytest.raises(ValueError, match="integer"):
        pc.n_examples(101, 1.5)


def test_first_step_is_the_hebb_vector():
    N, alpha = 300, 2.0
    df, _ = pc.simulate(N, alpha, [7], 1, n_log=2)[7]
    A, T = pc.signed_inputs(N, int(alpha * N), 7, "gaussian")
    hebb = A.sum(0)
    assert list(df["step"]) == [1]
    assert df["overlap"].iloc[0] == pytest.approx(hebb @ T / np.linalg.norm(hebb) / np.linalg.norm(T),
                                                  rel=1e-12)
    assert df["lambda"].iloc[0] == pytest.approx(
        pc.learning_rate(alpha) / alpha * np.linalg.norm(hebb) / math.sqrt(N), rel=1e-12)


@pytest.mark.parametrize("inputs", ["gaussian", "binary"])
def test_hebb_error_at_first_step(inputs):
    N, seeds = 1000, list(range(8))
    for alpha in (2.0, 5.0):
        res = pc.simulate(N, alpha, seeds, 1, inputs=inputs, n_log=2)
        first = np.array([res[s][0]["test_error"].iloc[0] for s in seeds])
        sem = first.std(ddof=1) / math.sqrt(len(first))
        exact = float(pc.hebb_error(alpha))
        assert abs(first.mean() - exact) < max(3 * sem, 0.03 * exact)


def test_min_error_over_training_is_bayes_at_alpha5():
    """The paper's check: at α = 5 the minimum over GD of ε is the Bayes-optimal 0.0839 (3%)."""
    seeds = list(range(10))  # N = 800, 10 seeds: the mean has a standard error of about 1%
    res = pc.simulate(800, 5.0, seeds, 600, n_log=40)
    mins = np.array([res[s][0]["test_error"].min() for s in seeds])
    assert abs(mins.mean() / pc.bayes_error(5.0) - 1) < 0.03
    # the seed-mean minimum is interior: past it the error grows again (towards max margin)
    mean = pf.seed_mean([(res[s][0], {"config": {"seed": s}}) for s in seeds])
    assert mean["test_error"].iloc[-1] > mean["test_error"].min()
    assert all(res[s][0]["lambda"].is_monotonic_increasing for s in seeds)


def test_same_seed_same_trajectory_whatever_the_stacking():
    a = pc.simulate(100, 3.0, [0, 1, 2], 200, n_log=20)
    b = pc.simulate(100, 3.0, [0, 1, 2], 200, n_log=20, max_batch_mb=0.001)  # one seed per stack
    for s in (0, 1, 2):
        assert a[s][1]["stacked_seeds"] == [0, 1, 2] and b[s][1]["stacked_seeds"] == [s]
        cols = [c for c in a[s][0].columns if c != "wall_time"]
        pd.testing.assert_frame_equal(a[s][0][cols], b[s][0][cols])
    assert not np.allclose(a[0][0]["test_error"], a[1][0]["test_error"])


def test_square_loss_converges_to_least_squares():
    N, alpha = 60, 3.0
    df, _ = pc.simulate(N, alpha, [1], 4000, loss="square", n_log=10)[1]
    A, T = pc.signed_inputs(N, int(alpha * N), 1, "gaussian")
    w_ls = np.linalg.lstsq(A, np.ones(len(A)), rcond=None)[0]    # Δ = A w ≈ 1
    assert df["lambda"].iloc[-1] == pytest.approx(np.linalg.norm(w_ls) / math.sqrt(N), rel=1e-6)
    assert df["overlap"].iloc[-1] == pytest.approx(
        w_ls @ T / np.linalg.norm(w_ls) / np.linalg.norm(T), rel=1e-6)


def test_population_loss_matches_monte_carlo():
    rng = np.random.default_rng(0)
    R, lam = 0.8, 2.5
    u, z = rng.standard_normal((2, 400000))
    om = R * np.abs(u) + math.sqrt(1 - R * R) * z
    for loss in pc.LOSS_NAMES:
        mc = pc.loss_value(loss, lam * om)
        assert pc.population_loss(loss, lam, R) == pytest.approx(mc.mean(), abs=4 * mc.std() / 632)


# ---------------------------------------------------------------------------------------------
# contract, config, CLIs, figures, rules

def test_train_cli_writes_the_trajectory_contract(tmp_path):
    assert pc.main(["train", "--N", "100", "--alpha", "2", "--seeds", "0", "1", "--steps", "300",
                    "--n-log", "20", "--out-dir", str(tmp_path)]) == 0
    for seed in (0, 1):
        df, meta = read_trajectory(tmp_path / f"seed{seed}.parquet")
        assert list(df.columns) == list(BASE_COLUMNS) + ["overlap"]
        assert df["step"].iloc[0] == 1 and df["step"].iloc[-1] == 300
        assert (df["epoch"] == df["step"]).all() and df["val_error"].isna().all()
        assert np.allclose(df["test_error"], np.arccos(df["overlap"]) / np.pi)
        assert meta["cell_id"] == f"perceptron/perceptron/teacher_N100/P200/seed{seed}"
        cfg = meta["config"]
        assert {k: cfg[k] for k in ("experiment", "arch", "dataset", "P", "seed", "N", "alpha")} == {
            "experiment": "perceptron", "arch": "perceptron", "dataset": "teacher_N100", "P": 200,
            "seed": seed, "N": 100, "alpha": 2.0}
        assert meta["dataset_sha256"] == pc.dataset_sha256(pc.data_spec(100, 200, seed, "gaussian"))
        assert meta["status"] == "completed" and meta["code"]["package_hash"]


def test_config_schema_defaults_and_semantic_checks():
    from workflow_scripts.config import ConfigError, load_config

    base = {"experiments": {"main": {"archs": ["cnn"], "datasets": ["digits"],
                                     "P": {"digits": [75]}, "seeds": [0, 1]}}}
    cfg = load_config({**base, "perceptron": {"N": 200}})["perceptron"]
    assert cfg["alphas"] == [1, 1.5, 2, 3, 4, 5, 7, 10] and cfg["analysis"]["measures"] == ["lambda"]
    assert cfg["fixed_norm"]["lambdas"]["num"] == 30 and cfg["square_loss"]["enabled"]
    pc.check_config(cfg)
    with pytest.raises(ConfigError, match="lr_scale"):
        load_config({**base, "perceptron": {"lr_scale": 2.5}})
    with pytest.raises(ValueError, match="not an integer"):
        pc.check_config({**cfg, "N": 201})
    with pytest.raises(ValueError, match="figures.alpha"):
        pc.check_config({**cfg, "figures": {"alpha": 6}})
    # the semantic checks run in load_config too: the same ConfigError as any key, before any job
    with pytest.raises(ConfigError, match="figures.alpha"):
        load_config({**base, "perceptron": {"N": 200, "figures": {"alpha": 6}}})
    run = pc.run_settings({**cfg, "seeds": list(range(7)), "seeds_per_job": 3}, "train")
    assert run["batches"] == [[0, 1, 2], [3, 4, 5], [6]]


def test_pipeline_pieces_end_to_end(tmp_path):
    """train -> aggregate -> fit (the deep nets' CLIs) -> theory, fixed norm -> validate -> figures."""
    N, alphas, seeds = 100, (2, 3, 5), ["0", "1", "2"]
    runs = []
    for a in alphas:
        d = tmp_path / f"train/alpha{a}"
        pc.main(["train", "--N", str(N), "--alpha", str(a), "--seeds", *seeds, "--steps", "1000",
                 "--n-log", "30", "--out-dir", str(d)])
        runs.append(str(d))
    sq = tmp_path / "square"
    pc.main(["train", "--N", str(N), "--alpha", "5", "--seeds", "0", "1", "--steps", "300",
             "--loss", "square", "--experiment", "perceptron_square_loss", "--out-dir", str(sq)])
    settings = {"measures": ["lambda"], "grid_points": 30, "min_seeds": 2,
                "window": {"x_left": 0.2, "x_right": 0.8}, "P_min": None, "P_max": None,
                "bootstrap": {"n": 50, "seed": 0}}
    c, o, f = tmp_path / "curves.parquet", tmp_path / "optima.parquet", tmp_path / "fit.json"
    aggregate.main(["--measure", "lambda", "--settings", json.dumps(settings), "--out-curves", str(c),
                    "--out-optima", str(o), *runs])
    fit.main(["--curves", str(c), "--optima", str(o), "--settings", json.dumps(settings),
              "--out", str(f)])
    assert io.read_json(f)["status"] == "ok"
    grid = json.dumps({"min": 0.1, "max": 20, "num": 8})
    ref, rep, fn = tmp_path / "ref.parquet", tmp_path / "rep.parquet", tmp_path / "fn.parquet"
    pc.main(["theory", "--alphas", "2", "3", "5", "--lambdas", grid, "--reference-alphas",
             json.dumps({"min": 1, "max": 10, "num": 4}), "--out-reference", str(ref),
             "--out-replica", str(rep)])
    pc.main(["fixed-norm", "--N", str(N), "--alpha", "5", "--seeds", "0", "1", "--lambdas", grid,
             "--out", str(fn)])
    val = tmp_path / "validation.json"
    pc.main(["validate", *runs, "--fit", str(f), "--fixed-norm", str(fn), "--replica", str(rep),
             "--window", json.dumps(settings["window"]), "--out", str(val)])
    v = io.read_json(val)["checks"]
    assert v["bayes_alpha5"]["pass"] and v["hebb_first_step"]["pass"]
    assert v["min_error_vs_bayes"]["applicable"] is False          # N = 100 < 400
    assert v["gamma1_vs_paper"]["paper"]["value"] == 0.4901
    assert v["gamma1_vs_paper"]["fit"]["value"] is not None
    assert v["replica_exponents"]["gamma1"] is not None
    assert len(v["replica_vs_fixed_norm"]["rows"]) == 8
    outs = {"trajectory": tmp_path / "t.png", "scaling": tmp_path / "s.png",
            "square": tmp_path / "q.png"}
    pf.main(["trajectory", "--runs", *runs, "--fixed-norm", str(fn), "--reference", str(ref),
             "--replica", str(rep), "--alpha", "5", "--out", str(outs["trajectory"])])
    pf.main(["scaling", "--curves", str(c), "--optima", str(o), "--fit", str(f), "--reference",
             str(ref), "--replica", str(rep), "--N", str(N), "--out", str(outs["scaling"])])
    pf.main(["square-loss", "--square", str(sq), "--logistic", runs[-1], "--reference", str(ref),
             "--alpha", "5", "--out", str(outs["square"])])
    for out in outs.values():
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        side = io.read_json(str(out) + ".json")
        assert side["provenance"]["inputs"] and side["shown"]
    t = io.read_json(str(outs["trajectory"]) + ".json")["shown"]
    assert t["n_seeds"] == 3 and t["reference"]["bayes"] == pytest.approx(pc.bayes_error(5.0))
    s = io.read_json(str(outs["square"]) + ".json")["shown"]
    assert s["square"]["final_lambda"] < s["logistic"]["final_lambda"]   # λ saturates
    # the scaling figure's (b)-(d) are the deep nets' panels, on fit.json's optima and exponents
    side = io.read_json(str(outs["scaling"]) + ".json")
    sc, fj = side["shown"], io.read_json(f)
    per_P = {str(r["P"]): r for r in fj["per_P"] if r.get("lambda_opt")}
    assert set(per_P) == {str(a * N) for a in alphas}
    assert set(sc["collapse"]["per_P"]) == set(per_P)
    for P, r in per_P.items():
        assert sc["collapse"]["per_P"][P] == {"lambda_opt": r["lambda_opt"], "eps_opt": r["eps_opt"]}
        assert sc["scaling"]["lambda_opt"][P] == r["lambda_opt"]
        assert sc["scaling"]["eps_opt"][P] == r["eps_opt"]
    for k in ("gamma2", "gamma_meas", "gamma_pred"):
        assert sc["scaling"][k][0] == fj["estimates"][k]["value"]
    assert sc["collapse"]["fit"]["gamma1"][0] == fj["estimates"]["gamma1"]["value"]
    assert sc["collapse"]["fit"]["window"] == pytest.approx([0.2, 0.8])
    # the keys the sidecar kept, in α = P/N
    assert sc["N"] == N and sc["alphas"] == [float(a) for a in alphas] and sc["fit_status"] == "ok"
    assert sc["lambda_opt"]["alpha"] == [float(a) for a in alphas]
    assert sc["lambda_opt"]["lambda_opt"] == [per_P[str(a * N)]["lambda_opt"] for a in alphas]
    assert sc["eps_opt"]["eps_opt"] == [per_P[str(a * N)]["eps_opt"] for a in alphas]
    assert set(sc["curves"]) == set(per_P) and sc["lambda_opt"]["replica"]
    bayes = sc["eps_opt"]["bayes"]
    assert bayes["bayes"] == pytest.approx([pc.bayes_error(a) for a in bayes["alpha"]], rel=1e-6)
    printed = side["printed"]["s.png"]
    assert printed.count("training-set size P (examples)") == 2 and printed.count("α = P/N") == 2
    assert {"replica λ_opt (fixed norm, N→∞)", "Bayes-optimal", "0.442/α", "fit window"} <= set(printed)
    assert {"α = 2", "α = 3", "α = 5"} <= set(printed)


@pytest.mark.parametrize("module", ["perceptron", "perceptron.figures"])
def test_cli_help(module):
    out = subprocess.run([sys.executable, "-m", f"workflow_scripts.{module}", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "usage" in out.stdout


def test_rules_plan_the_perceptron_dag(tmp_path):
    """snakemake -n with rules/common.smk + rules/perceptron.smk on a small perceptron block."""
    cfg = {"experiments": {"main": {"archs": ["cnn"], "datasets": ["digits"],
                                    "P": {"digits": [75]}, "seeds": [0, 1]}},
           "perceptron": {"N": 100, "alphas": [2, 5], "seeds": [0, 1, 2], "seeds_per_job": 2,
                          "steps": 100, "square_loss": {"alphas": [5], "seeds": [0]},
                          "fixed_norm": {"alphas": [5]}}}
    (tmp_path / "config.yaml").write_text(json.dumps(cfg))
    (tmp_path / "Snakefile").write_text(f'include: "{REPO}/rules/common.smk"\n'
                                        f'include: "{REPO}/rules/perceptron.smk"\n')
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(tmp_path / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
                          "-n", "--cores", "1", "perceptron_all"], capture_output=True, text=True,
                         cwd=REPO)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    counts = dict(line.split()[:2] for line in text.splitlines()
                  if line.strip().startswith("perceptron_") and len(line.split()) == 2)
    # 2 alphas x 2 seed batches + 1 square-loss batch; one of each analysis stage
    assert counts["perceptron_train"] == "5"
    for rule in ("perceptron_aggregate", "perceptron_fit", "perceptron_fixed_norm",
                 "perceptron_theory", "perceptron_validate", "perceptron_figure_trajectory",
                 "perceptron_figure_scaling", "perceptron_figure_square_loss"):
        assert counts[rule] == "1", (rule, counts)


def test_float32_products_follow_the_float64_trajectory():
    a = pc.simulate(200, 3.0, [0], 500, n_log=20)[0][0]
    b, info = pc.simulate(200, 3.0, [0], 500, n_log=20, dtype="float32")[0]
    assert info["dtype"] == "float32"
    assert np.allclose(a["test_error"], b["test_error"], rtol=0, atol=2e-5)
    assert np.allclose(a["lambda"], b["lambda"], rtol=1e-5)
    with pytest.raises(ValueError, match="dtype"):
        pc.simulate(200, 3.0, [0], 5, dtype="float16")


def test_gd_jobs_ask_for_their_measured_cost_as_time_limit():
    """The SLURM time limit of a GD job is its cost model (seeds × steps × P·N × rate, doubled)
    plus 10 minutes; with fixed-step GD the paper block's α = 50 jobs need far more than the
    2 h default."""
    rate = pc.RUNTIME_S_PER_ENTRY
    assert pc.runtime_minutes(100, 5, 3, 4000) == math.ceil(3 * 4000 * 500 * 100 * rate / 60) + 10
    assert pc.runtime_minutes(1000, 50, 2, 200000) > 2 * pc.runtime_minutes(1000, 20, 2, 200000) > 120
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "results/perceptron/train/N1000/alpha50/seeds0-1"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    paper = load_config(REPO / "config/config.yaml")["perceptron"]
    want = pc.runtime_minutes(1000, 50, 2, paper["steps"], paper["integrator"])
    assert f"runtime={want}," in out.stdout
    # the hybrid's cost does not grow with the steps; its α = 50 job fits in the default 2 h
    flow = pc.runtime_minutes(1000, 50, 2, 10 ** 6, "gd_then_flow")
    assert flow == pc.runtime_minutes(1000, 50, 2, 10 ** 3, "gd_then_flow") < 120
