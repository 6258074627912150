"""Aggregation: real trajectory files in, the documented curves/optima schema out."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from workflow_scripts.files import sha256_file
from workflow_scripts import aggregate, config, io, provenance, trajectory
from workflow_scripts.synthetic_curves import simulate_trajectories

SETTINGS = {"measures": ["spectral_complexity"], "grid_points": 40, "min_seeds": 2,
            "window": {"x_left": 0.2, "x_right": 0.8}, "P_min": None, "P_max": None,
            "bootstrap": {"n": 200, "seed": 0}}


def make_traj(P, seed, lam, err, status="completed", group=("main", "cnn", "digits"), extra=None):
    """A contract-valid trajectory with the given λ and test error columns."""
    lam = np.asarray(lam, float)
    err = np.asarray(err, float)
    n = len(lam)
    steps = np.arange(n, dtype=np.int64) * 10
    df = pd.DataFrame({"step": steps, "epoch": steps / 5.0, "wall_time": steps * 0.01,
                       "train_error": np.where(np.isfinite(err), err / 2, np.nan), "train_loss": 1.0,
                       "val_error": err, "val_loss": 1.0, "test_error": err, "test_loss": 1.0,
                       "lambda": lam, "spectral_complexity": lam, "frobenius": lam * 2})
    exp, arch, ds = group
    cfg = {"experiment": exp, "arch": arch, "dataset": ds, "P": P, "seed": seed, **(extra or {})}
    meta = {"cell_id": f"{exp}/{arch}/{ds}/P{P}/seed{seed}", "status": status,
            "diverged_step": None if status == "completed" else int(steps[-1]), "config": cfg,
            "config_hash": provenance.config_hash(cfg), "code": {"git_commit": None},
            "dataset_sha256": "0" * 64}
    return df, meta


def write(root, df, meta):
    c = meta["config"]
    path = root / c["experiment"] / c["arch"] / c["dataset"] / f"P{c['P']}" / "seeds0-9" / f"seed{c['seed']}.parquet"
    trajectory.write_trajectory(df, meta, path)
    return path


def run_cli(tmp_path, inputs, settings=SETTINGS, measure="spectral_complexity"):
    out_c, out_o = tmp_path / "agg" / "curves.parquet", tmp_path / "agg" / "optima.parquet"
    rc = aggregate.main(["--measure", measure, "--settings", json.dumps(settings), "--out-curves",
                         str(out_c), "--out-optima", str(out_o), *map(str, inputs)])
    assert rc == 0
    return out_c, out_o


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(3)
    for df, meta in simulate_trajectories(rng, [100, 300, 1000], 4, 0.5, 0.9, nonmonotone=True,
                                          experiment="main", arch="cnn", dataset="digits"):
        write(root, df, meta)
    # one diverged run at P=300: must be excluded and counted
    df, meta = make_traj(300, 99, np.geomspace(1, 100, 10), np.full(10, 0.5), status="diverged")
    write(root, df, meta)
    return root


def test_schema_counts_and_provenance(tmp_path, synthetic_dir):
    out_c, out_o = run_cli(tmp_path, [synthetic_dir])
    curves, meta = io.read_parquet(out_c)
    optima, ometa = io.read_parquet(out_o)
    assert list(curves.columns) == list(aggregate.CURVE_COLUMNS)
    assert list(optima.columns) == list(aggregate.OPTIMA_COLUMNS)
    assert meta["schema"] == "aggregate/1" and ometa["schema"] == "aggregate/1"
    assert meta["group"] == {"experiment": "main", "arch": "cnn", "dataset": "digits",
                             "measure": "spectral_complexity"}
    # provenance lists every trajectory with its real sha256
    files = sorted(synthetic_dir.rglob("*.parquet"))
    listed = {d["path"]: d["sha256"] for d in meta["inputs"]}
    assert len(listed) == len(files) == 13
    for f in files:
        assert listed[str(f)] == sha256_file(f)
    assert meta["config"] == SETTINGS
    # per-P counts: 4 seeds each, the diverged one at P=300 excluded and counted
    assert meta["per_P"]["300"] == {"files": 5, "used": 4, "diverged": 1, "excluded_other": 0,
                                    "dropped_nonmonotone_rows": 12, "censored": 0}
    assert meta["per_P"]["100"]["diverged"] == 0
    div = optima[optima["seed"] == 99].iloc[0]
    assert div["status"] == "diverged" and not div["used"] and div["excluded"] == "diverged"
    assert np.isnan(div["lambda_star"]) and pd.isna(div["step_star"])
    assert 99 not in set(curves["seed"])
    # seed rows: 3 P x 4 seeds x 40 grid points; mean rows: 3 x 40
    seed_rows = curves[curves["kind"] == "seed"]
    assert len(seed_rows) == 3 * 4 * 40 and (curves["kind"] == "mean").sum() == 3 * 40
    # the mean rows are exactly summarise_curves of the seed rows (the documented derivation)
    again = aggregate.summarise_curves(seed_rows, SETTINGS["min_seeds"])
    got = curves[curves["kind"] == "mean"].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, again, check_dtype=False)
    assert np.allclose(curves["lambda"], np.exp(curves["log_lambda"]))


def test_grid_per_P_spans_seeds_and_no_extrapolation(tmp_path):
    # seed 0 covers λ in [1, 100], seed 1 covers [10, 1000]: the grid spans [1, 1000]
    a = make_traj(50, 0, np.geomspace(1, 100, 9), np.linspace(0.9, 0.1, 9))
    b = make_traj(50, 1, np.geomspace(10, 1000, 9), np.linspace(0.8, 0.2, 9))
    c = make_traj(80, 0, np.geomspace(1, 10, 5), np.linspace(0.5, 0.4, 5))
    d = make_traj(80, 1, np.geomspace(1, 10, 5), np.linspace(0.5, 0.4, 5))
    inputs = [write(tmp_path / "t", *x) for x in (a, b, c, d)]
    out_c, _ = run_cli(tmp_path, inputs)
    curves, _ = io.read_parquet(out_c)
    s = curves[(curves["kind"] == "seed") & (curves["P"] == 50)]
    grid = s[s["seed"] == 0].sort_values("grid_index")["log_lambda"].to_numpy()
    assert grid[0] == pytest.approx(0.0) and grid[-1] == pytest.approx(np.log(1000))
    s0 = s[s["seed"] == 0].set_index("grid_index")
    covered = s0["log_lambda"] <= np.log(100) + 1e-12
    assert s0.loc[covered, "test_error"].notna().all()
    assert s0.loc[~covered, "test_error"].isna().all()         # never extrapolated
    assert (s0.loc[~covered, "masked"]).all() and (s0.loc[~covered, "n_seeds"] == 0).all()
    # error linear in log λ for seed 0: interpolation is exact
    want = 0.9 - 0.8 * s0.loc[covered, "log_lambda"] / np.log(100)
    assert np.allclose(s0.loc[covered, "test_error"], want)
    m = curves[(curves["kind"] == "mean") & (curves["P"] == 50)].set_index("grid_index")
    both = m["n_seeds"] == 2
    assert both.any() and (~m.loc[both, "masked"]).all()
    assert (m.loc[m["n_seeds"] == 1, "masked"]).all()           # fewer than min_seeds = 2
    assert m.loc[m["n_seeds"] == 1, "sem"].isna().all()
    # P=80 has its own grid over [1, 10], independent of P=50
    g80 = curves[(curves["P"] == 80) & (curves["kind"] == "mean")]["lambda"]
    assert g80.min() == pytest.approx(1.0) and g80.max() == pytest.approx(10.0)


def test_nonmonotone_lambda_keeps_increasing_envelope(tmp_path):
    lam = np.array([1, 2, 4, 3, 3.5, 4, 5, 8, 16], float)   # dips after 4: rows 3, 4, 5 dropped
    err = np.array([0.9, 0.8, 0.6, 0.99, 0.99, 0.99, 0.5, 0.4, 0.45])
    inputs = [write(tmp_path / "t", *make_traj(10, s, lam, err)) for s in (0, 1)]
    out_c, out_o = run_cli(tmp_path, inputs)
    curves, meta = io.read_parquet(out_c)
    optima, _ = io.read_parquet(out_o)
    assert (optima["n_dropped_nonmonotone"] == 3).all()
    assert meta["per_P"]["10"]["dropped_nonmonotone_rows"] == 6
    s = curves[(curves["kind"] == "seed") & (curves["seed"] == 0)]
    # the dropped rows (error 0.99) never leak into the interpolated curve
    assert s["test_error"].max() <= 0.9 + 1e-12
    seg = s[(s["lambda"] > 4) & (s["lambda"] < 5)]
    expect = np.interp(seg["log_lambda"], np.log([4, 5]), [0.6, 0.5])
    assert np.allclose(seg["test_error"], expect)
    # the optimum is read from the raw rows: λ*=8, ε*=0.4 at step 70
    o = optima.iloc[0]
    assert o["lambda_star"] == 8 and o["eps_star"] == 0.4 and o["step_star"] == 70


def test_bad_rows_dropped_and_unusable_seeds_excluded(tmp_path):
    lam = np.array([0.0, 1, 2, np.nan, 4, 8, np.inf])
    err = np.array([0.9, 0.8, np.nan, 0.5, 0.4, 0.3, 0.2])
    good = make_traj(20, 0, lam, err)
    one_row = make_traj(20, 1, [np.nan, 3.0, np.nan], [0.5, 0.4, 0.3])
    none = make_traj(20, 2, [np.nan, np.nan], [0.5, 0.4])
    inputs = [write(tmp_path / "t", *x) for x in (good, one_row, none)]
    out_c, out_o = run_cli(tmp_path, inputs)
    optima, meta = io.read_parquet(out_o)
    o = optima.set_index("seed")
    assert o.loc[0, "used"] and o.loc[0, "lambda_star"] == 8 and o.loc[0, "eps_star"] == 0.3
    assert o.loc[0, "lambda_min"] == 1 and o.loc[0, "lambda_max"] == 8
    assert not o.loc[1, "used"] and o.loc[1, "excluded"] == "fewer than 2 increasing-λ rows"
    assert not o.loc[2, "used"] and o.loc[2, "excluded"] == "no finite rows"
    # seed 0's minimum is its last usable row (λ = 8): censored, and counted
    assert o.loc[0, "censored"] and not o.loc[1, "censored"]
    assert meta["per_P"]["20"] == {"files": 3, "used": 1, "diverged": 0, "excluded_other": 2,
                                   "dropped_nonmonotone_rows": 0, "censored": 1}


def test_all_diverged_writes_empty_curves(tmp_path):
    inputs = [write(tmp_path / "t", *make_traj(5, s, [1, 2, 3], [0.5, 0.4, 0.3], status="diverged"))
              for s in (0, 1)]
    out_c, out_o = run_cli(tmp_path, inputs)
    curves, _ = io.read_parquet(out_c)
    optima, meta = io.read_parquet(out_o)
    assert len(curves) == 0 and list(curves.columns) == list(aggregate.CURVE_COLUMNS)
    assert meta["per_P"]["5"]["diverged"] == 2 and not optima["used"].any()


def test_other_measure_column(tmp_path):
    inputs = [write(tmp_path / "t", *make_traj(5, s, [1, 2, 3], [0.5, 0.4, 0.45])) for s in (0, 1)]
    out_c, out_o = run_cli(tmp_path, inputs, measure="frobenius")
    optima, meta = io.read_parquet(out_o)
    assert meta["group"]["measure"] == "frobenius"
    assert (optima["lambda_star"] == 4).all()            # frobenius = 2 λ in make_traj


@pytest.mark.parametrize("case, match", [
    ("mixed", "mix"), ("duplicate", "appears twice"), ("measure", "no column"),
    ("empty", "no trajectory files"), ("missing", "neither a file"), ("settings", "grid_points")])
def test_clear_errors(tmp_path, case, match):
    a = write(tmp_path / "a", *make_traj(5, 0, [1, 2, 3], [0.5, 0.4, 0.3]))
    settings = SETTINGS
    if case == "mixed":
        inputs = [a, write(tmp_path / "b", *make_traj(5, 1, [1, 2], [0.5, 0.4], group=("main", "vit", "digits")))]
    elif case == "duplicate":
        inputs = [a, write(tmp_path / "b", *make_traj(5, 0, [1, 2], [0.5, 0.4]))]
    elif case == "measure":
        inputs = [a]
        with pytest.raises(ValueError, match=match):
            run_cli(tmp_path, inputs, measure="l1")
        return
    elif case == "empty":
        (tmp_path / "nothing").mkdir()
        inputs = [tmp_path / "nothing"]
    elif case == "missing":
        inputs = [tmp_path / "nope.parquet"]
    else:
        inputs = [a]
        settings = {k: v for k, v in SETTINGS.items() if k != "grid_points"}
    with pytest.raises(ValueError, match=match):
        run_cli(tmp_path, inputs, settings=settings)


def test_settings_from_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("grid_points: 7\nmin_seeds: 1\n")
    assert config.parse_settings(f"@{p}") == {"grid_points": 7, "min_seeds": 1}
    with pytest.raises(ValueError, match="JSON object"):
        config.parse_settings("[1, 2]")


# ---- property: aggregation never crashes on ragged, NaN-containing or single-seed input ----

finite_or_nan = st.one_of(st.floats(0.001, 1e6), st.just(float("nan")), st.just(0.0),
                          st.just(float("inf")), st.floats(-5, 0))
err_or_nan = st.one_of(st.floats(0, 1), st.just(float("nan")))


@st.composite
def seed_tables(draw):
    n = draw(st.integers(1, 12))
    lam = draw(st.lists(finite_or_nan, min_size=n, max_size=n))
    err = draw(st.lists(err_or_nan, min_size=n, max_size=n))
    status = draw(st.sampled_from(["completed", "completed", "diverged"]))
    return lam, err, status


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([10, 20, 40]), seed_tables()), min_size=1, max_size=8),
       st.integers(2, 30), st.integers(1, 4))
def test_property_aggregate_never_crashes(cells, grid_points, min_seeds):
    seeds = []
    for k, (P, (lam, err, status)) in enumerate(cells):
        df, meta = make_traj(P, k, lam, err, status=status)
        seeds.append(aggregate.reduce_trajectory(df, meta, "spectral_complexity"))
    curves, optima, per_P = aggregate.aggregate(seeds, {"grid_points": grid_points, "min_seeds": min_seeds})
    assert len(optima) == len(cells)
    assert sum(v["files"] for v in per_P.values()) == len(cells)
    used = optima[optima["used"]]
    assert np.all(np.isfinite(used["lambda_star"])) and np.all(used["lambda_star"] > 0)
    seed_rows = curves[curves["kind"] == "seed"]
    assert len(seed_rows) == len(used) * grid_points
    vals = seed_rows["test_error"].to_numpy(float)
    assert np.all((vals[np.isfinite(vals)] >= 0) & (vals[np.isfinite(vals)] <= 1))
    mean_rows = curves[curves["kind"] == "mean"]
    assert (mean_rows["masked"] == (mean_rows["n_seeds"] < min_seeds)).all()


@pytest.mark.parametrize("key", ["status", "cell_id", "config"])
def test_a_footer_without_status_cell_or_config_is_refused(key):
    """No default stands in for a missing status (it was 'completed'): the reduction says what lacks."""
    df, meta = make_traj(100, 0, [1.0, 2.0, 3.0], [0.5, 0.3, 0.4], status="diverged")
    assert aggregate.reduce_trajectory(df, meta, "spectral_complexity").status == "diverged"
    del meta[key]
    with pytest.raises(ValueError, match=f"lacks '{key}'"):
        aggregate.reduce_trajectory(df, meta, "spectral_complexity", "t.parquet")
