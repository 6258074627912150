"""Sealed outputs (issue 26, part 1): a file changed after the pipeline wrote it is refused, with one
line naming it, by every reader before it parses anything, and by the plain audit.

The cases are the ones a hostile but fair user found: one bit flipped in a trajectory's test_error
column (used silently, or a raw pyarrow traceback), and a hand-edited fit.json (valid JSON, γ₁
outside its own interval) that went into the table.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from workflow_scripts.files import sha256_file
from workflow_scripts import aggregate, audit, figures, fit, io, numbers, seal, table, trajectory
from workflow_scripts.synthetic_curves import simulate_trajectories

from .conftest import REPO

SETTINGS = {"measures": ["spectral_complexity"], "grid_points": 30, "min_seeds": 2,
            "window": {"x_left": 0.2, "x_right": 0.8}, "P_min": None, "P_max": None,
            "bootstrap": {"n": 20, "seed": 0}}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Trajectories, their aggregate and fit, written by the pipeline's own writers and entry points
    with paths relative to a working directory holding results/ (as Snakemake runs them), so that
    the records of a copy point into the copy."""
    root = tmp_path_factory.mktemp("sealed")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        train = Path("results/train")
        rng = np.random.default_rng(0)
        for df, meta in simulate_trajectories(rng, [300, 1000, 3000], 3, 0.5, 0.9,
                                              experiment="main", arch="cnn", dataset="digits"):
            c = meta["config"]
            trajectory.write_trajectory(df, meta, train / f"P{c['P']}" / f"seed{c['seed']}.parquet")
        curves, optima = "results/aggregate/curves.parquet", "results/aggregate/optima.parquet"
        assert aggregate.main(["--measure", "spectral_complexity", "--settings", json.dumps(SETTINGS),
                               "--out-curves", curves, "--out-optima", optima, str(train)]) == 0
        assert fit.main(["--curves", curves, "--optima", optima, "--settings", json.dumps(SETTINGS),
                         "--out", "results/fit/fit.json"]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def copy(made, tmp_path):
    """A copy of the made results/ to tamper with."""
    shutil.copytree(made / "results", tmp_path / "results")
    return tmp_path


def first_trajectory(root):
    return sorted((root / "results" / "train").rglob("seed*.parquet"))[0]


def column_bytes(path, column: str) -> range:
    """The byte range of ``column``'s data in the Parquet file (its one row group)."""
    md = pq.ParquetFile(path).metadata.row_group(0)
    col = next(md.column(i) for i in range(md.num_columns) if md.column(i).path_in_schema == column)
    start = col.dictionary_page_offset or col.data_page_offset
    return range(start, start + col.total_compressed_size)


def flip_bit(path, byte: int, bit: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[byte] ^= 1 << bit
    path.write_bytes(bytes(blob))


def aggregate_cli(root, *inputs) -> subprocess.CompletedProcess:
    out = root / "results" / "aggregate_again"
    return subprocess.run([sys.executable, "-m", "workflow_scripts.aggregate", "--measure",
                           "spectral_complexity", "--settings", json.dumps(SETTINGS), "--out-curves",
                           str(out / "curves.parquet"), "--out-optima", str(out / "optima.parquet"),
                           *map(str, inputs)], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


# ---- the writer ------------------------------------------------------------------------------------

def test_every_json_and_parquet_written_carries_a_matching_seal(made):
    files = seal.sealed_files([made / "results"])
    assert len(files) == 9 + 2 + 1  # trajectories, curves + optima, fit.json
    for f in files:
        sha, name = seal.seal_path(f).read_text().split()
        assert name == f.name and sha == sha256_file(f)
    assert seal.main(["check", str(made / "results")]) == 0


def test_rewriting_a_file_renews_its_seal(tmp_path):
    path = tmp_path / "x.json"
    io.write_json({"a": 1}, path)
    io.write_json({"a": 2}, path)
    assert io.read_json(path) == {"a": 2}
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary left, of the data or of the seal


def test_a_crash_between_the_two_renames_is_refused(tmp_path, monkeypatch):
    """The data is renamed before its seal: a crash in between leaves the old seal beside the new
    data, which is refused (fail closed) rather than read."""
    path = tmp_path / "x.json"
    io.write_json({"a": 1}, path)
    real_replace = os.replace

    def crash_on_the_seal(src, dst):
        if str(dst).endswith(seal.SUFFIX):
            raise KeyboardInterrupt("killed between the renames")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_the_seal)
    with pytest.raises(KeyboardInterrupt):
        io.write_json({"a": 2}, path)
    monkeypatch.undo()
    with pytest.raises(seal.RefusedFile, match="changed after it was written"):
        io.read_json(path)
    assert io.remove_stale_temporaries(path) == 0  # the writer cleaned its temporaries itself


# ---- a trajectory with one bit flipped ---------------------------------------------------------

def test_one_bit_flip_in_test_error_is_refused_by_aggregate_before_use(copy):
    path = first_trajectory(copy)
    cols = column_bytes(path, "test_error")
    flip_bit(path, cols.start + len(cols) // 2, 3)
    out = aggregate_cli(copy, copy / "results" / "train")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith(f"error: {path}: sealed sha256 ")
    assert "changed after it was written" in lines[0] and "--forcerun" in lines[0]
    assert not (copy / "results" / "aggregate_again").exists()  # nothing was written from it


def test_sweep_of_bit_flips_over_test_error_all_refused(made, tmp_path):
    """Sampled one-bit flips over the whole test_error column chunk (data and page headers):
    every one is refused by the trajectory reader, none reaches pyarrow."""
    src = first_trajectory(made)
    blob = src.read_bytes()
    cols = column_bytes(src, "test_error")
    rng = np.random.default_rng(26)
    path = tmp_path / src.name
    shutil.copy(seal.seal_path(src), seal.seal_path(path))
    picks = rng.choice(len(cols) * 8, size=min(60, len(cols) * 8), replace=False)
    for k in picks:
        path.write_bytes(blob)
        flip_bit(path, cols.start + int(k) // 8, int(k) % 8)
        with pytest.raises(seal.RefusedFile, match="changed after it was written"):
            trajectory.read_trajectory(path)
    path.write_bytes(blob)
    assert trajectory.read_trajectory(path)[0].equals(trajectory.read_trajectory(src)[0])


def test_unsealed_or_corrupt_parquet_gives_one_line_naming_the_file(copy):
    path = first_trajectory(copy)
    seal.seal_path(path).unlink()
    with pytest.raises(seal.RefusedFile, match=f"^{path}: no seal"):
        aggregate.load([path], "spectral_complexity")
    # sealed, yet not Parquet (the writer cannot make one; a file sealed by hand can be)
    path.write_bytes(path.read_bytes()[:200])
    seal.write_seal(path)
    with pytest.raises(seal.RefusedFile) as err:
        io.read_parquet(path)
    assert str(err.value).startswith(f"{path}: cannot be read (") and "\n" not in str(err.value)


def test_a_seal_for_another_file_is_refused(copy):
    a, b = sorted((copy / "results" / "train").rglob("seed*.parquet"))[:2]
    shutil.copy(b, a)
    shutil.copy(seal.seal_path(b), seal.seal_path(a))
    with pytest.raises(seal.RefusedFile, match="names another file"):
        io.read_parquet(a)


# ---- a hand-edited fit.json ------------------------------------------------------------------

def edit_gamma1(root):
    """γ₁ moved above its own interval: valid JSON, plausible at a glance."""
    path = root / "results" / "fit" / "fit.json"
    obj = json.loads(path.read_text())
    est = obj["estimates"]["gamma1"]
    est["value"] = est["ci_high"] + 0.1
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return path


def test_edited_fit_json_refused_by_table_figure_numbers_and_plain_audit(copy, capsys):
    res = copy / "results"
    before = audit.main([str(res / "fit" / "fit.json"), "--quiet"])
    assert before == 0, capsys.readouterr()
    path = edit_gamma1(copy)
    out = copy / "out"
    with pytest.raises(seal.RefusedFile, match=f"^{path}: sealed sha256 .*changed after it was written"):
        table.write_table([path], str(out / "table1"))
    with pytest.raises(seal.RefusedFile, match=f"^{path}: sealed"):
        figures.main(["collapse", "--curves", str(res / "aggregate" / "curves.parquet"), "--optima",
                      str(res / "aggregate" / "optima.parquet"), "--fit", str(path),
                      "--out", str(out / "collapse.png")])
    with pytest.raises(seal.RefusedFile, match=f"^{path}: sealed"):
        numbers.main(["--out-tsv", str(out / "n.tsv"), "--out-tex", str(out / "n.tex"),
                      "--out-record", str(out / "n.json"), str(path)])
    assert not out.exists()
    capsys.readouterr()
    assert audit.main([str(path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "AUDIT FAILED" in err and f"{path}: sealed sha256" in err


def test_plain_audit_refuses_a_changed_input_on_the_chain(copy, capsys):
    """Auditing the aggregate walks to its trajectories: a flipped one fails without --recompute,
    with the seal's line (the aggregate recorded the same hash as the seal, so both speak)."""
    path = first_trajectory(copy)
    cols = column_bytes(path, "test_error")
    flip_bit(path, cols.start + 1, 0)
    assert audit.main([str(copy / "results" / "aggregate" / "curves.parquet"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{path.relative_to(copy)}" in err or str(path) in err
    assert "changed after it was written" in err


def test_seal_check_cli_names_each_changed_file(copy, capsys):
    edit_gamma1(copy)
    flip_bit(first_trajectory(copy), 100, 1)
    assert seal.main(["check", str(copy / "results")]) == 1
    out = capsys.readouterr()
    assert len(out.err.strip().splitlines()) == 2
    assert "10 of 12 files match their seals" in out.out


# ---- Snakemake: a normal rerun keeps the seals, the refusal's own advice repairs -------------

@pytest.mark.slow
def test_snakemake_refuses_a_flipped_trajectory_and_its_advice_repairs_it(tmp_path_factory, tmp_path):
    from .test_audit import completed_run, snakemake

    run = completed_run(tmp_path_factory)
    work = tmp_path / "run"
    shutil.copytree(run, work, symlinks=True)
    traj = sorted((work / "results" / "train").rglob("seed*.parquet"))[0]
    original = trajectory.read_trajectory(traj)[0].drop(columns="wall_time")
    fitted = sorted((work / "results" / "fit").rglob("fit.json"))[0]
    fitted_before = json.loads(fitted.read_text())
    assert seal.main(["check", str(work / "results")]) == 0

    # a rerun of the aggregation writes new, sealed outputs
    snakemake(work, "--cores", "2", "--forcerun", "aggregate")
    assert seal.main(["check", str(work / "results")]) == 0

    cols = column_bytes(traj, "test_error")
    flip_bit(traj, cols.start + len(cols) // 2, 5)
    out = snakemake(work, "--cores", "2", "--forcerun", "aggregate", check=False)
    assert out.returncode != 0
    logs = [p.read_text() for p in (work / "results" / "logs").rglob("*.log")
            if "changed after it was written" in p.read_text()]
    assert logs and all("Traceback" not in t for t in logs)
    line = next(t for t in logs[0].splitlines() if "changed after it was written" in t)
    target = line.split("--forcerun ")[1].split("`")[0]
    assert target == str(traj.parent.relative_to(work)) or target == str(traj.parent)

    snakemake(work, "--cores", "2", "--forcerun", target)
    # the same cell and seed: the same data (wall-clock time aside), read through its new seal
    assert trajectory.read_trajectory(traj)[0].drop(columns="wall_time").equals(original)
    assert seal.main(["check", str(work / "results")]) == 0
    assert json.loads(fitted.read_text())["estimates"] == fitted_before["estimates"]
