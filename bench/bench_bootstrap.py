"""Benchmark: bootstrap of one (arch, dataset) with 12 P values × 30 seeds, 1,000 resamples.

Target (issue 5): under 5 s on one CPU core. Run:  python bench/bench_bootstrap.py [--repeats 5]
Prints the wall time of ``fit.estimate`` (point estimate + 1,000 resamples) and, for scale, of the
whole fit CLI path on files (aggregate already written).
"""
from __future__ import annotations

import os

# one core: pin the BLAS/OpenMP pools before numpy is imported
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from workflow_scripts import aggregate, fit  # noqa: E402
from workflow_scripts.synthetic_curves import simulate_fit_data, simulate_seeds  # noqa: E402

SETTINGS = {"measures": ["spectral_complexity"], "grid_points": 60, "min_seeds": 2,
            "window": {"x_left": 0.2, "x_right": 0.8}, "P_min": None, "P_max": None,
            "bootstrap": {"n": 1000, "seed": 0}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=1000, help="bootstrap resamples")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = np.random.default_rng(0)
    Ps = [int(p) for p in np.geomspace(100, 48000, 12)]
    data = simulate_fit_data(rng, Ps, 30, 0.5, 0.9, noise=0.03)
    s = {**SETTINGS, "bootstrap": {"n": args.n, "seed": 0}}
    fit.estimate(data, s)  # warm-up
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        res = fit.estimate(data, s)
        times.append(time.perf_counter() - t)
    e = res["estimates"]
    print(f"bootstrap: 12 P x 30 seeds x {data.curves[0].shape[1]} grid points, {args.n} resamples, "
          f"1 core: median {np.median(times):.3f} s, max {max(times):.3f} s over {args.repeats} runs "
          f"(target < 5 s)")
    print("  gamma1 = {:.3f} [{:.3f}, {:.3f}]  gamma2 = {:.3f} [{:.3f}, {:.3f}]".format(
        e["gamma1"]["value"], e["gamma1"]["ci_low"], e["gamma1"]["ci_high"],
        e["gamma2"]["value"], e["gamma2"]["ci_low"], e["gamma2"]["ci_high"]))

    # the same through the files: aggregate tables written, then fit.run (read + fit + write)
    seeds = [aggregate.reduce_arrays(lam, err, steps, P, sd)
             for P, sd, steps, lam, err in simulate_seeds(np.random.default_rng(0), Ps, 30, 0.5, 0.9)]
    curves, optima, _ = aggregate.aggregate(seeds, s)
    with tempfile.TemporaryDirectory() as d:
        from workflow_scripts import io
        c, o = Path(d) / "curves.parquet", Path(d) / "optima.parquet"
        io.write_parquet(curves, c, {"schema": aggregate.SCHEMA})
        io.write_parquet(optima, o, {"schema": aggregate.SCHEMA})
        t = time.perf_counter()
        fit.run(c, o, s, Path(d) / "fit.json")
        dt = time.perf_counter() - t
        assert json.loads((Path(d) / "fit.json").read_text())["status"] == "ok"
    print(f"fit.run on files (read {len(curves)} curve rows, fit, bootstrap, write fit.json): {dt:.3f} s")


if __name__ == "__main__":
    main()
