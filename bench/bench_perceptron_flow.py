"""Cost of the hybrid integrator (perceptron.integrator: gd_then_flow) against fixed-step GD for
one seed at (N, α): CPU seconds of the hybrid to `--steps` equivalent GD steps (its counts of
gradients and Hessians), CPU seconds per fixed-step GD step (measured on `--gd-steps` steps),
and GD's cost for the same path extrapolated (two passes over the inputs per step, whatever λ).

    python bench/bench_perceptron_flow.py [--N 1000] [--alpha 50] [--steps 1000000]
                                          [--gd-steps 200]

CPU seconds (time.process_time) rather than wall time: the machine is shared.
"""
from __future__ import annotations

import argparse
import time

from workflow_scripts import perceptron as pc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=1000)
    ap.add_argument("--alpha", type=float, default=50)
    ap.add_argument("--steps", type=int, default=1000000)
    ap.add_argument("--gd-steps", type=int, default=200)
    args = ap.parse_args(argv)
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
