"""The pipeline on a real SLURM cluster: `snakemake --cores all --profile slurm` from the repo root.

Why: the paper grid only runs on a cluster, so the cluster path (the slurm/ profile, the
executor plugin, sbatch with fake GPUs, status through squeue) is tested for real, against the
one-node cluster that `.ci/slurm-up` starts on this machine; nothing is mocked. A miniature of
config/test.yaml runs twice, on SLURM and locally (`--cores 2`), and the results must agree
number for number: trajectories (every column except wall_time), aggregates, fits and Table 1.
The training jobs must have gone through sbatch with a GPU (their SLURM job ids are in the
trajectories' footer and in squeue's records), everything else must have run locally.

Needs the cluster: `.ci/slurm-up` (as root; `.ci/slurm-down` stops it). Without one, the test
fails and says so; deselect it with `-m "not slurm"`.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_scripts.io import read_json, read_parquet, read_parquet_metadata

from .conftest import REPO

pytestmark = pytest.mark.slurm

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
TIMEOUT_S = 600
# "Job 3 has been submitted with SLURM jobid 12 (log: .../slurm_logs/rule_train/<wildcards>/12.log)."
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/")
RULE_LINE = re.compile(r"^(local)?rule (\w+):", re.M)


def cluster_problem() -> str | None:
    """Why the local cluster cannot take jobs, or None when it can."""
    for tool in ("sinfo", "squeue", "sbatch", "scontrol"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if "UP" not in ping.stdout:
        return f"`scontrol ping`: {(ping.stdout + ping.stderr).strip() or 'no answer'}"
    states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                            timeout=30).stdout.split()
    if not {"idle", "mix", "alloc"} & set(states):
        return f"no node can take jobs (sinfo states: {states or 'none'})"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = cluster_problem()
    if problem:
        pytest.fail(f"SLURM cluster not reachable: {problem}. Start the local test cluster with "
                    "`.ci/slurm-up` (as root; stop it with `.ci/slurm-down`), or deselect this "
                    "test with `-m 'not slurm'`.", pytrace=False)


def mini_config(path: Path) -> Path:
    """config/test.yaml, smaller (2 seeds, 8 epochs): two sbatch rounds instead of three."""
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    main = config["experiments"]["main"]
    main["seeds"], main["seeds_per_job"] = [0, 1], 2
    # device auto: training jobs ask SLURM for a (fake) GPU and fall back to the CPU in the job
    main["training"].update(epochs=8, eval_points=10, device="auto")
    main["analysis"]["bootstrap"]["n"] = 20
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def clean_env() -> dict:
    # neither the caller's cluster settings nor an enclosing SLURM job may leak into the runs
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "SD_SLURM_", "SBATCH_", "SRUN_", "SNAKEMAKE_"))}


def start(args, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(args, cwd=REPO, env=clean_env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """Interrupt a run; snakemake cancels its SLURM jobs on SIGINT."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """Run the miniature on SLURM and locally, side by side; return their dirs and logs."""
    tmp = tmp_path_factory.mktemp("slurm_e2e")
    config = mini_config(tmp / "config.yaml")
    dirs = {"slurm": tmp / "slurm", "local": tmp / "local"}
    for d in dirs.values():
        d.mkdir()
    common = ["--configfile", str(config)]
    # Typed as a user would in the repo root (the profile is found there). Status checks every
    # few seconds instead of the plugin's 40 s, and successful jobs' logs kept, for the checks.
    args = {
        "slurm": [*SNAKEMAKE, "--directory", str(dirs["slurm"]), *common, "--cores", "all",
                  "--profile", "slurm", "--slurm-init-seconds-before-status-checks", "5",
                  "--slurm-keep-successful-logs"],
        "local": [*SNAKEMAKE, "--directory", str(dirs["local"]), *common, "--cores", "2"],
    }
    t0 = time.monotonic()
    procs = {name: start(a, tmp / f"{name}.log") for name, a in args.items()}
    try:
        for name, proc in procs.items():
            try:
                proc.wait(timeout=max(1.0, t0 + TIMEOUT_S - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"snakemake ({name}) still running after {TIMEOUT_S} s:\n"
                                     f"{(tmp / f'{name}.log').read_text()[-6000:]}") from None
    finally:
        for proc in procs.values():
            stop(proc)
    logs = {name: (tmp / f"{name}.log").read_text() for name in procs}
    for name, proc in procs.items():
        assert proc.returncode == 0, \
            f"snakemake ({name}) failed (exit {proc.returncode}):\n{logs[name][-8000:]}"
    print(f"SLURM and local runs finished in {time.monotonic() - t0:.0f} s")
    return dirs, logs


def trajectories(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted((root / "results" / "train").rglob("*.parquet"))}


def test_only_training_goes_to_slurm(runs):
    dirs, logs = runs
    remote = {name for local, name in RULE_LINE.findall(logs["slurm"]) if not local}
    local = {name for is_local, name in RULE_LINE.findall(logs["slurm"]) if is_local}
    # dataset conversion may go either way; the analysis takes seconds and must not queue
    assert remote - {"datasets"} == {"train"}, (
        f"rules submitted to SLURM: {sorted(remote)}; only training should be "
        "(declare the others in `localrules:`)")
    assert {"all", "aggregate", "fit", "tables"} <= local
    train_jobs = [job for job, rule in SUBMITTED.findall(logs["slurm"]) if rule == "train"]
    assert len(train_jobs) == len(set(train_jobs)) == 3  # one job per P (one seed batch each)


def test_training_jobs_ran_under_slurm_with_a_gpu(runs):
    dirs, logs = runs
    submitted = {job for job, rule in SUBMITTED.findall(logs["slurm"]) if rule == "train"}
    paths = trajectories(dirs["slurm"])
    assert len(paths) == 3 * 2
    seen = set()
    for rel, path in paths.items():
        job = read_parquet_metadata(path)["slurm_job_id"]
        assert job in submitted, f"{rel}: slurm_job_id {job!r} is not a job this run submitted"
        seen.add(job)
        assert read_parquet_metadata(dirs["local"] / rel)["slurm_job_id"] is None
    assert seen == submitted
    for job in sorted(seen):
        # MinJobAge=600 keeps finished jobs in slurmctld's memory: no accounting database needed
        record = subprocess.run(["scontrol", "show", "job", job], capture_output=True,
                                text=True).stdout
        assert "JobState=COMPLETED" in record, record
        assert re.search(r"gres[:/]gpu", record), f"job {job} got no GPU:\n{record}"
    # the plugin keeps each job's log (--slurm-keep-successful-logs) under .snakemake/slurm_logs
    logs_dir = dirs["slurm"] / ".snakemake" / "slurm_logs" / "rule_train"
    assert {p.stem for p in logs_dir.rglob("*.log")} == seen


def test_slurm_results_equal_local_results(runs):
    dirs, _ = runs
    slurm, local = trajectories(dirs["slurm"]), trajectories(dirs["local"])
    assert slurm.keys() == local.keys() and slurm
    for rel in slurm:
        (df_s, meta_s), (df_l, meta_l) = read_parquet(slurm[rel]), read_parquet(local[rel])
        pd.testing.assert_frame_equal(df_s.drop(columns="wall_time"),
                                      df_l.drop(columns="wall_time"), check_exact=True, obj=rel)
        for key in ("cell_id", "config", "config_hash", "status", "diverged_step",
                    "dataset_sha256"):
            assert meta_s[key] == meta_l[key], f"{rel}: footer {key} differs"

    agg = Path("results/aggregate/main/cnn/digits/spectral_complexity")
    for name in ("curves.parquet", "optima.parquet"):
        df_s, df_l = (read_parquet(dirs[run] / agg / name)[0] for run in ("slurm", "local"))
        pd.testing.assert_frame_equal(df_s, df_l, check_exact=True, obj=name)

    fit = Path("results/fit/main/cnn/digits/spectral_complexity/fit.json")
    fit_s, fit_l = (read_json(dirs[run] / fit) for run in ("slurm", "local"))
    fit_s.pop("provenance"), fit_l.pop("provenance")  # times and input hashes differ
    assert fit_s["status"] == "ok", fit_s.get("reason")
    assert fit_s == fit_l

    table = Path("results/tables/main/table1.csv")
    assert (dirs["slurm"] / table).read_text() == (dirs["local"] / table).read_text()
    figures = sorted(p.relative_to(dirs["slurm"]) for p in
                     (dirs["slurm"] / "results" / "figures").rglob("*.png"))
    assert figures and figures == sorted(p.relative_to(dirs["local"]) for p in
                                         (dirs["local"] / "results" / "figures").rglob("*.png"))
