"""Benchmark 3 of issue 8: planning the whole paper grid, and aggregating 4,000 trajectories.

1. ``snakemake -n`` on config/config.yaml (the paper grid with every ablation): target < 30 s.
2. ``python -m workflow_scripts.aggregate`` on 4,000 trajectory files (default: 10 P values x 400
   seeds, 40 rows each, every measure column), synthetic but valid (written with
   ``trajectory.write_trajectory``, λ growing along training, a U-shaped test error in log λ):
   target < 60 s. File generation is not timed.
Both are timed as whole commands (process start and imports included), ``--repeats`` times each,
interleaved; the machine is shared, so the minimum and the median are printed.

    .venv/bin/python bench/bench_workflow.py
    .venv/bin/python bench/bench_workflow.py --n-files 4000 --repeats 3
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workflow_scripts.measures import MEASURES  # noqa: E402
from workflow_scripts.provenance import provenance  # noqa: E402
from workflow_scripts.trajectory import write_trajectory  # noqa: E402

SETTINGS = '{"grid_points":60,"min_seeds":2}'


def write_trajectories(root: Path, n_files: int, n_P: int = 10, rows: int = 40) -> list[Path]:
    rng = np.random.default_rng(0)
    Ps = [int(100 * 2 ** (i / 1.5)) for i in range(n_P)]
    base = provenance(config={"bench": True})
    paths = []
    for i in range(n_files):
        P, seed = Ps[i % n_P], i // n_P
        steps = np.unique(np.rint(np.logspace(0, 4, rows - 1)).astype(np.int64))
        steps = np.concatenate([[0], steps])
        log_lam = np.log(10.0) + np.log1p(steps) * 0.3 + rng.normal(0, 0.01, len(steps)).cumsum()
        x = log_lam - (np.log(10.0) + 1.5 + 0.1 * np.log(P))  # optimum moves right with P
        err = np.clip(0.05 + 0.1 * x ** 2 + rng.normal(0, 0.005, len(x)), 0, 1)
        df = pd.DataFrame({"step": steps, "epoch": steps / 8.0, "wall_time": steps * 0.01,
                           "train_error": err * 0.5, "train_loss": err, "val_error": err,
                           "val_loss": err, "test_error": err, "test_loss": err,
                           "lambda": np.exp(log_lam),
                           **{m: np.exp(log_lam) for m in MEASURES}})
        meta = copy.deepcopy(base)
        cfg = {"experiment": "main", "arch": "cnn", "dataset": "mnist", "P": P, "seed": seed}
        meta.update(cell_id=f"main/cnn/mnist/P{P}/seed{seed}", status="completed",
                    diverged_step=None, config=cfg, config_hash=f"{i:016x}",
                    dataset_sha256="0" * 64)
        path = root / f"P{P}" / f"seed{seed}.parquet"
        write_trajectory(df, meta, path)
        paths.append(path)
    return paths


def timed(cmd, cwd=REPO) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} failed:\n{res.stderr.decode()[-3000:]}")
    return wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-files", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--snakemake", default=str(Path(sys.executable).with_name("snakemake")))
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_workflow_"))
    t0 = time.perf_counter()
    write_trajectories(tmp / "traj", args.n_files)
    print(f"# wrote {args.n_files} trajectories in {time.perf_counter() - t0:.0f} s (not timed)",
          flush=True)
    dry, agg = [], []
    for rep in range(args.repeats):
        dry.append(timed([args.snakemake, "-n", "--cores", "1", "--nolock", "--quiet", "all"]))
        agg.append(timed([sys.executable, "-m", "workflow_scripts.aggregate", "--measure",
                          "spectral_complexity", "--settings", SETTINGS, "--out-curves",
                          str(tmp / "curves.parquet"), "--out-optima", str(tmp / "optima.parquet"),
                          str(tmp / "traj")]))
        print(f"rep {rep}: snakemake -n {dry[-1]:.1f} s, aggregate {agg[-1]:.1f} s", flush=True)
    print("\n| command | min | median | target |")
    print("|---|---|---|---|")
    print(f"| `snakemake -n` (config/config.yaml, all ablations) | {min(dry):.1f} s | "
          f"{statistics.median(dry):.1f} s | < 30 s |")
    print(f"| aggregate {args.n_files} trajectories | {min(agg):.1f} s | "
          f"{statistics.median(agg):.1f} s | < 60 s |")
    print(json.dumps({"snakemake_n_s": dry, "aggregate_s": agg}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
