"""Cost of free-norm GD at large α (the perceptron.large_alpha runs of the paper block): seconds
per step of one seed at (N, α), float64 and float32, and the core-hours of a config block's
large-α runs and main runs at that rate per P·N entry (the quick block: --N 100 --alpha 10
--config config/quick.yaml; its GD is memory-light and runs at 1.2-1.3 ns an entry).

    python bench/bench_perceptron_gd.py [--N 200] [--alpha 1000] [--steps 300]
                                        [--config config/config.yaml]

One step is two passes over the (P, N) inputs (memory bound), so the cost per seed and step is
(rate) × P × N; the projection is Σ over runs of rate × P × N × steps × seeds, on one core.
"""
from __future__ import annotations

import argparse

import yaml

from workflow_scripts import perceptron as pc


def per_step(N, alpha, steps, dtype) -> float:
    df, _ = pc.simulate(N, alpha, [0], steps, n_log=2, dtype=dtype)[0]
    return float(df["wall_time"].iloc[-1]) / steps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=200)
    ap.add_argument("--alpha", type=float, default=1000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--config", default="config/config.yaml")
    args = ap.parse_args(argv)
    PN = pc.n_examples(args.N, args.alpha) * args.N
    rate = {}
    for dtype in ("float64", "float32"):
        t = per_step(args.N, args.alpha, args.steps, dtype)
        rate[dtype] = t / PN
        print(f"N={args.N} alpha={args.alpha:g} {dtype}: {t * 1e3:.2f} ms/step, "
              f"{rate[dtype] * 1e9:.3f} ns per step and P*N entry")
    block = (yaml.safe_load(open(args.config)) or {}).get("perceptron") or {}
    if not block:
        return
    dt = block.get("dtype", "float64")
    main_units = (sum(pc.n_examples(block["N"], a) * block["N"] for a in block["alphas"])
                  * block["steps"] * len(block["seeds"]))
    print(f"{args.config} main runs ({dt}): {main_units * rate[dt] / 3600:.2f} core-hours "
          f"({main_units * rate[dt]:.0f} s) at this rate")
    la = block.get("large_alpha") or {}
    if la.get("enabled"):
        units = sum(pc.n_examples(la["N"], a) * la["N"] for a in la["alphas"]) * la["steps"] * len(la["seeds"])
        print(f"{args.config} large_alpha ({dt}): {units * rate[dt] / 3600:.1f} core-hours")

if __name__ == "__main__":
    main()
