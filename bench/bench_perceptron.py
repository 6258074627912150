"""Benchmark of the perceptron's free-norm GD: milliseconds per seed and step, and the projected
cost of a perceptron config block (paper grid by default).

    python bench/bench_perceptron.py [--N 1000] [--alphas 1 5 10] [--seeds 4] [--steps 200]
                                     [--dtype float64 float32] [--config config/config.yaml]

The cost of a step is two passes over the (P, N) inputs of every seed (memory bound), so it scales
like α N² per seed; the projection multiplies the measured cost per α N² by Σ_α α N² × seeds ×
steps of the config block, for one core (jobs of different α and seed batches run in parallel).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import yaml

from workflow_scripts import perceptron as pc


def measure(N, alpha, seeds, steps, dtype) -> float:
    """Seconds per seed and step (data generation and logging excluded)."""
    res = pc.simulate(N, alpha, list(range(seeds)), steps, n_log=2, dtype=dtype)
    wall = max(df["wall_time"].iloc[-1] for df, _ in res.values())
    return wall / (seeds * steps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=1000)
    ap.add_argument("--alphas", type=float, nargs="+", default=[1, 5, 10])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    ap.add_argument("--config", default="config/config.yaml")
    args = ap.parse_args(argv)
    print(f"{'N':>6} {'alpha':>6} {'dtype':>8} {'ms/(seed*step)':>15} {'ns/(seed*step*P*N)':>20}")
    per_unit = {}
    for dtype in args.dtype:
        rates = []
        for a in args.alphas:
            t = measure(args.N, a, args.seeds, args.steps, dtype)
            P = pc.n_examples(args.N, a)
            rates.append(t / (P * args.N))
            print(f"{args.N:>6} {a:>6g} {dtype:>8} {t * 1e3:>15.3f} {t / (P * args.N) * 1e9:>20.3f}")
        per_unit[dtype] = float(np.median(rates))
    try:
        block = (yaml.safe_load(open(args.config)) or {}).get("perceptron")
    except OSError:
        block = None
    if block:
        from workflow_scripts.config import load_config

        cfg = load_config(args.config)["perceptron"]
        work = sum(pc.n_examples(cfg["N"], a) * cfg["N"] for a in cfg["alphas"]) * \
            len(cfg["seeds"]) * cfg["steps"]
        biggest = max(cfg["alphas"])
        job = pc.n_examples(cfg["N"], biggest) * cfg["N"] * cfg["seeds_per_job"] * cfg["steps"]
        for dtype, rate in per_unit.items():
            print(f"{args.config} perceptron block ({dtype}): {work * rate / 3600:.2f} core-hours "
                  f"in all; the longest job (alpha={biggest:g}, {cfg['seeds_per_job']} seeds) "
                  f"{job * rate / 60:.1f} min")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"benchmark wall time {time.perf_counter() - t0:.1f} s")
