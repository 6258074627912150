"""Provenance on a real run of config/test.yaml: the audit walks from a number to every trajectory
and verifies every hash, catches tampering (edited trajectory, missing file, edited number, edited
fit, edited footer config, swapped dataset), the numbers file matches its fits, and
`snakemake --report` lists every figure and table with its caption.

The snakemake run is shared with tests/test_reruns.py through ``completed_run`` (one per session);
tests that tamper work on a copy of its results/.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_scripts import audit, io
from workflow_scripts.files import sha256_file

from .conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
_RUN: dict[str, Path] = {}


def snakemake(workdir: Path, *args, configfile: Path | str = REPO / "config" / "test.yaml",
              check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-8000:]}")
    return out


def completed_run(tmp_path_factory) -> Path:
    """The working directory of one complete `snakemake` run of config/test.yaml (made once)."""
    if "dir" not in _RUN:
        workdir = tmp_path_factory.mktemp("provenance_run")
        snakemake(workdir, "--cores", "2")
        _RUN["dir"] = workdir
    return _RUN["dir"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return completed_run(tmp_path_factory)


@pytest.fixture
def copy(run, tmp_path) -> Path:
    """A copy of the run's results/ to tamper with."""
    shutil.copytree(run / "results", tmp_path / "results",
                    ignore=shutil.ignore_patterns("train_checkpoints", "logs"))
    return tmp_path


def fits(run: Path) -> list[Path]:
    return sorted((run / "results" / "fit").rglob("fit.json"))


def audit_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workflow_scripts.audit", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def audit_in_process(capsys, *args) -> tuple[int, str, str]:
    rc = audit.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def trajectories(base: Path) -> list[Path]:
    return sorted((base / "results" / "train").rglob("seed*.parquet"))


# ---------------------------------------------------------------------------------------------
# a clean run passes, and the chain printed reaches every trajectory and cell config

@pytest.mark.slow
def test_table_number_chain_to_every_trajectory(run, tmp_path):
    table = run / "results" / "tables" / "main" / "table1.csv"
    out = audit_cli(table, "--row", "cnn/digits", "--number", "gamma_pred", "--recompute",
                    "--json", tmp_path / "audit.json")
    assert out.returncode == 0, out.stdout + out.stderr
    fit = io.read_json(run / "results/fit/main/cnn/digits/spectral_complexity/fit.json")
    assert "AUDIT PASSED" in out.stdout
    report = io.read_json(tmp_path / "audit.json")
    assert report["ok"] and report["failures"] == []
    assert report["selected"]["value"] == fit["estimates"]["gamma_pred"]["value"]
    assert report["selected"]["source"] == "results/fit/main/cnn/digits/spectral_complexity/fit.json"
    # the table prints the fit's number: full precision in CSV, rounded in Markdown and LaTeX
    printed = dict((w.split()[0], v) for w, v in report["selected"]["printed"])
    assert printed["results/tables/main/table1.csv"] == fit["estimates"]["gamma_pred"]["value"]
    gamma_pred = fit["estimates"]["gamma_pred"]["value"]
    assert float(printed["results/tables/main/table1.md"]) == round(gamma_pred, 2)
    for t in trajectories(run):  # every trajectory of the training run, by path and cell
        rel = str(t.relative_to(run))
        assert rel in out.stdout
    assert len(report["cells"]) == len(trajectories(run)) == 9
    for cell_id, cfg in report["cells"].items():
        assert cell_id == f"{cfg['experiment']}/{cfg['arch']}/{cfg['dataset']}/P{cfg['P']}/seed{cfg['seed']}"
    assert '"epochs": 12' in out.stdout  # the shared cell config is printed
    assert "refitted from the aggregate: identical" in out.stdout
    assert "recomputed from the trajectories: identical" in out.stdout
    # every config hash recomputed from its config: 9 cells, then the 2 aggregates and the fit
    assert len(re.findall(r"config_hash [0-9a-f]{16} ok;", out.stdout)) == 9
    assert out.stdout.count("recomputed: ok") == 3


@pytest.mark.slow
def test_every_output_kind_passes(run, capsys):
    r = run / "results"
    agg = r / "aggregate/main/cnn/digits/spectral_complexity"
    cases = [
        (r / "figures/main/cnn/digits/spectral_complexity/scaling.png", "--number", "gamma2_ci_high"),
        (r / "figures/main/grid_collapse_spectral_complexity.png", "--row", "main/cnn/digits",
         "--number", "gamma1"),
        (r / "figures/main/cnn/digits/spectral_complexity/curves.png", "--number", "lambda_opt@120"),
        (r / "figures/ablations/norms_collapse.png",),
        (r / "fit/norms/cnn/digits/frobenius/fit.json", "--number", "eps_opt_ci_low@240"),
        (agg / "optima.parquet", "--row", "P60/seed1", "--number", "lambda_star"),
        (r / "numbers/numbers.tex", "--number", "gammaPredCnnDigits"),
        (r / "numbers/numbers.tsv",),
        (r / "tables/ablations/norms.md", "--row", "frobenius", "--number", "gamma_meas"),
        (r / "tables/norms/table1.tex",),
        (trajectories(run)[0],),
    ]
    for args in cases:
        rc, out, err = audit_in_process(capsys, *args)
        assert rc == 0, f"{args}: {out}\n{err}"
        assert "AUDIT PASSED" in out


@pytest.mark.slow
def test_selector_errors_are_usage_errors(run, capsys):
    table = run / "results/tables/main/table1.csv"
    rc, _, err = audit_in_process(capsys, table, "--row", "vit/mnist", "--number", "gamma_pred")
    assert rc == 2 and "matches 0 of the rows" in err and "main/cnn/digits/spectral_complexity" in err
    rc, _, err = audit_in_process(capsys, table, "--row", "cnn/digits", "--number", "gamma_fake")
    assert rc == 2 and "gamma_pred" in err


@pytest.mark.slow
def test_table_with_both_estimators(copy, monkeypatch, capsys):
    """A fit with estimator both gives two Table 1 rows; each audits against its own estimator."""
    from workflow_scripts import fit as fit_mod, table

    monkeypatch.chdir(copy)
    agg = "results/aggregate/main/cnn/digits/spectral_complexity"
    settings = io.read_json("results/fit/main/cnn/digits/spectral_complexity/fit.json")["provenance"]["config"]
    out = "results/fit/both/cnn/digits/spectral_complexity/fit.json"
    assert fit_mod.main(["--curves", f"{agg}/curves.parquet", "--optima", f"{agg}/optima.parquet",
                         "--settings", json.dumps({**settings, "estimator": "both"}), "--out", out]) == 0
    assert table.main([out, "--out-prefix", "results/tables/both/table1"]) == 0
    capsys.readouterr()
    fitted = io.read_json(out)
    csv_path = copy / "results/tables/both/table1.csv"
    for est in ("ours", "authors"):
        rc, stdout, err = audit_in_process(capsys, csv_path, "--row", f"cnn/digits/{est}",
                                           "--number", "gamma1", "--json", copy / f"{est}.json")
        assert rc == 0, stdout + err
        assert io.read_json(copy / f"{est}.json")["selected"]["value"] == \
            fitted["by_estimator"][est]["estimates"]["gamma1"]["value"]
    assert fitted["by_estimator"]["ours"]["estimates"]["gamma1"]["value"] != \
        fitted["by_estimator"]["authors"]["estimates"]["gamma1"]["value"]
    rc, _, err = audit_in_process(capsys, csv_path, "--row", "cnn/digits", "--number", "gamma1")
    assert rc == 2 and "matches 2 of the rows" in err and "/authors" in err and "/ours" in err
    # the authors' row printing ours is a mismatch
    rows = list(csv.DictReader(open(csv_path)))
    ours = next(r for r in rows if r["estimator"] == "ours")
    for r in rows:
        if r["estimator"] == "authors":
            r["gamma1"] = ours["gamma1"]
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rc, _, err = audit_in_process(capsys, csv_path, "--row", "cnn/digits/authors", "--number", "gamma1")
    assert rc == 1 and "value mismatch" in err and "by_estimator.authors" in err


# ---------------------------------------------------------------------------------------------
# tampering is caught, naming the file and both hashes

def _expect_failure(out: subprocess.CompletedProcess, *needles: str) -> None:
    assert out.returncode == 1, out.stdout + out.stderr
    assert "AUDIT FAILED" in out.stderr
    for n in needles:
        assert n in out.stderr, f"{n!r} not in:\n{out.stderr}"


@pytest.mark.slow
def test_trajectory_edited_after_aggregation(copy):
    path = trajectories(copy)[4]
    recorded = sha256_file(path)
    df, meta = io.read_parquet(path)
    df.loc[len(df) // 2, "test_error"] = 0.001  # a "better" minimum, written in the proper format
    io.write_parquet(df, path, meta)
    actual = sha256_file(path)
    out = audit_cli(copy / "results/tables/main/table1.csv", "--row", "cnn/digits", "--number",
                    "gamma_pred")
    rel = str(path.relative_to(copy))
    _expect_failure(out, f"hash mismatch: {rel}", recorded, actual,
                    "results/aggregate/main/cnn/digits/spectral_complexity/curves.parquet")


@pytest.mark.slow
def test_missing_trajectory(copy):
    path = trajectories(copy)[0]
    path.unlink()
    out = audit_cli(copy / "results/numbers/numbers.tex", "--number", "gammaOneCnnDigits")
    _expect_failure(out, f"missing input: {path.relative_to(copy)}")


@pytest.mark.slow
def test_printed_numbers_edited(copy):
    csv_path = copy / "results/tables/main/table1.csv"
    fit = io.read_json(copy / "results/fit/main/cnn/digits/spectral_complexity/fit.json")
    v = fit["estimates"]["gamma_meas"]["value"]
    text = csv_path.read_text()
    assert repr(v) in text
    csv_path.write_text(text.replace(repr(v), repr(v + 1e-9)))
    out = audit_cli(csv_path, "--row", "cnn/digits", "--number", "gamma_meas")
    _expect_failure(out, "value mismatch: results/tables/main/table1.csv", repr(v + 1e-9), repr(v))
    md = copy / "results/tables/main/table1.md"
    printed = f"{fit['estimates']['gamma1']['value']:.2f} ["
    bumped = f"{fit['estimates']['gamma1']['value'] + 0.1:.2f} ["
    md.write_text(md.read_text().replace(printed, bumped, 1))
    out = audit_cli(md, "--row", "main/cnn/digits", "--number", "gamma1")
    _expect_failure(out, "value mismatch: results/tables/main/table1.md prints", bumped.rstrip(" ["))


@pytest.mark.slow
def test_fit_edited_after_table(copy):
    path = copy / "results/fit/main/cnn/digits/spectral_complexity/fit.json"
    recorded = sha256_file(path)
    fit = io.read_json(path)
    fit["estimates"]["gamma_pred"]["value"] += 0.05
    io.write_json(fit, path)
    out = audit_cli(copy / "results/tables/main/table1.csv", "--row", "cnn/digits",
                    "--number", "gamma_pred")
    _expect_failure(out, "hash mismatch: results/fit/main/cnn/digits/spectral_complexity/fit.json",
                    recorded, sha256_file(path), "results/tables/main/table1.json", "value mismatch")
    # the figure and the numbers file that quote this fit see it too
    out = audit_cli(copy / "results/figures/main/cnn/digits/spectral_complexity/scaling.png",
                    "--number", "gamma_pred")
    _expect_failure(out, recorded, sha256_file(path), "value mismatch")
    out = audit_cli(copy / "results/numbers/numbers.tsv", "--number", "gammaPredCnnDigits")
    _expect_failure(out, recorded, sha256_file(path), "value mismatch: results/numbers/numbers.tsv")


@pytest.mark.slow
def test_footer_config_and_dataset_edited(copy):
    path = trajectories(copy)[2]
    df, meta = io.read_parquet(path)
    meta["config"]["training"]["lr"] = 0.1  # claims another learning rate, hash left as it was
    io.write_parquet(df, path, meta)
    out = audit_cli(path)
    _expect_failure(out, f"config hash mismatch: {path.relative_to(copy)}", meta["config_hash"])
    data = copy / "results/datasets/digits.npz"
    recorded = sha256_file(data)
    with open(data, "ab") as f:
        f.write(b"\0")
    out = audit_cli(trajectories(copy)[0])
    _expect_failure(out, "dataset mismatch", recorded, sha256_file(data))
    # and the dataset file against its own record
    _expect_failure(audit_cli(data), "hash mismatch: results/datasets/digits.npz",
                    "results/datasets/digits.json", recorded)


@pytest.mark.slow
def test_numbers_file_edited(copy):
    tsv = copy / "results/numbers/numbers.tsv"
    rows = list(csv.DictReader(open(tsv), delimiter="\t"))
    row = next(r for r in rows if r["macro"] == "gammaTwoCnnDigitsHigh")
    row["value"] = repr(float(row["value"]) * 1.01)
    with open(tsv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    out = audit_cli(tsv)
    _expect_failure(out, "value mismatch: results/numbers/numbers.tsv main/cnn/digits/"
                         "spectral_complexity/gamma2.ci_high")


@pytest.mark.slow
def test_swapped_outputs_fail_on_their_recorded_hash(copy):
    """Every writer records the sha256 of what it wrote: a swapped image, rendering, macros file
    or heat map is caught even where no number is selected."""
    fig = copy / "results/figures/main/cnn/digits/spectral_complexity"
    cases = [(fig / "scaling.png", fig / "scaling.png", fig / "scaling.png.json"),
             (copy / "results/tables/main/table1.tex", copy / "results/tables/main/table1.csv",
              copy / "results/tables/main/table1.json"),
             (copy / "results/numbers/numbers.tex", copy / "results/numbers/numbers.tsv",
              copy / "results/numbers/numbers.json"),
             (fig / "sensitivity.png", fig / "sensitivity.png", fig / "sensitivity.png.json")]
    for swapped, audited, record in cases:
        assert audit_cli(audited).returncode == 0
        recorded = sha256_file(swapped)
        swapped.write_bytes(swapped.read_bytes() + b"\n")
        _expect_failure(audit_cli(audited), f"hash mismatch: {swapped.relative_to(copy)}",
                        str(record.relative_to(copy)), recorded, sha256_file(swapped))


@pytest.mark.slow
def test_every_output_names_its_kind_in_a_record(run):
    """The audit reads each file's kind from its record: every output the run made has one (in the
    file or in the sidecar listing it with its sha256), except trajectories (their contract)."""
    from workflow_scripts.provenance import read_record

    expect = {"train": "trajectory", "aggregate": "aggregate", "fit": "fit", "sensitivity": "sensitivity",
              "figures": "figure", "tables": "table", "numbers": "numbers", "datasets": "dataset"}
    files = [p for p in (run / "results").rglob("*") if p.is_file()
             and p.parts[len(run.parts) + 1] in expect and "train_checkpoints" not in p.parts
             and not p.name.startswith(".")  # Snakemake's markers
             and not p.name.endswith(".sha256")]  # seals: no outputs, checked in test_seals.py
    assert len(files) > 60
    for p in files:
        kind = expect[p.parts[len(run.parts) + 1]]
        assert audit.detect_kind(p) == kind, p
        if kind == "trajectory":
            assert read_record(p) == (None, None)
            continue
        rec_path, rec = read_record(p)
        assert rec["kind"] == kind and (rec["experiment"] or kind == "dataset"), p
        if rec_path != p:  # a sidecar: it lists this file with its current hash
            listed = {Path(o["path"]).name: o["sha256"] for o in rec["outputs"]}
            assert listed[p.name] == sha256_file(p), p


# ---------------------------------------------------------------------------------------------
# the numbers file

@pytest.mark.slow
def test_numbers_file_has_every_fit_with_its_hash(run):
    tsv = run / "results/numbers/numbers.tsv"
    rows = list(csv.DictReader(open(tsv), delimiter="\t"))
    macros = dict(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}\{([^}]*)\}",
                             (run / "results/numbers/numbers.tex").read_text()))
    assert len(macros) == len(rows) == len({r["macro"] for r in rows})
    assert {r["source"] for r in rows} == {str(p.relative_to(run)) for p in fits(run)}
    for r in rows:
        src = run / r["source"]
        assert r["source_sha256"] == sha256_file(src)
        want = audit.json_pointer(io.read_json(src), r["pointer"])
        assert (r["value"] == "" and want is None) or float(r["value"]) == want
        assert macros[r["macro"]] == r["text"]
    by_macro = {r["macro"]: r for r in rows}
    main = io.read_json(run / "results/fit/main/cnn/digits/spectral_complexity/fit.json")["estimates"]
    for macro, q, fld in (("gammaPredCnnDigits", "gamma_pred", "value"),
                          ("gammaMeasCnnDigitsLow", "gamma_meas", "ci_low"),
                          ("gammaOneNormsFrobeniusCnnDigits", None, None)):
        assert macro in by_macro
        if q:
            assert float(by_macro[macro]["value"]) == main[q][fld]
            assert macros[macro] == f"{main[q][fld]:.2f}"


def test_macro_names():
    from workflow_scripts.numbers import camel, macro_name

    assert camel("cifar10") == "CifarTen" and camel("cifar100") == "CifarOneHundred"
    assert camel("wd1e-3") == "WdOneEThree" and camel("teacher_N4000") == "TeacherNFourThousand"
    ident = {"experiment": "main", "arch": "cnn", "dataset": "mnist", "measure": "spectral_complexity"}
    assert macro_name("gammaPred", ident, "") == "gammaPredCnnMnist"
    ident = {"experiment": "sgd", "arch": "resnet", "dataset": "cifar10", "measure": "l1"}
    assert macro_name("gammaOne", ident, "Low") == "gammaOneSgdLOneResnetCifarTenLow"
    ident = {"experiment": "perceptron", "arch": "perceptron", "dataset": "teacher_N200",
             "measure": "lambda"}
    assert macro_name("gammaTwo", ident, "") == "gammaTwoPerceptronTeacherNTwoHundred"


# ---------------------------------------------------------------------------------------------
# snakemake --report

@pytest.mark.slow
def test_report_lists_every_figure_and_table(run, tmp_path):
    html = tmp_path / "report.html"
    snakemake(run, "--report", str(html))
    text = html.read_text()
    results = json.loads(re.search(r"var results = (\{.*?\});\n", text).group(1))
    figures = sorted(str(p.relative_to(run)) for p in (run / "results/figures").rglob("*.png"))
    # every figure: per panel, grids, sensitivity heat maps, and the ablations' (named after the ablation)
    wanted = figures
    assert len(wanted) == 14
    tables = sorted(str(p.relative_to(run)) for p in (run / "results/tables").rglob("*.csv"))
    assert len(tables) == 3
    for path in wanted + tables + ["results/numbers/numbers.tsv"]:
        assert path in results, f"{path} not in the report"
        entry = results[path]
        assert entry["caption"] and "system-message" not in entry["caption"], entry["caption"]
        named = path.split("/")[2]
        if named == "ablations":
            named = Path(path).stem.split("_")[0]
        if named != "numbers.tsv":
            assert f"<tt class=\"docutils literal\">{named}</tt>" in entry["caption"]
    scaling = results["results/figures/main/cnn/digits/spectral_complexity/scaling.png"]["caption"]
    assert "&quot;epochs&quot;: 12" in scaling and "x_left" in scaling  # the config shown
    norms = results["results/figures/norms/cnn/digits/frobenius/curves.png"]["caption"]
    assert "re-analyses the" in norms  # a reusing experiment names the runs it analyses
    desc = re.search(r"var workflow_desc = (\".*?\");\n", text).group(1)
    assert "audit" in json.loads(desc) and "system-message" not in json.loads(desc)


def test_curves_figure_without_a_fit_audits_its_refined_optima(tmp_path, capsys):
    """A curves figure drawn without fit.json marks each P's refined (parabola-vertex) minimum; the
    audit must recompute that same minimum, not the grid argmin (a false mismatch otherwise)."""
    import numpy as np

    from workflow_scripts import aggregate, figures, trajectory
    from workflow_scripts.synthetic_curves import simulate_trajectories

    root = tmp_path / "results"
    for df, meta in simulate_trajectories(np.random.default_rng(8), [200, 600, 2000], 4, 0.5, 0.9,
                                          experiment="main", arch="vit", dataset="digits"):
        c = meta["config"]
        trajectory.write_trajectory(df, meta, root / "train" / f"P{c['P']}" / f"seed{c['seed']}.parquet")
    agg = root / "aggregate/main/vit/digits/spectral_complexity"
    settings = {"measures": ["spectral_complexity"], "grid_points": 60, "min_seeds": 2}
    aggregate.main(["--measure", "spectral_complexity", "--settings", json.dumps(settings),
                    "--out-curves", str(agg / "curves.parquet"), "--out-optima", str(agg / "optima.parquet"),
                    str(root / "train")])
    png = root / "figures/main/vit/digits/spectral_complexity/curves.png"
    figures.main(["curves", "--curves", str(agg / "curves.parquet"), "--optima", str(agg / "optima.parquet"),
                  "--out", str(png)])
    shown = io.read_json(str(png) + ".json")["panels"][0]["shown"]
    P = 600
    lam_drawn = shown["per_P"][str(P)]["lambda_opt"]
    # the refined minimum is off the grid: a grid argmin could not agree with it
    df, _ = aggregate.read_aggregate_file(agg / "curves.parquet")
    m = df[(df["kind"] == "mean") & (df["P"] == P)]
    assert np.min(np.abs(m["log_lambda"] - np.log(lam_drawn))) > 1e-6
    for number in (f"lambda_opt@{P}", f"eps_opt@{P}"):
        rc, out, err = audit_in_process(capsys, png, "--number", number)
        assert rc == 0, err
    # and an edited sidecar is still caught
    side = io.read_json(str(png) + ".json")
    side["panels"][0]["shown"]["per_P"][str(P)]["lambda_opt"] *= 1.01
    io.write_json(side, str(png) + ".json")
    rc, _, err = audit_in_process(capsys, png, "--number", f"lambda_opt@{P}")
    assert rc == 1 and "value mismatch" in err
