"""Censored minima: a test-error minimum at the end of training is where training stopped, not a
minimum. The aggregate flags such seeds and counts them per P; the fit leaves them out by default."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from workflow_scripts import aggregate, fit, io
from workflow_scripts.aggregate import censored_optimum
from workflow_scripts.figures import Panel
from workflow_scripts.synthetic_curves import simulate_trajectories

from .test_aggregate import make_traj, run_cli, write

LAM = np.geomspace(1.0, 100.0, 30)  # λ along training, ~17% growth per logged point


def u_shaped(lam, lam_opt):
    """Test error with its minimum at lam_opt (log-parabola)."""
    return 0.05 * np.exp(0.02 * np.log(lam / lam_opt) ** 2)


def test_interior_minimum_is_not_censored():
    assert not censored_optimum(LAM, u_shaped(LAM, 10.0))


def test_minimum_at_the_last_point_is_censored():
    err = u_shaped(LAM, 1000.0)  # still falling when training stops
    assert int(np.argmin(err)) == len(LAM) - 1
    assert censored_optimum(LAM, err)


def test_tolerance_in_lambda_around_the_last_point():
    lam = np.array([1.0, 2.0, 4.0, 8.0, 8.2])
    err = np.array([0.5, 0.3, 0.2, 0.1, 0.11])  # minimum one row before the end, λ 2.5% below it
    assert censored_optimum(lam, err)                      # within the default 5%
    assert not censored_optimum(lam, err, tolerance=0.01)  # the error was seen to rise beyond 1%
    # λ stalling after the minimum (weight decay) never shows the rise either
    stall = np.array([1.0, 2.0, 4.0, 4.05, 4.1, 4.12])
    assert censored_optimum(stall, np.array([0.5, 0.3, 0.1, 0.12, 0.13, 0.14]))
    # λ falling well below λ* after the minimum (weight decay) while the error rises: not censored
    shrink = np.array([1.0, 2.0, 4.0, 3.0, 2.5])
    assert not censored_optimum(shrink, np.array([0.5, 0.3, 0.1, 0.12, 0.13]))
    with pytest.raises(ValueError, match="tolerance"):
        censored_optimum(lam, err, tolerance=-0.1)


def test_unusable_rows_are_ignored():
    lam = np.array([1.0, 2.0, 4.0, np.nan, 8.0, -1.0])
    err = np.array([0.5, 0.3, 0.2, 0.01, 0.25, 0.0])  # the two lower errors sit on bad λ rows
    assert not censored_optimum(lam, err)
    assert not censored_optimum([np.nan], [0.1])


def test_aggregate_records_censored_seeds_and_counts_them_per_P(tmp_path):
    root = tmp_path / "train"
    for seed in range(3):
        write(root, *make_traj(100, seed, LAM, u_shaped(LAM, 10.0)))
    for seed in range(3):  # P = 300: two seeds stop before their minimum
        write(root, *make_traj(300, seed, LAM, u_shaped(LAM, 30.0 if seed == 0 else 500.0)))
    out_c, out_o = run_cli(tmp_path, [root])
    optima, meta = io.read_parquet(out_o)
    got = {(int(r.P), int(r.seed)): bool(r.censored) for r in optima.itertuples()}
    assert got == {(100, 0): False, (100, 1): False, (100, 2): False,
                   (300, 0): False, (300, 1): True, (300, 2): True}
    assert meta["per_P"]["100"]["censored"] == 0 and meta["per_P"]["300"]["censored"] == 2
    assert meta["censor_tolerance"] == aggregate.CENSOR_TOLERANCE


def truncated_fit_files(tmp_path, n_seeds=4):
    """Synthetic seeds with known exponents (γ₁ 0.5, γ₂ 1.0) where all but one seed of the
    largest P stop training at 0.6 λ_opt, and one seed of the smallest P stops at 0.8 λ_opt."""
    rng = np.random.default_rng(11)
    Ps = [100, 200, 400, 800, 1600]
    root = tmp_path / "train"
    for df, meta in simulate_trajectories(rng, Ps, n_seeds, 0.5, 1.0, sigma_lambda=0.02,
                                          sigma_eps=0.02, noise=0.01, n_eval=60,
                                          experiment="main", arch="cnn", dataset="digits"):
        P, seed = meta["config"]["P"], meta["config"]["seed"]
        stop = (0.6 if P == 1600 and seed > 0 else 0.8 if P == 100 and seed == 0 else None)
        if stop is not None:
            lam_opt = 2.0 * P ** 1.0  # simulate_seeds' lam0 · P^γ₂
            df = df[df["lambda"] <= stop * lam_opt]
        write(root, df, meta)
    return run_cli(tmp_path, [root], settings={**SETTINGS})


SETTINGS = {"grid_points": 60, "min_seeds": 2, "window": {"x_left": 0.1, "x_right": 0.6},
            "bootstrap": {"n": 50, "seed": 0}}


def run_fit(tmp_path, curves, optima, **settings):
    out = tmp_path / f"fit_{len(list(tmp_path.glob('fit_*')))}.json"
    assert fit.main(["--curves", str(curves), "--optima", str(optima), "--settings",
                     json.dumps({**SETTINGS, **settings}), "--out", str(out)]) == 0
    return io.read_json(out)


def test_fit_excludes_censored_seeds_by_default_and_says_why(tmp_path):
    curves, optima = truncated_fit_files(tmp_path)
    opt, _ = io.read_parquet(optima)
    assert int(opt["censored"].sum()) == 4  # 3 at P = 1600, 1 at P = 100

    excl = run_fit(tmp_path, curves, optima)
    incl = run_fit(tmp_path, curves, optima, censored="include")
    assert excl["status"] == incl["status"] == "ok"
    assert excl["settings"]["censored"] == "exclude" and incl["settings"]["censored"] == "include"
    c = excl["censored"]
    assert c["setting"] == "exclude"
    assert {r["P"]: (r["seeds"], r["censored"]) for r in c["per_P"]} == {
        100: (4, 1), 200: (4, 0), 400: (4, 0), 800: (4, 0), 1600: (4, 3)}
    assert [d["P"] for d in c["dropped_P"]] == [1600]
    assert "fewer than min_seeds=2" in c["dropped_P"][0]["reason"]
    assert excl["P_used"]["gamma2"] == [100, 200, 400, 800]
    assert incl["P_used"]["gamma2"] == [100, 200, 400, 800, 1600]
    assert {r["P"]: r["n_seeds"] for r in excl["per_P"]}[100] == 3  # the censored seed left out

    # the truncated seeds pull P = 1600's optimum to where training stopped: with them γ₂ and
    # γ_meas describe the training length; without them they are the truth (γ₂ 1, γ_meas 0.5)
    for key, truth in (("gamma2", 1.0), ("gamma_meas", 0.5)):
        e, i = excl["estimates"][key], incl["estimates"][key]
        assert e["ci_low"] <= truth <= e["ci_high"], (key, e)
        assert i["ci_high"] < truth, (key, i)


def test_an_impossible_fit_describes_the_seeds_censoring_leaves(tmp_path):
    """A fit impossible for another reason (here no P in its P range) still reports per-P optima:
    of the uncensored seeds, as a fit that ran would, not of every seed under an exclude label."""
    curves, optima = truncated_fit_files(tmp_path)
    res = run_fit(tmp_path, curves, optima, P_min=10**6)
    assert res["status"] == "impossible" and "P range" in res["reason"]
    assert res["censored"]["setting"] == "exclude"
    assert [d["P"] for d in res["censored"]["dropped_P"]] == [1600]
    assert {r["P"]: r["n_seeds"] for r in res["per_P"]} == {100: 3, 200: 4, 400: 4, 800: 4}
    panel = Panel(curves, optima, tmp_path / "fit_0.json")
    assert not panel.optimum_censored(100)  # drawn from its 3 uncensored seeds
    assert panel.optimum_censored(1600)     # dropped: drawn from the mean curve of all seeds


def test_authors_estimator_keeps_censored_seeds_and_says_so(tmp_path):
    curves, optima = truncated_fit_files(tmp_path)
    res = run_fit(tmp_path, curves, optima, estimator="both")
    by = res["by_estimator"]
    assert by["ours"]["censored"]["setting"] == "exclude"
    assert by["authors"]["censored"]["setting"] == "include"
    assert "censored minima included" in by["authors"]["censored"]["note"]
    assert 1600 in by["authors"]["P_used"]["gamma2"] and 1600 not in by["ours"]["P_used"]["gamma2"]


def test_every_P_censored_is_an_impossible_fit_with_the_reason(tmp_path):
    root = tmp_path / "train"
    for P in (100, 300):
        for seed in range(2):
            write(root, *make_traj(P, seed, LAM, u_shaped(LAM, 1e4)))
    curves, optima = run_cli(tmp_path, [root])
    res = run_fit(tmp_path, curves, optima)
    assert res["status"] == "impossible"
    assert "censored" in res["reason"] and "train longer" in res["reason"]
    assert {r["P"]: r["censored"] for r in res["censored"]["per_P"]} == {100: 2, 300: 2}
    # its per-P optima rest on censored seeds: every P is listed as dropped, so a figure marks them
    assert [d["P"] for d in res["censored"]["dropped_P"]] == [100, 300]
    panel = Panel(curves, optima, tmp_path / "fit_0.json")
    assert panel.optimum_censored(100) and panel.optimum_censored(300)
    assert run_fit(tmp_path, curves, optima, censored="include")["censored"]["setting"] == "include"


def test_censored_setting_is_validated():
    with pytest.raises(ValueError, match="censored"):
        fit.Settings.from_dict({**SETTINGS, "censored": "drop"})


def test_aggregates_without_a_censored_column_fit_as_before(tmp_path):
    curves, optima = truncated_fit_files(tmp_path)
    opt, meta = io.read_parquet(optima)
    io.write_parquet(opt.drop(columns=["censored"]), tmp_path / "old_optima.parquet", meta)
    data, _ = fit.load_fit_data(curves, tmp_path / "old_optima.parquet")
    assert not any(c.any() for c in data.censored)
    res = fit.estimate(data, SETTINGS)
    assert 1600 in res["P_used"]["gamma2"] and not res["censored"]["dropped_P"]
    assert math.isfinite(res["estimates"]["gamma2"]["value"])


def test_table_counts_censored_cells_and_figures_draw_them_open(tmp_path):
    from workflow_scripts import figures, table

    curves, optima = truncated_fit_files(tmp_path)
    fj = tmp_path / "fit.json"
    assert fit.main(["--curves", str(curves), "--optima", str(optima), "--settings",
                     json.dumps({**SETTINGS, "estimator": "both"}), "--out", str(fj)]) == 0
    prefix = tmp_path / "table1"
    table.write_table([fj], prefix)
    rows = {r["estimator"]: r for r in io.read_json(f"{prefix}.json")["rows"]}
    assert (rows["ours"]["n_censored"], rows["ours"]["n_cells"]) == (4, 20)
    assert rows["ours"]["censored_dropped_P"] == "1600"
    assert rows["authors"]["censored_setting"] == "include" and not rows["authors"]["censored_dropped_P"]
    md = (tmp_path / "table1.md").read_text()
    assert "4/20 excluded (P 1600 dropped)" in md and "4/20 included" in md
    assert "4/20 excluded (P 1600 dropped)" in (tmp_path / "table1.tex").read_text()

    figures.main(["panel", "--curves", str(curves), "--optima", str(optima), "--fit", str(fj),
                  "--out-dir", str(tmp_path / "fig")])
    shown = io.read_json(tmp_path / "fig" / "curves.png.json")["panels"][0]["shown"]["per_P"]
    # P = 1600 was dropped: its drawn optimum rests on censored seeds; P = 100 kept 3 uncensored
    assert {P: v["censored"] for P, v in shown.items()} == {
        "100": False, "200": False, "400": False, "800": False, "1600": True}
    s = io.read_json(tmp_path / "fig" / "scaling.png.json")["panels"][0]["shown"]
    assert len(s["lambda_star_censored"]) == 4 and s["optimum_censored"]["1600"]
    assert "open: censored minimum (training ended)" in \
        io.read_json(tmp_path / "fig" / "scaling.png.json")["printed"]["scaling.png"]

    # both grid kinds from one process, one PNG (and record) each
    outs = [tmp_path / "grid_curves.png", tmp_path / "grid_collapse.png"]
    assert figures.main(["grid", "--kind", "curves", "collapse", "--curves", str(curves),
                         "--optima", str(optima), "--fit", str(fj), "--out", *map(str, outs)]) == 0
    assert [io.read_json(f"{o}.json")["plot"] for o in outs] == ["grid-curves", "grid-collapse"]
    with pytest.raises(SystemExit):
        figures.main(["grid", "--kind", "curves", "collapse", "--curves", str(curves),
                      "--optima", str(optima), "--out", str(outs[0])])


@pytest.mark.parametrize("module", ["figures", "table", "numbers", "aggregate", "fit", "sensitivity",
                                    "perceptron.figures"])
def test_drawing_and_tabulating_jobs_do_not_import_torch(module):
    """Each job is a fresh interpreter: importing torch would cost it seconds of start-up."""
    import subprocess
    import sys

    code = f"import sys, workflow_scripts.{module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
