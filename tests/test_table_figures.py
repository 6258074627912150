"""Table 1 and the aggregate/fit figures, from real aggregate and fit files."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workflow_scripts.files import sha256_file
from workflow_scripts import aggregate, figures, fit, io, provenance, table, trajectory
from workflow_scripts.synthetic_curves import simulate_trajectories

SETTINGS = {"measures": ["spectral_complexity"], "grid_points": 50, "min_seeds": 2,
            "window": {"x_left": 0.2, "x_right": 0.8}, "P_min": None, "P_max": None,
            "bootstrap": {"n": 100, "seed": 0}}
GROUPS = {("cnn", "mnist"): (0.55, 0.9), ("vit", "cifar10"): (0.3, 0.8), ("resnet", "cifar100"): (0.4, 1.0)}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Three groups: two fitted, one (resnet, cifar100) impossible (P_min above every P)."""
    root = tmp_path_factory.mktemp("tf")
    rng = np.random.default_rng(1)
    out = {}
    for (arch, ds), (g1, g2) in GROUPS.items():
        d = root / arch / ds
        for df, meta in simulate_trajectories(rng, [500, 1500, 5000, 15000], 4, g1, g2,
                                              experiment="main", arch=arch, dataset=ds):
            c = meta["config"]
            trajectory.write_trajectory(df, meta, d / "train" / f"P{c['P']}" / f"seed{c['seed']}.parquet")
        curves, optima, fj = d / "curves.parquet", d / "optima.parquet", d / "fit.json"
        aggregate.main(["--measure", "spectral_complexity", "--settings", json.dumps(SETTINGS),
                        "--out-curves", str(curves), "--out-optima", str(optima), str(d / "train")])
        s = {**SETTINGS, "P_min": 10**6} if arch == "resnet" else SETTINGS
        fit.main(["--curves", str(curves), "--optima", str(optima), "--settings", json.dumps(s),
                  "--out", str(fj)])
        out[(arch, ds)] = (curves, optima, fj)
    return root, out


def test_table_csv_md_tex_and_sidecar(fitted, tmp_path):
    _, groups = fitted
    fits = [groups[k][2] for k in (("vit", "cifar10"), ("resnet", "cifar100"), ("cnn", "mnist"))]
    prefix = tmp_path / "tables" / "table1"
    assert table.main(["--out-prefix", str(prefix), *map(str, fits)]) == 0
    rows = list(csv.DictReader(open(f"{prefix}.csv")))
    assert [(r["arch"], r["dataset"]) for r in rows] == [("cnn", "mnist"), ("resnet", "cifar100"),
                                                          ("vit", "cifar10")]
    for r in rows:
        f = io.read_json(groups[(r["arch"], r["dataset"])][2])
        pub = table.PUBLISHED[(r["arch"], r["dataset"])]
        assert float(r["paper_gamma_pred"]) == pub["gamma_pred"]
        assert float(r["paper_gamma_meas"]) == pub["gamma_meas"]
        assert float(r["paper_sigma"]) == pub["sigma"]
        assert r["status"] == f["status"]
        if f["status"] == "ok":
            for k in table.EXPONENTS:       # CSV keeps full precision
                assert float(r[k]) == f["estimates"][k]["value"]
                assert float(r[f"{k}_ci_low"]) == f["estimates"][k]["ci_low"]
                assert float(r[f"{k}_ci_high"]) == f["estimates"][k]["ci_high"]
        else:
            assert r["gamma1"] == "" and "2 P values" in r["reason"]
    md = open(f"{prefix}.md").read()
    f = io.read_json(groups[("cnn", "mnist")][2])["estimates"]["gamma1"]
    assert f"{f['value']:.2f} [{f['ci_low']:.2f}, {f['ci_high']:.2f}]" in md
    assert "| CNN | MNIST |" in md and "0.60" in md and "0.55" in md and "impossible" in md
    tex = open(f"{prefix}.tex").read()
    assert r"\begin{tabular}" in tex and r"\gamma_\mathrm{pred}" in tex and "fit impossible" in tex
    assert tex.count(r"\\") == 4            # header + 3 rows
    side = io.read_json(f"{prefix}.json")
    assert {d["path"]: d["sha256"] for d in side["provenance"]["inputs"]} == \
        {str(p): sha256_file(p) for p in fits}
    assert len(side["rows"]) == 3
    # the record: kind, experiment, the three renderings' sha256, every row's line as printed
    assert provenance.is_record(side) and side["kind"] == "table" and side["experiment"] == "main"
    assert {d["path"]: d["sha256"] for d in side["outputs"]} == \
        {f"{prefix}{x}": sha256_file(f"{prefix}{x}") for x in (".csv", ".md", ".tex")}
    for name, text in (("table1.md", md), ("table1.tex", tex)):
        lines = text.splitlines()
        assert [e["fit"] for e in side["printed"][name]] == [r["fit"] for r in rows]
        for e in side["printed"][name]:
            assert lines[e["line"] - 1] == e["text"]
            assert all(c is None or c in e["text"] for c in e["cells"].values())
    cnn = side["printed"]["table1.md"][0]["cells"]["gamma1"]
    assert cnn == f"{f['value']:.2f} [{f['ci_low']:.2f}, {f['ci_high']:.2f}]"
    assert side["printed"]["table1.tex"][1]["cells"]["gamma1"] is None  # spanned by "fit impossible"
    for x in (".csv", ".md", ".tex", ".json"):  # each file finds this record
        assert provenance.read_record(f"{prefix}{x}") == (Path(f"{prefix}.json"), side)


def test_published_values_are_the_papers():
    assert len(table.PUBLISHED) == 9
    assert table.PUBLISHED[("resnet", "mnist")] == {"gamma_pred": 0.57, "gamma_meas": 0.69, "sigma": 0.08}
    assert table.PUBLISHED[("vit", "cifar100")] == {"gamma_pred": 0.14, "gamma_meas": 0.12, "sigma": 0.04}


def check_png(path, min_w=500, min_h=300):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= min_w and im.size[1] >= min_h
        arr = np.asarray(im.convert("L"))
    assert arr.std() > 10          # not blank
    side = io.read_json(str(path) + ".json")
    for d in side["provenance"]["inputs"]:
        assert d["sha256"] == sha256_file(d["path"])
    # its record: the image's own sha256 and every string drawn on it
    assert provenance.read_record(path) == (Path(f"{path}.json"), side) and side["kind"] == "figure"
    assert side["outputs"] == [{"path": str(path), "sha256": sha256_file(path)}]
    drawn = side["printed"][Path(path).name]
    assert drawn and all(isinstance(t, str) and t.strip() for t in drawn)
    return side


def test_single_panel_figures(fitted, tmp_path):
    _, groups = fitted
    curves, optima, fj = groups[("cnn", "mnist")]
    res = io.read_json(fj)
    out = tmp_path / "fig"
    assert figures.main(["curves", "--curves", str(curves), "--optima", str(optima),
                         "--out", str(out / "curves.png")]) == 0
    side = check_png(out / "curves.png")
    assert any("test error along training" in t for t in side["printed"]["curves.png"])
    shown = side["panels"][0]["shown"]["per_P"]
    assert sorted(map(int, shown)) == [500, 1500, 5000, 15000]
    for row in res["per_P"]:       # without --fit the optima are recomputed exactly as fit.py does
        assert shown[str(row["P"])]["lambda_opt"] == pytest.approx(row["lambda_opt"], rel=1e-9)
        assert shown[str(row["P"])]["eps_opt"] == pytest.approx(row["eps_opt"], rel=1e-9)
    assert side["panels"][0]["group"]["arch"] == "cnn"

    figures.main(["collapse", "--curves", str(curves), "--optima", str(optima), "--fit", str(fj),
                  "--out", str(out / "collapse.png")])
    side = check_png(out / "collapse.png")
    s = side["panels"][0]["shown"]
    assert s["fit"]["gamma1"][0] == res["estimates"]["gamma1"]["value"]
    for row in res["per_P"]:       # normalisation uses exactly the fitted optima
        assert s["per_P"][str(row["P"])] == {"lambda_opt": row["lambda_opt"], "eps_opt": row["eps_opt"]}
    assert {d["path"] for d in side["provenance"]["inputs"]} == {str(curves), str(optima), str(fj)}

    figures.main(["scaling", "--optima", str(optima), "--fit", str(fj), "--out", str(out / "scaling.png")])
    side = check_png(out / "scaling.png", min_w=1000)
    s = side["panels"][0]["shown"]
    assert s["gamma2"][0] == res["estimates"]["gamma2"]["value"]
    assert s["gamma_pred"][0] == res["estimates"]["gamma_pred"]["value"]
    assert s["lines"]["predicted"]["intercept"] == res["estimates"]["pred_log_intercept"]["value"]
    assert s["eps_opt"] == {str(r["P"]): r["eps_opt"] for r in res["per_P"]}


def test_grids_and_impossible_panels(fitted, tmp_path):
    _, groups = fitted
    keys = list(groups)
    cs = [str(groups[k][0]) for k in keys]
    os_ = [str(groups[k][1]) for k in keys]
    fs = [str(groups[k][2]) for k in keys]
    for kind in ("curves", "collapse"):
        out = tmp_path / f"grid_{kind}.png"
        args = ["grid", "--kind", kind, "--curves", *cs, "--optima", *os_, "--out", str(out)]
        assert figures.main(args + (["--fit", *fs] if kind == "collapse" else [])) == 0
        side = check_png(out, min_w=1200, min_h=900)    # 3 archs x 3 datasets
        assert [(p["group"]["arch"], p["group"]["dataset"]) for p in side["panels"]] == \
            [("cnn", "mnist"), ("resnet", "cifar100"), ("vit", "cifar10")]
    # the impossible fit's panel is drawn without a fitted line
    assert "fit" not in side["panels"][1]["shown"]
    assert "fit" in side["panels"][0]["shown"]
    # a scaling figure for an impossible fit still renders its data
    figures.main(["scaling", "--optima", os_[2], "--fit", fs[2], "--out", str(tmp_path / "s.png")])
    check_png(tmp_path / "s.png")


def test_grid_of_ablation_variants(fitted, tmp_path):
    """Ablations repeat (arch, dataset) across experiments or measures: one row per variant."""
    root, groups = fitted
    c, o, f = groups[("cnn", "mnist")]
    train = c.parent / "train"
    c2, o2, f2 = root / "lam" / "curves.parquet", root / "lam" / "optima.parquet", root / "lam" / "fit.json"
    aggregate.main(["--measure", "lambda", "--settings", json.dumps(SETTINGS), "--out-curves",
                    str(c2), "--out-optima", str(o2), str(train)])
    fit.main(["--curves", str(c2), "--optima", str(o2), "--settings", json.dumps(SETTINGS),
              "--out", str(f2)])
    cv, ov, fv = groups[("vit", "cifar10")]
    out = tmp_path / "ablation.png"
    figures.main(["grid", "--kind", "collapse", "--curves", str(c), str(c2), str(cv), "--optima",
                  str(o), str(o2), str(ov), "--fit", str(f), str(f2), str(fv), "--out", str(out)])
    side = check_png(out)
    assert [(p["group"]["measure"], p["group"]["arch"]) for p in side["panels"]] == \
        [("spectral_complexity", "cnn"), ("spectral_complexity", "vit"), ("lambda", "cnn")]
    panels = [figures.Panel(x, y, z) for x, y, z in ((c, o, f), (c2, o2, f2), (cv, ov, fv))]
    rows, cols, cells, _ = figures.grid_layout(panels)
    # two datasets shown: rows are (variant, arch), columns datasets
    assert len(rows) == 4 and cols == [("mnist",), ("cifar10",)]
    rows, cols, _, _ = figures.grid_layout(panels[:2])
    assert len(rows) == 2 and cols == [("cnn",)]       # one dataset: a row per variant


def test_figure_input_errors(fitted, tmp_path):
    _, groups = fitted
    (c1, o1, _), (c2, _, f2) = groups[("cnn", "mnist")], groups[("vit", "cifar10")]
    with pytest.raises(ValueError, match="--optima"):
        figures.main(["grid", "--kind", "curves", "--curves", str(c1), str(c2), "--optima", str(o1),
                      "--out", str(tmp_path / "x.png")])
    with pytest.raises(ValueError, match="fits"):
        figures.main(["collapse", "--curves", str(c1), "--optima", str(o1), "--fit", str(f2),
                      "--out", str(tmp_path / "y.png")])
    with pytest.raises(ValueError, match="two inputs"):
        figures.main(["grid", "--kind", "curves", "--curves", str(c1), str(c1), "--optima", str(o1),
                      str(o1), "--out", str(tmp_path / "z.png")])
    assert not list(tmp_path.glob("*.png"))
