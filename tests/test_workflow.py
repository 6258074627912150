"""End to end: snakemake on config/test.yaml, from the dataset to the figures, and its outputs' content."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from workflow_scripts.io import read_json, read_parquet_metadata
from workflow_scripts.trajectory import BASE_COLUMNS, read_trajectory

from .conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args, config="config/test.yaml", check=True):
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(REPO / config), *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-8000:]}")
    return out


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir, "--cores", "2")
    return workdir


@pytest.mark.slow
def test_all_targets_exist(workflow_run):
    planned = snakemake(workflow_run, "-n", "--cores", "2")
    assert "Nothing to be done" in planned.stdout + planned.stderr
    figures = sorted((workflow_run / "results" / "figures").rglob("*.png"))
    # main and norms: 3 panel figures + 2 grids + the sensitivity heat maps each; the norms
    # ablation: curves + collapse
    assert len(figures) == 2 * 6 + 2
    assert len([f for f in figures if f.name == "sensitivity.png"]) == 2
    for fig in figures:
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 10_000
    for ext in ("csv", "md", "tex"):
        assert (workflow_run / "results" / "tables" / "main" / f"table1.{ext}").stat().st_size > 0
        assert (workflow_run / "results" / "tables" / "ablations" / f"norms.{ext}").stat().st_size > 0


@pytest.mark.slow
def test_trajectories_content(workflow_run):
    paths = sorted((workflow_run / "results" / "train").rglob("seed*.parquet"))
    assert len(paths) == 3 * 3  # P values x seeds of config/test.yaml
    ids = set()
    for path in paths:
        df, meta = read_trajectory(path)
        ids.add(meta["cell_id"])
        assert list(df.columns[:len(BASE_COLUMNS)]) == list(BASE_COLUMNS)
        schema = pq.read_schema(path)
        assert str(schema.field("step").type) == "int64"
        assert all(str(schema.field(c).type) == "double" for c in BASE_COLUMNS if c != "step")
        steps = df["step"].to_numpy()
        assert steps[0] == 0 and np.all(np.diff(steps) > 0)
        inner = steps[steps > 0]
        # log-spaced: the gaps grow along the trajectory
        assert np.diff(np.log(inner)).max() < 1.0 and np.diff(inner)[-1] > np.diff(inner)[0]
        # λ grows early in training (Adam's first few steps may wobble it by a fraction of 1%)
        early = df["lambda"].iloc[: len(df) // 2 + 1]
        assert early.iloc[-1] > early.iloc[0] and df["lambda"].iloc[-1] > 1.1 * df["lambda"].iloc[0]
        assert (early.diff() < -0.01 * early.iloc[0]).sum() == 0
        for col in ("train_error", "val_error", "test_error"):
            assert df[col].between(0, 1).all()
        assert meta["config"]["training"]["epochs"] == 12
    assert ids == {f"main/cnn/digits/P{P}/seed{s}" for P in (60, 120, 240) for s in (0, 1, 2)}


@pytest.mark.slow
def test_fit_and_aggregate_are_real_and_traceable(workflow_run):
    base = workflow_run / "results"
    fit = read_json(base / "fit" / "main" / "cnn" / "digits" / "spectral_complexity" / "fit.json")
    agg_meta = read_parquet_metadata(
        base / "aggregate" / "main" / "cnn" / "digits" / "spectral_complexity" / "curves.parquet")
    inputs = {Path(i["path"]).name for i in agg_meta["inputs"]}
    assert {f"seed{s}.parquet" for s in (0, 1, 2)} <= inputs
    assert json.dumps(fit)  # serialisable, and it states what it used
    table = (base / "tables" / "main" / "table1.md").read_text()
    assert "cnn" in table.lower() and "digits" in table.lower()


@pytest.mark.slow
def test_bad_config_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "config" / "test.yaml").read_text().replace("archs: [cnn]",
                                                                       "archs: [mlp]", 1))
    out = subprocess.run([*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                          "--configfile", str(bad), "--cores", "1"], capture_output=True, text=True)
    assert out.returncode != 0
    assert "experiments.main.archs[0]" in out.stderr and "'cnn', 'resnet', 'vit'" in out.stderr
    assert not (tmp_path / "results").exists()


def test_paper_grid_dry_run_lists_every_cell(tmp_path):
    out = snakemake(tmp_path, "-n", "--quiet", "rules", config="config/config.yaml")
    text = out.stdout + out.stderr
    counts = dict(line.split()[:2] for line in text.splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    main = (10 * 3 + 8 * 6) * 5  # (arch, dataset, P) x seed batches of 5
    ablations = (3 * 3 * 8 + 2 * 8 + 2 * 8) * 3  # weight decay, sgd, long: 15 seeds in 3 batches
    assert int(counts["train"]) == main + ablations
    assert int(counts["download"]) == 3
    # fits: main 9, three weight decays 9, sgd 2, long 2, norms 3x4 (no training), authors 9,
    # reproduce 9 (no training); one sensitivity grid per fit
    assert int(counts["fit"]) == 9 + 9 + 2 + 2 + 12 + 9 + 9
    assert int(counts["sensitivity"]) == int(counts["fit"])


@pytest.mark.slow
def test_same_cell_same_bytes_under_cores_1_and_2(tmp_path):
    """training.threads, not --cores, sets the threads training uses: one cell with threads 2 gives
    the same trajectory data (and hash) under --cores 1 as under --cores 2."""
    import yaml

    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    main = config["experiments"]["main"]
    main.update(P={"digits": [60]}, seeds=[0], seeds_per_job=1)
    main["training"].update(epochs=3, threads=2)
    main["analysis"]["min_seeds"] = 1
    del config["experiments"]["norms"], config["ablations"]
    path = tmp_path / "cores.yaml"
    path.write_text(yaml.safe_dump(config))
    target = "results/train/main/cnn/digits/P60/seeds0-0"
    runs = {}
    for cores in ("1", "2"):
        workdir = tmp_path / f"cores{cores}"
        snakemake(workdir, "--cores", cores, target, config=str(path))
        log = (workdir / "results/logs/train/main/cnn/digits/P60/seeds0-0.log").read_text()
        assert "training with 2 CPU threads" in log
        runs[cores] = read_trajectory(workdir / target / "seed0.parquet")
    (df1, meta1), (df2, meta2) = runs["1"], runs["2"]
    assert meta1["config_hash"] == meta2["config_hash"]
    assert meta1["config"]["training"]["threads"] == 2
    # wall_time is the one column that may differ (it is a clock)
    assert df1.drop(columns="wall_time").equals(df2.drop(columns="wall_time"))
    assert all(df1[c].to_numpy().tobytes() == df2[c].to_numpy().tobytes()
               for c in df1.columns if c != "wall_time")


def small_config(tmp_path: Path, edit) -> Path:
    """config/test.yaml edited by ``edit(config)``, written to tmp_path."""
    import yaml

    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def one_cnn_cell_pair(c):
    """A config edit: main trains two seeds of one P for two epochs, one job; no ablations."""
    main = c["experiments"]["main"]
    main.update(P={"digits": [60]}, seeds=[0, 1], seeds_per_job=2)
    main["training"].update(epochs=2, eval_points=6)
    del c["experiments"]["norms"], c["ablations"]


def test_a_config_without_main_plans_and_its_table1_target_names_the_key(tmp_path):
    def rename(c):
        c["experiments"]["paper"] = c["experiments"].pop("main")
        c["experiments"]["norms"]["reuse"] = "paper"
        c["ablations"]["norms"]["experiments"] = ["paper", "norms"]

    path = small_config(tmp_path, rename)
    planned = snakemake(tmp_path / "run", "-n", "--quiet", "rules", config=str(path))
    assert "KeyError" not in planned.stderr and "train" in planned.stdout + planned.stderr
    out = snakemake(tmp_path / "run", "-n", "table1", config=str(path), check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "KeyError" not in text
    assert "need config key targets.table1_experiment" in text and "has no experiment 'main'" in text


def test_table1_published_without_a_published_block_names_the_key(tmp_path):
    out = snakemake(tmp_path, "-n", "table1_published", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "No rule to produce" not in text
    assert "table1_published needs config key published.dir" in text


@pytest.mark.slow
def test_corrupt_dataset_recovery_recipe_of_the_readme(tmp_path):
    """README, When things go wrong: a canonical dataset altered after its trajectories were made.
    The training job that reads it stops naming the recovery; rerunning the same command with
    --forcerun datasets remakes the file and the missing trajectories (deleting the file instead
    left them missing: Snakemake saw the aggregate up to date, "Nothing to be done")."""
    path = small_config(tmp_path, one_cnn_cell_pair)
    work = tmp_path / "run"
    target = "results/aggregate/main/cnn/digits/spectral_complexity/curves.parquet"
    snakemake(work, "--cores", "2", target, config=str(path))
    npz, trajectory = work / "results/datasets/digits.npz", \
        work / "results/train/main/cnn/digits/P60/seeds0-1/seed0.parquet"
    good, (before, _) = npz.read_bytes(), read_trajectory(trajectory)
    blob = bytearray(good)
    blob[len(blob) // 2] ^= 0xFF
    npz.write_bytes(bytes(blob))
    failed = snakemake(work, "--cores", "2", target, config=str(path), check=False)
    text = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "does not match the recorded" in text
    assert "--forcerun datasets" in text and "prepare_dataset" not in text
    assert not trajectory.exists()  # Snakemake removed the failed job's output
    snakemake(work, "--cores", "2", target, "--forcerun", "datasets", config=str(path))
    assert npz.read_bytes() == good
    after, meta = read_trajectory(trajectory)
    assert before.drop(columns="wall_time").equals(after.drop(columns="wall_time"))
    assert meta["dataset_sha256"] == read_json(npz.with_suffix(".json"))["sha256"]
    planned = snakemake(work, "-n", "--cores", "2", target, config=str(path))
    assert "Nothing to be done" in planned.stdout + planned.stderr


@pytest.mark.slow
def test_after_snakemake_is_killed_unlock_then_rerun(tmp_path):
    """README, When things go wrong: Snakemake killed mid-run leaves its lock; the next run stops
    saying so, `--unlock` clears it, and the rerun finishes."""
    import os
    import signal
    import time

    path = small_config(tmp_path, one_cnn_cell_pair)
    work = tmp_path / "run"
    target = "results/train/main/cnn/digits/P60/seeds0-1"
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "1",
           target, "--configfile", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own group: the kill takes its jobs too
    locks = work / ".snakemake" / "locks"
    deadline = time.time() + 120
    while not (locks.exists() and any(locks.iterdir())) and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any(locks.iterdir())
    locked = subprocess.run(cmd, capture_output=True, text=True)
    assert locked.returncode != 0 and "cannot be locked" in locked.stdout + locked.stderr
    snakemake(work, "--unlock", config=str(path))
    snakemake(work, "--cores", "1", target, config=str(path))
    assert (work / target / "seed1.parquet").exists()


def test_yaml_syntax_error_in_a_configfile_names_file_line_and_column(tmp_path):
    """Snakemake parses --configfile itself, before the Snakefile: the hook bin/setup installs
    (a .pth, here in a temporary site directory) makes its error name file, line and column."""
    from workflow_scripts.snakemake_hook import write_pth

    broken = tmp_path / "broken.yaml"
    lines = (REPO / "config" / "test.yaml").read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if "P: {digits: [60, 120, 240]}" in line)
    lines[i] = lines[i].replace("240]}", "240}")
    broken.write_text("\n".join(lines) + "\n")
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    write_pth(site_dir)

    def run(config):
        argv = ["snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path / "run"),
                "-n", "--configfile", str(config)]
        code = (f"import site, sys; site.addsitedir({str(site_dir)!r}); sys.argv = {argv!r}; "
                "from snakemake.cli import main; main()")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    out = run(broken)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and f"{broken}, line {i + 1}, column" in text
    assert "YAML syntax error" in text and "<unicode string>" not in text
    ok = run(REPO / "config" / "test.yaml")  # a valid file goes through unchanged
    assert ok.returncode == 0, ok.stdout + ok.stderr
