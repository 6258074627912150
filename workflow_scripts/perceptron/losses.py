"""Losses, the error of an overlap, the learning rate, log-spaced steps, and the 1-D quadrature
over the field ω that the population loss and the replica theory share."""
from __future__ import annotations

import math

import numpy as np
from scipy import special

from .settings import LOSS_NAMES


# ----------------------------------------------------------------------------------------------
# losses, errors, learning rate
# ----------------------------------------------------------------------------------------------
def loss_value(name: str, D: np.ndarray) -> np.ndarray:
    if name == "logistic":
        return np.logaddexp(0.0, -2.0 * D)
    if name == "square":
        return 0.5 * (1.0 - D) ** 2
    raise ValueError(f"loss must be one of {LOSS_NAMES}, got {name!r}")


def loss_neg_derivative(name: str, D: np.ndarray) -> np.ndarray:
    """−ℓ'(Δ)."""
    if name == "logistic":
        return 2.0 * special.expit(-2.0 * D)
    if name == "square":
        return 1.0 - D
    raise ValueError(f"loss must be one of {LOSS_NAMES}, got {name!r}")


def error_from_overlap(R):
    return np.arccos(np.clip(R, -1.0, 1.0)) / np.pi


def learning_rate(alpha: float, lr_scale: float = 1.0) -> float:
    """η = lr_scale/(1 + α^(−1/2))²: lr_scale/L with L the Marchenko–Pastur edge of C (docstring)."""
    if not 0 < lr_scale < 2:
        raise ValueError(f"lr_scale must be in (0, 2) (GD is unstable at >= 2), got {lr_scale}")
    return lr_scale / (1.0 + alpha ** -0.5) ** 2


def log_steps(steps: int, n_log: int) -> np.ndarray:
    """About n_log log-spaced steps in [1, steps], always including 1 and steps, strictly increasing."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if n_log < 2:
        raise ValueError(f"n_log must be >= 2, got {n_log}")
    s = np.unique(np.round(np.logspace(0, math.log10(steps), n_log)).astype(np.int64))
    return np.unique(np.concatenate([[1], s, [steps]]))


# 1-D quadrature over the field ω (composite Gauss–Legendre): population loss and replica theory.
def _omega_grid(lo=-12.0, hi=12.0, panels=240, order=16, refine=None):
    """Nodes and weights on [lo, hi]: ``panels`` uniform panels, plus, when ``refine`` = h > 0,
    panels that halve geometrically towards 0 from the uniform width down to h on both sides.

    Why the refinement: the density 2φ(ω)Φ(Rω/s) of ω = R|u| + s z is a step of width s at 0
    (s = √(1 − R²) → 0 like α^(−1/2)), and the proximal shift ψ varies on the scale 1/λ there;
    uniform panels of width 0.1 make ε 2.5% wrong at α = 500. The tails stay at ±12 (φ(12) ~ 1e-32)."""
    x, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(lo, hi, panels + 1)
    if refine is not None and lo < 0 < hi:
        width = (hi - lo) / panels
        h = min(float(refine), width / 2)
        geo = [h]
        while geo[-1] * 2 < width:
            geo.append(geo[-1] * 2)
        geo = np.array(geo)
        edges = np.unique(np.concatenate([edges[np.abs(edges) >= width], -geo, geo, [0.0]]))
    h = np.diff(edges)[:, None]
    return (edges[:-1, None] + (x[None] + 1) / 2 * h).ravel(), (w[None] * h / 2).ravel()


OMEGA, OMEGA_W = _omega_grid()
REFINE_FRACTION = 0.01  # the smallest panel is 1/100 of the narrowest feature, min(s, 1/λ)


def omega_grid_for(R: float, lam: float):
    """The grid for an integral over ω at overlap R and sharpness λ (refined to min(s, 1/λ)/100)."""
    s = math.sqrt(max(1.0 - R * R, 0.0))
    scale = min(s, 1.0 / lam) if s > 0 else 1.0 / lam
    return _omega_grid(refine=max(REFINE_FRACTION * scale, 1e-12))


def _field_weights(R: float, omega=OMEGA):
    """p(ω) (skew-normal density of ω = R|u| + s z) and m(ω) = E[|u| δ(ω − ·)], s = √(1 − R²)."""
    p, k, s = _field_density(R, omega)
    return p, k + R * omega * p, s


def _field_density(R: float, omega):
    """p(ω) and k(ω) = m(ω) − Rω p(ω) = 2 s φ(ω) φ(Rω/s), the combination in the (∂R) equation
    written without the cancellation of m against Rωp (both O(1) where k is O(s))."""
    s = math.sqrt(max((1.0 - R) * (1.0 + R), 1e-300))
    phi = np.exp(-omega ** 2 / 2) / math.sqrt(2 * math.pi)
    t = R * omega / s
    p = 2 * phi * special.ndtr(t)
    k = 2 * s * phi * np.exp(-t ** 2 / 2) / math.sqrt(2 * math.pi)
    return p, k, s


def population_loss(loss: str, lam: float, R: float) -> float:
    """E ℓ(Δ) over fresh Gaussian inputs for a student with λ = ‖w‖/√N and overlap R: Δ = λω."""
    if not np.isfinite(R) or not np.isfinite(lam):
        return math.nan
    R = float(np.clip(R, -1 + 1e-15, 1 - 1e-15))
    om, wq = omega_grid_for(abs(R), max(lam, 1e-12))
    p, _, _ = _field_density(R, om)
    return float(np.sum(wq * p * loss_value(loss, lam * om)))


def loss_second_derivative(name: str, D: np.ndarray) -> np.ndarray:
    """ℓ''(Δ): the curvature of each example's loss (the Hessian of the flow integrator)."""
    if name == "logistic":
        return 4.0 * special.expit(2.0 * D) * special.expit(-2.0 * D)  # no 1 − σ cancellation
    if name == "square":
        return np.ones_like(D)
    raise ValueError(f"loss must be one of {LOSS_NAMES}, got {name!r}")
