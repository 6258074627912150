"""The perceptron block of the config: constants, references, run settings, job sizes."""
from __future__ import annotations

import math

import numpy as np

from ..batches import chunk_seeds

# ----------------------------------------------------------------------------------------------
# constants and references
# ----------------------------------------------------------------------------------------------
INPUTS = ("gaussian", "binary")
LOSS_NAMES = ("logistic", "square")
DTYPES = ("float64", "float32")
INTEGRATORS = ("gd", "gd_then_flow")  # fixed-step GD; K₀ GD steps then BDF on the flow (flow.py)
TEACHER_STREAM, DATA_STREAM = 0, 1
DATA_SPEC_VERSION = 1
PAPER_GAMMA1 = {"value": 0.4901, "error": 0.0005, "source": "arXiv:2505.13230, free-norm GD"}
PAPER_GAMMA2 = {"value": 0.96, "error": 0.25, "source": "arXiv:2505.13230, free-norm GD"}
BAYES_ALPHA5 = 0.0839  # Opper & Haussler 1991; reproduced by bayes_error(5)
# large-α asymptotes ε ≈ c/α (c/√α for Hebb); Engel & Van den Broeck 2001, ch. 2-4
ASYMPTOTES = {
    "hebb": {"coefficient": 1 / math.sqrt(2 * math.pi), "power": 0.5,
             "source": "Vallet 1989; ε = 1/√(2πα) ≈ 0.399/√α"},
    "gibbs": {"coefficient": 0.625, "power": 1.0, "source": "Györgyi & Tishby 1990"},
    "bayes": {"coefficient": 0.442, "power": 1.0, "source": "Opper & Haussler 1991"},
    "max_stability": {"coefficient": 0.500, "power": 1.0,
                      "source": "Opper, Kinzel, Kleinz & Nehl 1990; Gardner 1988"},
}

def alpha_tag(alpha: float) -> str:
    """The α in paths and wildcards: shortest decimal ("5", "1.5")."""
    return format(float(alpha), ".12g")


def n_examples(N: int, alpha: float) -> int:
    """P = αN, which must be an integer."""
    if N < 1:
        raise ValueError(f"N must be >= 1, got {N}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    P = int(round(alpha * N))
    if abs(P - alpha * N) > 1e-6 * max(1.0, alpha * N) or P < 1:
        raise ValueError(f"alpha*N must be a positive integer, got alpha={alpha}, N={N}")
    return P


# ----------------------------------------------------------------------------------------------
# the config block (config/schema/perceptron.schema.yaml) -> jobs
# ----------------------------------------------------------------------------------------------
def check_config(pcfg: dict) -> None:
    """Checks the schema cannot express; ValueError naming the key."""
    N = pcfg["N"]
    groups = {"perceptron.alphas": pcfg["alphas"],
              "perceptron.fixed_norm.alphas": pcfg["fixed_norm"]["alphas"]}
    if pcfg["square_loss"]["enabled"]:
        groups["perceptron.square_loss.alphas"] = pcfg["square_loss"]["alphas"]
    for key, alphas in groups.items():
        for a in alphas:
            try:
                n_examples(N, a)
            except ValueError:
                raise ValueError(f"config key {key}: alpha={a} times N={N} is not an integer") from None
    for key in ("fixed_norm.lambdas", "theory.lambdas", "theory.reference_alphas"):
        block, name = key.split(".")
        g = pcfg[block][name]
        if not g["min"] < g["max"]:
            raise ValueError(f"config key perceptron.{key}: min must be < max, got {g}")
    fa = pcfg["figures"]["alpha"]
    need = {"perceptron.alphas": pcfg["alphas"], "perceptron.fixed_norm.alphas": pcfg["fixed_norm"]["alphas"]}
    if pcfg["square_loss"]["enabled"]:
        need["perceptron.square_loss.alphas"] = pcfg["square_loss"]["alphas"]
    for key, alphas in need.items():
        if not any(alpha_tag(a) == alpha_tag(fa) for a in alphas):
            raise ValueError(f"config key perceptron.figures.alpha: {fa} is not in {key} {alphas}")
    la = pcfg.get("large_alpha") or {}
    if la.get("enabled"):
        for a in la["alphas"]:
            try:
                n_examples(la["N"], a)
            except ValueError:
                raise ValueError(f"config key perceptron.large_alpha.alphas: alpha={a} times "
                                 f"N={la['N']} is not an integer") from None
        # the GD analysis groups runs by α: a large-α run at a main α (another N) would be mixed in
        common = {alpha_tag(a) for a in la["alphas"]} & {alpha_tag(a) for a in pcfg["alphas"]}
        if common:
            raise ValueError(f"config key perceptron.large_alpha.alphas: {sorted(common)} also in "
                             f"perceptron.alphas (the runs would be averaged across N)")
    sc = pcfg.get("scaling") or {}
    for key in ("gamma2_alphas", "gd_gamma2_alphas"):
        if key in sc and not sc[key]["min"] < sc[key]["max"]:
            raise ValueError(f"config key perceptron.scaling.{key}: min must be < max, got {sc[key]}")
    if pcfg.get("integrator", "gd") == "gd_then_flow" and pcfg.get("dtype", "float64") != "float64":
        raise ValueError(f"config key perceptron.dtype: integrator gd_then_flow runs in float64, "
                         f"got {pcfg['dtype']!r}")
    tags = [alpha_tag(a) for a in pcfg["alphas"]]
    if len(set(tags)) != len(tags):
        raise ValueError(f"config key perceptron.alphas: repeated values {pcfg['alphas']}")


def run_settings(pcfg: dict, kind: str) -> dict:
    """The GD runs of ``kind``: "train" (the main loss) or "square_loss" (the counterexample)."""
    if kind == "train":
        return {"alphas": pcfg["alphas"], "seeds": pcfg["seeds"], "steps": pcfg["steps"],
                "loss": pcfg["loss"], "experiment": "perceptron", "N": pcfg["N"],
                "batches": chunk_seeds(pcfg["seeds"], pcfg["seeds_per_job"])}
    if kind == "square_loss":
        sq = pcfg["square_loss"]
        return {"alphas": sq["alphas"], "seeds": sq["seeds"], "steps": sq["steps"],
                "loss": "square", "experiment": "perceptron_square_loss", "N": pcfg["N"],
                "batches": chunk_seeds(sq["seeds"], pcfg["seeds_per_job"])}
    if kind == "large_alpha":
        la = pcfg["large_alpha"]
        return {"alphas": la["alphas"], "seeds": la["seeds"], "steps": la["steps"],
                "loss": "logistic", "experiment": "perceptron_large_alpha", "N": la["N"],
                "batches": chunk_seeds(la["seeds"], 1)}  # one seed a job: P·N is large
    raise ValueError(f"kind must be 'train', 'square_loss' or 'large_alpha', got {kind!r}")


def scaling_theory_alphas(pcfg: dict) -> list[float]:
    """α of the scaling theory: the configured ones plus every GD α in the GD γ₂ range or of the
    large-α runs (so that GD is compared with the theory at its own α)."""
    sc = pcfg["scaling"]
    r = sc["gd_gamma2_alphas"]
    al = [float(a) for a in sc["theory_alphas"]]
    al += [float(a) for a in pcfg["alphas"] if r["min"] <= a <= r["max"]]
    if pcfg["large_alpha"]["enabled"]:
        al += [float(a) for a in pcfg["large_alpha"]["alphas"]]
    return sorted(set(al))


def memory_mb(N: int, alpha: float, n_seeds: int, max_batch_mb: float, dtype="float64") -> int:
    """Memory of one GD job: one stack of inputs plus a margin for Python and the libraries."""
    per_seed = n_examples(N, alpha) * N * np.dtype(dtype).itemsize
    stack = min(n_seeds, max(1, int(max_batch_mb * 2 ** 20 // per_seed)))
    return int(stack * per_seed * 1.2 / 2 ** 20) + 600


# Seconds per seed, step and (P, N) entry for a job's time limit: the unloaded rate measured by
# bench/bench_perceptron.py (1.5 ns, float64, one core), doubled; a job killed at its limit is
# retried with twice the time (rule perceptron_train). Loaded machines measured up to 4.8 ns.
RUNTIME_S_PER_ENTRY = 2 * 1.5e-9


# gd_then_flow: seconds per seed and (P, N) entry, whatever the steps (the BDF steps grow like
# log t): 77 CPU-s a seed at N = 1000, α = 50 to λ = 80 (705 gradients, 15 Hessians, loaded
# 2-core machine), 1.5 µs per entry, doubled.
FLOW_RUNTIME_S_PER_ENTRY = 2 * 1.5e-6


def runtime_minutes(N: int, alpha: float, n_seeds: int, steps: int, integrator: str = "gd") -> int:
    """Time limit of one GD job (SLURM ``runtime``): its measured cost with a factor 2 margin, and
    10 minutes for start-up and writing."""
    entries = n_seeds * n_examples(N, alpha) * N
    if integrator == "gd_then_flow":
        return int(math.ceil(entries * FLOW_RUNTIME_S_PER_ENTRY / 60)) + 10
    return int(math.ceil(entries * steps * RUNTIME_S_PER_ENTRY / 60)) + 10
