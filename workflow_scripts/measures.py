"""Norm-based complexity measures λ of a network, computed cheaply at every logged step.

Weight matrices. ``weight_matrices(model)`` lists the layer matrices A_1 … A_L in forward order:
every ``nn.Conv2d`` kernel reshaped to C_out × (C_in·k·k), every ``nn.Linear`` weight (out × in),
and the fused query/key/value projection of an attention layer split into its three d × d blocks
Q, K, V (``models.QKVLinear`` or ``nn.MultiheadAttention.in_proj_weight``). Hence a CNN contributes
its convs and FC layers; a ResNet its stem, every block conv including the 1x1 shortcut convs, and
the head; a ViT the patch embedding, Q, K, V, the output projection and both MLP matrices of every
block, and the head. Biases, BatchNorm/LayerNorm affine parameters, the CLS token and position
embeddings are not weight matrices and enter no measure (Bartlett et al. 2017 bound the network
through its linear maps; the normalisation affine maps are per-channel rescalings that the bound's
derivation for these architectures does not cover). The ordering is the modules' registration
order, which the models in ``models`` keep equal to the forward order; only the authors' CNN
variant below depends on the order.

Notation: ‖A‖_σ is the largest singular value; ‖A‖_{p,q} = ‖(‖A_{:,1}‖_p, …, ‖A_{:,m}‖_p)‖_q
(p-norms of the columns, then their q-norm; Bartlett et al. 2017), so ‖Aᵀ‖_{2,1} = Σ_rows ‖A_{r,:}‖_2,
the sum of the ℓ2 norms of the rows (one row per output unit / output channel).

Measures (the columns ``MEASURES`` of a trajectory; float64):
    spectral_complexity   R_A = (Π_i ‖A_i‖_σ) · (Σ_i ‖A_iᵀ‖_{2,1}^{2/3} / ‖A_i‖_σ^{2/3})^{3/2}
                          (Bartlett, Foster & Telgarsky 2017, eq. 1.2 with reference matrices
                          M_i = 0 and ρ_i = 1; no margin normalisation). Computed in log space:
                          log R_A = Σ_i log σ_i + (3/2)·logsumexp_i((2/3)(log ‖A_iᵀ‖_{2,1} − log σ_i)),
                          so that the product over the ~40 matrices of a ViT neither overflows nor
                          underflows before the final exp (float64 holds R_A within e^{±709}).
    spectral_product      Π_i ‖A_i‖_σ (also in log space).
    l1                    Σ_i Σ_{r,c} |A_i[r, c]|, the entrywise ℓ1 norm of all weight matrices.
    frobenius             (Σ_i ‖A_i‖_F²)^{1/2}, the ℓ2 norm of all weight-matrix entries.
    group21               Σ_i ‖A_iᵀ‖_{2,1}, the group-(2,1) norm (sum of the rows' ℓ2 norms).
    spectral_complexity_authors
                          the spectral complexity as the authors' public code computed it, kept for
                          comparison only (README, "Where this departs from the authors' code"):
        CNN     (Π_i σ_i) · (Σ_i (Σ_{j>i} ‖A_j‖_{2,1})^{2/3} / σ_i^{2/3})^{3/2}: layer i's term uses
                the sum over the *later* layers j > i of the column (2,1) norms ‖A_j‖_{2,1} (sum of
                the columns' ℓ2 norms, not of the rows'); the last layer's term is 0.
        ResNet  the same formula over the stem conv and the head only (their list of layers missed
                every block conv, shortcuts included).
        ViT     their ViT code used the correct formula over the same matrices as here, so this
                equals spectral_complexity (note: that code returned log R_A, and their training loop
                logged that value; this column holds R_A itself).
        Any other model (e.g. a plain stack of layers) uses the CNN form.
    The authors' ℓ1 / Frobenius / group-(2,1) norms (over all parameters, biases included, and with
    column instead of row norms) are in ``authors_norms`` (not trajectory columns), and the exact
    operator norm of a convolution (FFT method) in ``conv_operator_norm`` (not a column either).

Spectral norms come from Golub–Kahan–Lanczos bidiagonalisation (a Krylov refinement of power
iteration on AᵀA) with full reorthogonalisation, run batched over the weight matrices that share a
shape, started from the previous call's top right singular vectors (warm start) or, on the first
call, from Gaussian vectors drawn from the tracker's own ``torch.Generator`` (the global RNG is never
touched). It stops when the Ritz value has converged (relative change ≤ ``rtol``) or its residual
bound is ≤ ``rtol``·σ, with a cap on the number of steps. Matrices whose smaller side is ≤
``direct_max`` get exact singular values (torch.linalg.svdvals) instead: cheaper than iterating.
On CPU the products run in the weights' dtype (float32) and the recurrences in float64; on an
accelerator the matrices are promoted to float64 so that TF32 or reduced-precision matmul settings
cannot degrade σ. Tested: relative error ≤ 1e-4 against svdvals on every layer. ``compute()`` runs
single-threaded on CPU (restoring the caller's thread count): it is hundreds of small ops, which
OpenMP slows down badly on a shared machine. ``state_dict``/``load_state_dict`` carry the warm
starts through a checkpoint so that a resumed run logs bit-identical values.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import OrderedDict

import torch
import torch.nn as nn

MEASURES = ("spectral_complexity", "spectral_product", "l1", "frobenius", "group21",
            "spectral_complexity_authors")


# ------------------------------------------------------------------------------ weight matrices
def weight_matrices(model: nn.Module) -> list[torch.Tensor]:
    """The layer weight matrices of ``model`` in forward order (detached views, no copies)."""
    mats: list[torch.Tensor] = []
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            if m.in_proj_weight is not None:
                mats.extend(m.in_proj_weight.detach().chunk(3, dim=0))
            else:  # separate q/k/v weights when kdim/vdim differ from embed_dim
                mats.extend(w.detach() for w in (m.q_proj_weight, m.k_proj_weight,
                                                  m.v_proj_weight))
        elif isinstance(m, nn.Linear):  # includes models.QKVLinear and MHA's out_proj
            w = m.weight.detach()
            n_split = getattr(m, "n_split", 1)
            mats.extend(w.chunk(n_split, dim=0) if n_split > 1 else [w])
        elif isinstance(m, nn.modules.conv._ConvNd):
            if m.transposed:
                raise ValueError(f"transposed convolution {m} is not supported")
            w = m.weight.detach()
            mats.append(w.reshape(w.shape[0], -1))
    if not mats:
        raise ValueError(f"model {type(model).__name__} has no Conv/Linear weight matrices")
    return mats


def authors_arch(model: nn.Module) -> str:
    """Which authors' variant applies to ``model``: 'resnet', 'vit' or 'cnn'.

    A model of no known class is refused rather than measured with the CNN's formula: the authors'
    variants differ per architecture, so a new one must say which applies (``arch=``)."""
    from . import models  # local import: models does not depend on measures
    for cls, name in ((models.ResNet, "resnet"), (models.ViT, "vit"), (models.CNN, "cnn")):
        if isinstance(model, cls):
            return name
    raise ValueError(f"no authors' complexity variant is known for a {type(model).__name__}: pass "
                     "arch='cnn', 'resnet' or 'vit' to say which of their formulas applies")


# ----------------------------------------------------------------------- formulas (log space)
def _as64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64).reshape(-1)


def log_spectral_complexity(sigmas, norms21) -> float:
    """log R_A from the spectral norms σ_i and the row (2,1) norms ‖A_iᵀ‖_{2,1}."""
    s, g = _as64(sigmas), _as64(norms21)
    if s.numel() == 0 or s.shape != g.shape:
        raise ValueError(f"need equally many (>0) spectral and (2,1) norms, got {s.shape}, {g.shape}")
    if torch.any(s < 0) or torch.any(g < 0):
        raise ValueError("norms must be non-negative")
    if torch.any(s == 0):
        # ‖Aᵀ‖_{2,1}/‖A‖_σ ≤ √(rows·rank) stays bounded as A → 0, so R_A → 0
        return -math.inf
    ratio = (2.0 / 3.0) * (torch.log(g) - torch.log(s))
    return float(torch.log(s).sum() + 1.5 * torch.logsumexp(ratio, dim=0))


def log_spectral_complexity_later_sum(sigmas, col21) -> float:
    """log of the authors' CNN/ResNet variant: term i uses Σ_{j>i} ‖A_j‖_{2,1} (column norms)."""
    s, c = _as64(sigmas), _as64(col21)
    if s.numel() == 0 or s.shape != c.shape:
        raise ValueError(f"need equally many (>0) spectral and (2,1) norms, got {s.shape}, {c.shape}")
    if torch.any(s == 0):
        return -math.inf
    later = torch.flip(torch.cumsum(torch.flip(c, [0]), 0), [0]) - c  # Σ_{j>i} c_j
    keep = later > 0  # the last layer (and any layer followed only by zero matrices) adds 0
    if not torch.any(keep):
        return -math.inf
    terms = (2.0 / 3.0) * (torch.log(later[keep]) - torch.log(s[keep]))
    return float(torch.log(s).sum() + 1.5 * torch.logsumexp(terms, dim=0))


def _exp(x: float) -> float:
    return math.exp(x) if x < 709.7 else math.inf


# ------------------------------------------------------------------------- spectral norms
class _Group:
    """Weight matrices sharing one shape/dtype/device, iterated together."""

    def __init__(self, indices: tuple[int, ...], shape: tuple[int, int]):
        self.indices = indices
        self.shape = shape
        self.v: torch.Tensor | None = None  # (b, n) float64 top right singular vectors
        self.steps = 0  # Lanczos steps taken by the last call
        self.residual: torch.Tensor | None = None


def _safe_normalise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    nrm = torch.linalg.vector_norm(x, dim=-1)
    return x / nrm.clamp_min(1e-300).unsqueeze(-1), nrm


def _lanczos_top(A: torch.Tensor, v0: torch.Tensor, rtol: float, max_steps: int,
                 krylov_max: int) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """Top singular values of a batch ``A`` (b, m, n) by Golub–Kahan–Lanczos from ``v0`` (b, n).

    Returns (σ (b,) float64, top right singular vectors (b, n) float64, steps, residual bounds).
    Explicitly restarted from the current best vector every ``krylov_max`` steps.
    """
    b, m, n = A.shape
    cd = A.dtype
    kdim = max(1, min(m, n, krylov_max))
    v, _ = _safe_normalise(v0)
    total = 0
    sigma_prev = torch.zeros(b, dtype=torch.float64, device=A.device)
    while True:
        V = torch.zeros(b, n, kdim + 1, dtype=torch.float64, device=A.device)
        U = torch.zeros(b, m, kdim, dtype=torch.float64, device=A.device)
        B = torch.zeros(b, kdim, kdim, dtype=torch.float64, device=A.device)
        V[:, :, 0] = v
        beta = torch.zeros(b, dtype=torch.float64, device=A.device)
        for j in range(kdim):
            u = torch.bmm(A, V[:, :, j:j + 1].to(cd)).squeeze(-1).to(torch.float64)
            if j > 0:
                u = u - beta.unsqueeze(-1) * U[:, :, j - 1]
                B[:, j - 1, j] = beta  # the previous step's β: the superdiagonal
                Uj = U[:, :, :j]  # full reorthogonalisation keeps the Ritz values honest
                u = u - torch.bmm(Uj, torch.bmm(Uj.transpose(1, 2), u.unsqueeze(-1))).squeeze(-1)
            u, alpha = _safe_normalise(u)
            U[:, :, j] = u
            # uᵀA rather than Aᵀu: reads A row-major, several times faster on CPU
            w = torch.bmm(u.unsqueeze(1).to(cd), A).squeeze(1).to(torch.float64)
            w = w - alpha.unsqueeze(-1) * V[:, :, j]
            Vj = V[:, :, :j + 1]
            w = w - torch.bmm(Vj, torch.bmm(Vj.transpose(1, 2), w.unsqueeze(-1))).squeeze(-1)
            w, beta = _safe_normalise(w)
            V[:, :, j + 1] = w
            B[:, j, j] = alpha
            total += 1
            Ub, S, Vbh = torch.linalg.svd(B[:, :j + 1, :j + 1])
            sigma = S[:, 0]
            # A(V y) = σ U z exactly; Aᵀ(U z) = σ V y + β_{j+1} z_j v_{j+1}: residual β·|z_j|
            resid = beta * Ub[:, j, 0].abs()
            scale = sigma.clamp_min(1e-300)
            # converged: small residual bound, or a Ritz value that stopped moving within this
            # Krylov cycle (after a restart the first value equals the last one by construction)
            done = (resid <= rtol * scale) | (
                (j > 0) & ((sigma - sigma_prev).abs() <= rtol * scale))
            sigma_prev = sigma
            if bool(done.all()) or total >= max_steps or j == kdim - 1:
                break
        y = Vbh[:, 0, :]  # top right singular vector of B, in the basis V
        v, _ = _safe_normalise(torch.bmm(V[:, :, :j + 1], y.unsqueeze(-1)).squeeze(-1))
        if bool(done.all()) or total >= max_steps or kdim >= min(m, n):
            return sigma, v, total, resid


class ComplexityTracker:
    """Computes every measure of ``MEASURES`` for one model, warm-starting σ between calls.

    Create it once per training run; call ``compute()`` at each logged step. It reads the weights
    without changing them (no grad, no in-place ops) and never uses the global RNG.
    """

    def __init__(self, model: nn.Module, arch: str | None = None, rtol: float = 1e-7,
                 max_steps: int = 500, krylov_max: int = 40, direct_max: int = 32,
                 seed: int = 0, cpu_threads: int | None = 1):
        if arch is not None and arch not in ("cnn", "resnet", "vit"):
            raise ValueError(f"unknown arch {arch!r} for the authors' variant")
        if not 0 < rtol < 1:
            raise ValueError(f"rtol must be in (0, 1), got {rtol}")
        self.model = model
        self.arch = arch or authors_arch(model)
        self.rtol, self.max_steps, self.krylov_max = rtol, max_steps, krylov_max
        self.direct_max = direct_max
        # compute() is hundreds of tiny ops; on a shared CPU OpenMP fork/join across threads
        # costs far more than it saves (measured 10-70x slower with 2 threads under load), so
        # it runs single-threaded and restores the caller's setting. None: leave it alone.
        if cpu_threads is not None and cpu_threads < 1:
            raise ValueError(f"cpu_threads must be >= 1 or None, got {cpu_threads}")
        self.cpu_threads = cpu_threads
        self._gen = torch.Generator().manual_seed(seed)  # private: the global RNG stays untouched
        self._groups: "OrderedDict[tuple, _Group]" = OrderedDict()
        self.last_steps: dict[tuple, int] = {}  # Lanczos steps per group at the last call
        self.last_sigmas: torch.Tensor | None = None  # σ_i of the last compute()

    # -- spectral norms ------------------------------------------------------------------
    def _grouping(self, mats: list[torch.Tensor]) -> list[_Group]:
        keys: "OrderedDict[tuple, list[int]]" = OrderedDict()
        for i, w in enumerate(mats):
            keys.setdefault((tuple(w.shape), w.dtype, str(w.device)), []).append(i)
        groups = []
        for (shape, _, _), idx in keys.items():
            key = (shape, tuple(idx))
            if key not in self._groups:  # new layout: no warm start for it yet
                self._groups[key] = _Group(tuple(idx), shape)
            groups.append(self._groups[key])
        return groups

    # -- checkpointing: a resumed run continues with the same warm starts -------------------
    def state_dict(self) -> dict:
        """Warm-start vectors and the private generator's state (CPU tensors, plain types), so
        that a run resumed from a checkpoint computes bit-identical values."""
        return {"version": 1, "generator": self._gen.get_state(),
                "groups": [{"shape": list(g.shape), "indices": list(g.indices),
                            "v": None if g.v is None else g.v.detach().cpu()}
                           for g in self._groups.values()]}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("not a ComplexityTracker state (version 1)")
        self._gen.set_state(state["generator"])
        self._groups = OrderedDict()
        for item in state["groups"]:
            g = _Group(tuple(item["indices"]), tuple(item["shape"]))
            g.v = item["v"]
            self._groups[(g.shape, g.indices)] = g

    @torch.no_grad()
    def spectral_norms(self, mats: list[torch.Tensor] | None = None) -> torch.Tensor:
        """σ_i = ‖A_i‖_σ of every weight matrix (float64 CPU tensor, forward order)."""
        mats = weight_matrices(self.model) if mats is None else mats
        out = torch.empty(len(mats), dtype=torch.float64)
        for g in self._grouping(mats):
            m, n = g.shape
            batch = [mats[i] for i in g.indices]
            A = batch[0].unsqueeze(0) if len(batch) == 1 else torch.stack(batch)
            dev = A.device
            if dev.type == "cpu":
                if A.dtype not in (torch.float32, torch.float64):
                    A = A.float()
            else:  # accelerators: avoid TF32 / low-precision matmul paths
                A = A.double()
            if min(m, n) <= self.direct_max:
                sig = torch.linalg.svdvals(A.double())[:, 0]
                g.steps = 0
            else:
                if g.v is None or g.v.shape != (len(batch), n):
                    v0 = torch.randn(len(batch), n, generator=self._gen, dtype=torch.float64)
                    v0 = v0.to(dev)
                else:
                    v0 = g.v.to(dev, torch.float64)
                sig, g.v, g.steps, g.residual = _lanczos_top(A, v0, self.rtol, self.max_steps,
                                                             self.krylov_max)
            out[list(g.indices)] = sig.detach().to("cpu", torch.float64)
        return out

    # -- all measures --------------------------------------------------------------------
    def compute(self) -> dict[str, float]:
        """Every measure of ``MEASURES`` as python floats (float64)."""
        saved = torch.get_num_threads()
        if self.cpu_threads is not None:
            torch.set_num_threads(self.cpu_threads)
        try:
            return self._compute()
        finally:
            torch.set_num_threads(saved)

    @torch.no_grad()
    def _compute(self) -> dict[str, float]:
        mats = weight_matrices(self.model)
        sig = self.spectral_norms(mats)
        # Reductions in the weights' dtype (a float64 copy of a 50 MB matrix costs more than all
        # the Lanczos steps); torch's cascaded sums keep float32 relative errors near 1e-7.
        rows = [torch.linalg.vector_norm(w, dim=1).double() for w in mats]
        row21 = torch.stack([r.sum().cpu() for r in rows])
        fro2 = sum(float((r * r).sum()) for r in rows)
        l1 = sum(float(torch.linalg.vector_norm(w, ord=1)) for w in mats)
        log_sc = log_spectral_complexity(sig, row21)
        log_prod = float(torch.log(sig).sum()) if bool(torch.all(sig > 0)) else -math.inf
        res = {
            "spectral_complexity": _exp(log_sc),
            "spectral_product": _exp(log_prod),
            "l1": l1,
            "frobenius": math.sqrt(fro2),
            "group21": float(row21.sum()),
            "spectral_complexity_authors": _exp(self._log_authors(mats, sig, log_sc)),
        }
        self.last_steps = {g.indices: g.steps for g in self._groups.values()}
        self.last_sigmas = sig
        return res

    def _log_authors(self, mats, sig, log_sc) -> float:
        if self.arch == "vit":
            return log_sc
        idx = [0, len(mats) - 1] if self.arch == "resnet" else list(range(len(mats)))
        if self.arch == "resnet" and len(mats) < 2:
            raise ValueError("a ResNet needs at least a stem and a head")
        col21 = [float(torch.linalg.vector_norm(mats[i], dim=0).double().sum()) for i in idx]
        return log_spectral_complexity_later_sum(sig[idx], col21)


def compute_measures(model: nn.Module, arch: str | None = None) -> dict[str, float]:
    """One-off ``ComplexityTracker(model, arch).compute()`` (cold start)."""
    return ComplexityTracker(model, arch).compute()


@torch.no_grad()
def authors_norms(model: nn.Module) -> dict[str, float]:
    """The ℓ1, Frobenius and group-(2,1) norms as the authors' CNN code computed them (named as
    theirs, not trajectory columns): ℓ1 and Frobenius over *all* parameters (biases and
    normalisation parameters included); group-(2,1) as Σ_i ‖A_i‖_{2,1}, the column norms."""
    params = [p.detach() for p in model.parameters()]
    return {
        "l1_authors": sum(float(p.abs().sum(dtype=torch.float64)) for p in params),
        "frobenius_authors": math.sqrt(sum(
            float(torch.linalg.vector_norm(p, dtype=torch.float64) ** 2) for p in params)),
        "group21_authors": sum(float(torch.linalg.vector_norm(w, dim=0, dtype=torch.float64).sum())
                               for w in weight_matrices(model)),
    }


@torch.no_grad()
def conv_operator_norm(weight: torch.Tensor, input_hw: tuple[int, int]) -> float:
    """Exact operator norm of x ↦ conv2d(x, weight) on (C_in, H, W) inputs, circular padding,
    stride 1 (Sedghi, Gupta & Long 2019): the map's singular values are those of the C_out × C_in
    matrices K̂(u, v) = Σ_{a,b} K[:, :, a, b] e^{-2πi(au/H + bv/W)} over the H·W frequencies.

    An extra, not a trajectory column: it differs from the σ of the reshaped C_out × C_in·k·k
    matrix that R_A uses (the paper's convention), costs H·W small SVDs, and needs the layer's
    input size. For zero padding it is the norm of the circular convolution, not exact.
    """
    if weight.ndim != 4:
        raise ValueError(f"expected a (C_out, C_in, kh, kw) kernel, got shape {tuple(weight.shape)}")
    h, w = input_hw
    if weight.shape[2] > h or weight.shape[3] > w:
        raise ValueError(f"kernel {tuple(weight.shape[2:])} larger than the input {input_hw}")
    spectrum = torch.fft.fft2(weight.detach().double(), s=(h, w)).permute(2, 3, 0, 1)
    return float(torch.linalg.matrix_norm(spectrum, ord=2).max())


def main(argv=None) -> int:
    from .models import ARCHS, INPUT_SPECS, build_model
    parser = argparse.ArgumentParser(
        prog="python -m workflow_scripts.measures",
        description="Build a freshly initialised model and print its complexity measures (JSON).")
    parser.add_argument("--arch", choices=ARCHS, required=True)
    parser.add_argument("--dataset", choices=tuple(INPUT_SPECS), required=True)
    parser.add_argument("--init-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the initialisation")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    model = build_model(args.arch, args.dataset, args.init_scale)
    t0 = time.perf_counter()
    res = compute_measures(model)
    res["compute_seconds"] = time.perf_counter() - t0
    print(json.dumps({"arch": args.arch, "dataset": args.dataset, **res}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
