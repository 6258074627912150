"""A perceptron cell's trajectory file: its config (what config_hash covers), the integrator that
makes its rows (GD in ``simulation``, GD then the gradient flow in ``flow``) and its footer.

Above both integrators, so that neither imports the other's job: ``flow`` builds on ``simulation``'s
GD steps and rows, and this module chooses between them."""
from __future__ import annotations

from pathlib import Path

from .. import provenance
from ..config import cell_id
from ..trajectory import write_trajectory
from .flow import flow_settings, simulate_flow
from .losses import learning_rate
from .settings import INTEGRATORS, n_examples
from .simulation import data_spec, dataset_sha256, simulate


def cell_config(N: int, alpha: float, seed: int, *, steps: int, loss: str, inputs: str,
                lr_scale: float, n_log: int, experiment: str = "perceptron",
                dtype: str = "float64", integrator: str = "gd", flow: dict | None = None) -> dict:
    """The cell's config (hashed into config_hash); the flow settings only with gd_then_flow."""
    P = n_examples(N, alpha)
    cfg = {"experiment": experiment, "arch": "perceptron", "dataset": f"teacher_N{N}",
           "P": P, "seed": int(seed), "N": int(N), "alpha": float(alpha), "inputs": inputs,
           "loss": loss, "steps": int(steps), "lr": learning_rate(alpha, lr_scale),
           "lr_scale": float(lr_scale), "n_log": int(n_log), "optimizer": "full-batch GD",
           "init": "w = 0", "teacher": "gaussian", "dtype": dtype, "integrator": integrator}
    if integrator == "gd_then_flow":
        cfg["flow"] = flow_settings(flow)
    return cfg


_NOTES = {
    "gd": "step 0 (w = 0, overlap undefined) is not logged; step 1 is the Hebb vector; wall_time is "
          "shared by the stacked seeds; test_loss is the exact Gaussian-input population loss",
    "gd_then_flow": "step 0 (w = 0, overlap undefined) is not logged; steps up to flow.k0 are exact "
                    "GD (step 1 the Hebb vector if k0 >= 1), later rows the BDF gradient flow at "
                    "t = step * lr (the equivalent GD step); wall_time counts from the seed's "
                    "start, data generation included; test_loss is the exact Gaussian-input "
                    "population loss"}


def train(N: int, alpha: float, seeds, out_dir, *, steps: int, loss: str = "logistic",
          inputs: str = "gaussian", lr_scale: float = 1.0, n_log: int = 100,
          experiment: str = "perceptron", max_batch_mb: float = 1024.0,
          dtype: str = "float64", integrator: str = "gd", flow: dict | None = None) -> list[Path]:
    """Simulate and write out_dir/seed{seed}.parquet per seed (trajectory contract).

    ``integrator`` "gd": fixed-step GD (``simulate``); "gd_then_flow": flow.k0 GD steps, then BDF
    on the gradient flow (``flow.simulate_flow``; float64 only), its settings and counts of
    gradients and Hessians in the footer's ``integrator``."""
    if integrator == "gd":
        results = simulate(N, alpha, seeds, steps, loss=loss, inputs=inputs, lr_scale=lr_scale,
                           n_log=n_log, max_batch_mb=max_batch_mb, dtype=dtype)
    elif integrator == "gd_then_flow":
        if dtype != "float64":
            raise ValueError(f"integrator gd_then_flow runs in float64, got dtype={dtype!r}")
        results = simulate_flow(N, alpha, seeds, steps, flow=flow, loss=loss, inputs=inputs,
                                lr_scale=lr_scale, n_log=n_log)
    else:
        raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
    paths = []
    for seed, (df, info) in results.items():
        cfg = cell_config(N, alpha, seed, steps=steps, loss=loss, inputs=inputs,
                          lr_scale=lr_scale, n_log=n_log, experiment=experiment, dtype=dtype,
                          integrator=integrator, flow=flow)
        extra = {"integrator": info["integrator"]} if "integrator" in info else {}
        spec = data_spec(N, cfg["P"], seed, inputs)
        meta = provenance.provenance(
            config=cfg, cell_id=cell_id(cfg), status=info["status"],
            diverged_step=info["diverged_step"], dataset_sha256=dataset_sha256(spec),
            dataset_spec=spec, stacked_seeds=info["stacked_seeds"], **extra,
            notes=_NOTES[integrator])
        path = Path(out_dir) / f"seed{seed}.parquet"
        write_trajectory(df, meta, path)
        paths.append(path)
    return paths
