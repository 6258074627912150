"""Cost of the hybrid integrator (perceptron.integrator: gd_then_flow) against fixed-step GD for
one seed at (N, α): CPU seconds of the hybrid to `--steps` equivalent GD steps (its counts of
gradients and Hessians), CPU seconds per fixed-step GD step (measured on `--gd-steps` steps),
and GD's cost for the same path extrapolated (two passes over the inputs per step, whatever λ).

    python bench/bench_perceptron_flow.py [--N 1000] [--alpha 50] [--steps 1000000]
                                          [--gd-steps 200]
    python bench/bench_perceptron_flow.py --agreement

--agreement prints the numbers behind tests/test_perceptron_flow.py (N = 100, α = 5 and 20,
seeds 0 and 1): the largest relative gap in ε at GD's logged λ of the hybrid and of the pure
flow (K₀ = 0, at λ < 1), the hybrid's counts, and the CPU seconds of both integrators.

CPU seconds (time.process_time) rather than wall time: the machine is shared.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workflow_scripts import perceptron as pc  # noqa: E402


def agreement():
    from tests.test_perceptron_flow import N, SEEDS, STEPS, relative_gap_at_gd_lambdas

    for alpha, steps in STEPS.items():
        t = time.process_time()
        gd = pc.simulate(N, alpha, SEEDS, steps, n_log=60)
        t_gd, t = time.process_time() - t, time.process_time()
        hybrid = pc.simulate_flow(N, alpha, SEEDS, steps, n_log=60)
        t_hybrid = time.process_time() - t
        pure = pc.simulate_flow(N, alpha, SEEDS, steps, n_log=60, flow={"k0": 0})
        for s in SEEDS:
            g = gd[s][0]
            it = hybrid[s][1]["integrator"]
            small = g["lambda"].to_numpy() < 1
            print(f"alpha={alpha:g} seed={s} steps={steps} lambda_end={g['lambda'].iloc[-1]:.2f}: "
                  f"hybrid max gap {np.nanmax(relative_gap_at_gd_lambdas(g, hybrid[s][0])):.1e} "
                  f"({it['gradients']} gradients, {it['hessians']} Hessians); pure flow at "
                  f"lambda < 1 {np.nanmax(relative_gap_at_gd_lambdas(g, pure[s][0])[small]):.3f}")
        print(f"alpha={alpha:g}, both seeds: GD {t_gd:.2f} CPU-s, hybrid {t_hybrid:.2f} CPU-s")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=1000)
    ap.add_argument("--alpha", type=float, default=50)
    ap.add_argument("--steps", type=int, default=1000000)
    ap.add_argument("--gd-steps", type=int, default=200)
    ap.add_argument("--agreement", action="store_true", help="the agreement test's numbers")
    args = ap.parse_args(argv)
    if args.agreement:
        return agreement()
    t = time.process_time()
    df, info = pc.simulate_flow(args.N, args.alpha, [0], args.steps, n_log=120)[0]
    hybrid = time.process_time() - t
    it = info["integrator"]
    t = time.process_time()
    pc.simulate(args.N, args.alpha, [0], args.gd_steps, n_log=2)
    gd_step = (time.process_time() - t) / args.gd_steps
    print(f"N={args.N} alpha={args.alpha:g}, {args.steps} equivalent GD steps to lambda = "
          f"{df['lambda'].iloc[-1]:.2f}: hybrid {hybrid:.1f} CPU-s ({it['gradients']} gradients, "
          f"{it['hessians']} Hessians, {it['flow_steps']} BDF steps); fixed-step GD "
          f"{gd_step * 1e3:.2f} CPU-ms a step, {gd_step * args.steps / 3600:.2f} CPU-hours for the "
          f"same path ({gd_step * args.steps / hybrid:.0f}x)")


if __name__ == "__main__":
    main()
