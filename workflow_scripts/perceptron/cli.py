"""The command line: ``python -m workflow_scripts.perceptron {train,fixed-norm,theory,
theory-scaling,validate} --help``."""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

from .. import io, provenance
from .cells import train
from .fixed_norm import fixed_norm_curve, lambda_grid
from .settings import DTYPES, INPUTS, INTEGRATORS, LOSS_NAMES, n_examples
from .simulation import data_spec, dataset_sha256
from .theory import reference_curves, replica_fixed_norm
from .validation import theory_scaling, validate


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def _theory_meta(settings: dict) -> dict:
    return provenance.provenance(config=settings, stage="perceptron_theory")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.perceptron",
                                 description="Teacher-student perceptron: simulation, fixed-norm "
                                             "curve, theory and checks (see the module docstring).")
    sub = ap.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="free-norm GD from w = 0; one trajectory Parquet per seed")
    t.add_argument("--N", type=int, required=True)
    t.add_argument("--alpha", type=float, required=True)
    t.add_argument("--seeds", type=int, nargs="+", required=True)
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--loss", choices=LOSS_NAMES, default="logistic")
    t.add_argument("--inputs", choices=INPUTS, default="gaussian")
    t.add_argument("--lr-scale", type=float, default=1.0,
                   help="η = lr_scale/(1+α^-1/2)^2, in (0, 2); 1 = the 1/L step")
    t.add_argument("--n-log", type=int, default=100, help="log-spaced evaluation points")
    t.add_argument("--experiment", default="perceptron", help="experiment name in the cell id")
    t.add_argument("--max-batch-mb", type=float, default=1024.0,
                   help="memory of one stack of seeds' inputs")
    t.add_argument("--dtype", choices=DTYPES, default="float64",
                   help="precision of the inputs and matrix-vector products (weights: float64)")
    t.add_argument("--integrator", choices=INTEGRATORS, default="gd",
                   help="gd: fixed-step GD; gd_then_flow: k0 GD steps, then BDF on the gradient "
                        "flow read at GD's logging steps (float64)")
    t.add_argument("--flow", default=None,
                   help='JSON of gd_then_flow settings {"k0":..,"rtol":..,"atol":..,'
                        '"lambda_stop_over_alpha":..} (defaults 100, 1e-6, 1e-9, null)')
    t.add_argument("--out-dir", required=True, help="writes OUT_DIR/seed{seed}.parquet")

    f = sub.add_parser("fixed-norm", help="fixed-norm minimiser ε(λ) for several samples")
    f.add_argument("--N", type=int, required=True)
    f.add_argument("--alpha", type=float, required=True)
    f.add_argument("--seeds", type=int, nargs="+", required=True)
    f.add_argument("--lambdas", required=True, help='JSON {"min":..,"max":..,"num":..} (log grid)')
    f.add_argument("--inputs", choices=INPUTS, default="gaussian")
    f.add_argument("--max-iter", type=int, default=5000)
    f.add_argument("--out", required=True, help="Parquet, one row per (seed, λ)")

    th = sub.add_parser("theory", help="reference curves and the replica fixed-norm curves")
    th.add_argument("--alphas", type=float, nargs="+", required=True,
                    help="α values of the replica curves")
    th.add_argument("--lambdas", required=True, help='JSON {"min":..,"max":..,"num":..} (log grid)')
    th.add_argument("--reference-alphas", default='{"min": 0.5, "max": 100, "num": 40}',
                    help="JSON log grid of α for the reference curves")
    th.add_argument("--out-reference", required=True)
    th.add_argument("--out-replica", required=True)

    sc = sub.add_parser("theory-scaling", help="replica ε/ε_Hebb on per-α λ grids up to past λ_opt")
    sc.add_argument("--alphas", type=float, nargs="+", required=True)
    sc.add_argument("--lambdas", required=True,
                    help='JSON {"min":..,"per_decade":..,"max_over_alpha":..}')
    sc.add_argument("--out", required=True)

    v = sub.add_parser("validate", help="the perceptron checks -> validation.json")
    v.add_argument("trajectories", nargs="+",
                   help="trajectory Parquet files or directories holding them (logistic loss)")
    v.add_argument("--fit", default=None, help="fit.json of the perceptron")
    v.add_argument("--fixed-norm", nargs="*", default=[], help="fixed-norm Parquet files")
    v.add_argument("--replica", default=None, help="replica Parquet from `theory`")
    v.add_argument("--alpha-check", type=float, default=5.0)
    v.add_argument("--window", default=None,
                   help='JSON {"x_left":..,"x_right":..}: the fit window, for the replica exponents')
    v.add_argument("--scaling", default=None, help="Parquet from `theory-scaling`")
    v.add_argument("--scaling-settings", default=None,
                   help="JSON: the config's perceptron.scaling (windows, α ranges, tolerances)")
    v.add_argument("--scaling-runs", nargs="*", default=[],
                   help="more trajectories (the large-α runs) for the GD paper-variable analysis")
    v.add_argument("--out", required=True)

    args = ap.parse_args(argv)
    if args.cmd == "train":
        t0 = time.perf_counter()
        paths = train(args.N, args.alpha, args.seeds, args.out_dir, steps=args.steps,
                      loss=args.loss, inputs=args.inputs, lr_scale=args.lr_scale,
                      n_log=args.n_log, experiment=args.experiment, max_batch_mb=args.max_batch_mb,
                      dtype=args.dtype, integrator=args.integrator,
                      flow=json.loads(args.flow) if args.flow else None)
        print(f"wrote {len(paths)} trajectories to {args.out_dir} in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    elif args.cmd == "fixed-norm":
        grid = lambda_grid(json.loads(args.lambdas))
        t0 = time.perf_counter()
        df = pd.concat([fixed_norm_curve(args.N, args.alpha, s, grid, inputs=args.inputs,
                                         max_iter=args.max_iter) for s in args.seeds],
                       ignore_index=True)
        settings = {"N": args.N, "alpha": args.alpha, "seeds": args.seeds, "inputs": args.inputs,
                    "lambdas": json.loads(args.lambdas), "max_iter": args.max_iter}
        specs = [data_spec(args.N, n_examples(args.N, args.alpha), s, args.inputs) for s in args.seeds]
        io.write_parquet(df, args.out, provenance.provenance(
            config=settings, stage="perceptron_fixed_norm",
            dataset_sha256=[dataset_sha256(s) for s in specs]))
        print(f"fixed-norm curve: {len(df)} points, {int((~df['converged']).sum())} not converged, "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    elif args.cmd == "theory":
        grid = lambda_grid(json.loads(args.lambdas))
        ref_alphas = lambda_grid(json.loads(args.reference_alphas))
        ref_alphas = np.unique(np.concatenate([ref_alphas, args.alphas, [5.0]]))
        settings = {"alphas": args.alphas, "lambdas": json.loads(args.lambdas),
                    "reference_alphas": json.loads(args.reference_alphas)}
        io.write_parquet(reference_curves(ref_alphas), args.out_reference, _theory_meta(settings))
        rep = pd.concat([replica_fixed_norm(a, grid) for a in args.alphas], ignore_index=True)
        io.write_parquet(rep, args.out_replica, _theory_meta(settings))
        bad = int((~rep["converged"]).sum())
        print(f"replica: {len(rep)} points, {bad} not converged", file=sys.stderr)
    elif args.cmd == "theory-scaling":
        spec = json.loads(args.lambdas)
        t0 = time.perf_counter()
        df = theory_scaling(args.alphas, spec)
        io.write_parquet(df, args.out, _theory_meta({"alphas": args.alphas, "lambdas": spec}))
        print(f"scaling theory: {len(df)} points, {int((~df['converged']).sum())} not converged, "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    elif args.cmd == "validate":
        report = validate(args.trajectories, fit_path=args.fit, fixed_norm=args.fixed_norm,
                          replica=args.replica, alpha_check=args.alpha_check,
                          window=json.loads(args.window) if args.window else None,
                          scaling=args.scaling, scaling_runs=args.scaling_runs,
                          scaling_settings=(json.loads(args.scaling_settings)
                                            if args.scaling_settings else None))
        io.write_json(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
