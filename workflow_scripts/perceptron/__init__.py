"""The teacher–student perceptron: free-norm GD, the fixed-norm curve, closed-form theory, checks.

Why: the paper's analytical support. Along full-batch gradient descent (GD) on the logistic loss
from w = 0 the test error of a perceptron goes from the Hebb rule through a minimum equal to the
Bayes-optimal error to max-margin overfitting, and the same curve ε(λ) is traced by the minimiser
of the loss at a fixed norm and sharpness λ. This module simulates both, computes the theory
(Hebb, Gibbs/Bayes, maximal stability, the replica prediction of the fixed-norm curve) and writes
the trajectories in the contract of ``trajectory.py`` so that the deep nets' aggregation and fits
(``aggregate.py``, ``fit.py``) run on them unchanged.

Model (the paper's teacher–student setting; README, "The teacher–student perceptron")
    teacher w* ~ N(0, I_N); inputs x ∈ R^N with i.i.d. N(0, 1) ("gaussian") or ±1 ("binary")
    entries; labels y = sign(w*·x) (0 -> +1); P = αN examples; stability Δ = y w·x/√N.
    losses ℓ(Δ): logistic log(1 + e^(−2Δ)); square (1 − Δ)²/2 (the counterexample).
    λ = ‖w‖/√N; overlap R = w·w*/(‖w‖‖w*‖); test error ε = arccos(R)/π, the exact
    generalisation error for Gaussian (spherical) test inputs and its N → ∞ limit for ±1 inputs.

Free-norm GD (``simulate``)
    L(w) = (1/α) Σ_μ ℓ(Δ_μ) = N · (mean loss), w ← w − η ∇L(w), from w = 0.
    The learning rate: ∇²L ⪯ C = (1/P) Σ_μ x_μ x_μᵀ for both losses (logistic: ℓ'' = 4σ(2Δ)σ(−2Δ)
    ≤ 1, equality at Δ = 0, i.e. at w = 0; square: ℓ'' = 1), so L is (λ_max C)-smooth everywhere and
    GD is stable for η < 2/λ_max(C). By Marchenko–Pastur, λ_max(C) → (1 + α^(−1/2))² for unit-
    variance entries (Gaussian or ±1). We take η = lr_scale / (1 + α^(−1/2))²; lr_scale = 1 is the
    classic 1/L step (half the stability limit, which leaves room for the O(N^(−2/3)) finite-size
    excess of λ_max), and lr_scale must lie in (0, 2).
    Logging: at log-spaced steps, always including step 1 and the last step. Step 0 (w = 0) is not
    logged: R is undefined there. After one step w = (η/α√N) Σ_μ y_μ x_μ, the Hebb vector, so the
    first row (step 1) carries the Hebb error, arccos(√(2α/(2α+π)))/π at large N.
    Seeds are stacked into one (S, P, N) array so every step is two batched matrix-vector
    products, which are memory bound (~1.5 ns per seed, step and entry of the (P, N) inputs in
    float64 on one core; ``dtype="float32"`` halves that, the weights stay float64).
    Per-seed randomness: teacher from default_rng([seed, 0]), inputs from default_rng([seed, 1]),
    rows drawn in order, so the data of a smaller α are the first rows of a larger one (nested P).

Trajectory columns: step, epoch (= step), wall_time (seconds of GD of the stacked batch, logging
excluded; seeds stacked together share it), train_error (fraction of training Δ ≤ 0), train_loss
(mean ℓ over the training set), val_error / val_loss (NaN: there is no validation split),
test_error (ε), test_loss (E ℓ(Δ) over fresh Gaussian inputs, an exact 1-D integral given λ and R),
lambda (λ), overlap (R). Cell id: "{experiment}/perceptron/teacher_N{N}/P{P}/seed{seed}"; the
dataset_sha256 is the sha256 of the canonical JSON of the data-generation spec (there is no file).

Fixed-norm curve (``fixed_norm_curve``)
    For each λ, minimise f_λ(w) = (1/P) Σ_μ log(1 + e^(−2λ y_μ w·x_μ/√N)) over ‖w‖ = √N. The data
    are linearly separable (teacher labels), so the minimum over the ball ‖w‖ ≤ √N lies on the sphere
    and the problem is convex. We minimise g(u) = f_λ(√N u/‖u‖) over u ≠ 0 with L-BFGS (whose
    gradient is the Riemannian gradient of f on the sphere, rescaled) warm-started along an
    increasing λ grid from the Hebb direction (the λ → 0 minimiser). A point is certified by the
    KKT multiplier μ = −w·∇f/N ≥ 0 (gradient pointing into the ball) and a small tangential
    gradient; both are written out.

Replica theory of the fixed-norm curve (``replica_fixed_norm``), N → ∞, Gaussian inputs.
    Zero-temperature replica-symmetric energy of the minimiser of Σ_μ V(Δ_μ) on the sphere with a
    teacher, V(Δ) = log(1 + e^(−2λΔ)), order parameters R (teacher overlap) and x = β(1 − q):
        e(R, x) = −(1 − R²)/(2x) + α E_{u,z} M_x(R|u| + √(1 − R²) z),   u, z ~ N(0, 1),
        M_x(ω) = min_Δ [V(Δ) + (Δ − ω)²/(2x)]  (Moreau envelope),  min over R, max over x.
    (RS is exact here: the problem is convex, see above.) With ψ(ω) = Δ*(ω) − ω the proximal shift
    (ψ = 2λx σ(−2λ(ω + ψ))) the saddle-point equations reduce to 1-D integrals over the field
    ω = R|u| + s z, s = √(1 − R²), whose density is the skew normal p(ω) = 2φ(ω)Φ(Rω/s), and with
    m(ω) = E[|u| δ(ω − ·)] = 2φ(ω)[s φ(Rω/s) + Rω Φ(Rω/s)]:
        (∂x)  1 − R² = α ∫ p ψ²,          (∂R)  R = (α/s²) ∫ ψ (m − Rωp).
    Checks (tests): for V = −λΔ they give the Hebb overlap R² = 2α/(2α + π); their hard-margin
    limit ψ = (κ − ω)₊ gives the maximal-stability perceptron (``max_stability``), α ε → 0.500;
    at α = 5 the minimum over λ of ε(λ) is 0.0840 against the Bayes-optimal 0.0839; and they agree
    with the finite-N minimiser (``fixed_norm_curve``) within its sampling error.

The α → ∞ limit curve (``limit_curve``)
    At fixed λ as α → ∞, R → 1 and x → 0. With M_x(ω) ≈ V(ω) − x V'(ω)²/2 the energy is
    e ≈ −s²/(2x) + α E V(ω) − α x E[V'(ω)²]/2, s = √(1 − R²); its maximum over x (at
    x = s/√(αB)) is e ≈ α E V(R|u| + s z) − s √(αB), B = E V'(|u|)². Expanding in s,
    E V(√(1 − s²)|u| + s z) = E V(|u|) + (s²/2) A, A = E V''(|u|) − E[|u| V'(|u|)], and the
    minimum over s is at s = √B/(A√α). With ε ≈ s/π and ε_Hebb ≈ 1/√(2πα):
        f(λ) = ε/ε_Hebb → √(2/π) √B / A,   expectations over |u| (density 2φ(u), u > 0).
    λ → 0: V' → −λ, V'' = O(λ²), A → λ√(2/π), B → λ², f → 1 (the Hebb rule). λ → ∞ (t = 2λu):
    B ≈ 2φ(0)·2λ ∫₀^∞ σ(−t)² dt = 4λφ(0)(ln 2 − ½), E V'' ≈ 2φ(0)·2λ ∫₀^∞ σ(t)σ(−t) dt = 2λφ(0),
    E|u|V' = O(1/λ), so f ≈ c λ^(−½), c = 2^(3/4) π^(−1/4) √(ln 2 − ½) ≈ 0.555: the exponent ½ of
    the paper's γ₁ is the slope of this curve at large λ. The expansion needs s ≪ 1/λ (the field's
    step at ω = 0 narrower than V's scale), i.e. λ ≪ √α: at finite α the curve ε/ε₀(λ) follows f
    up to λ ~ √α and turns up to its minimum at λ_opt ≈ 0.88 α, so the local slope
    −d log(ε/ε₀)/d log λ peaks below ½ (≈ ½ − 0.76 α^(−2/3)) on 3 ≲ λ ≲ 0.01 λ_opt.

Closed forms (references: A. Engel & C. Van den Broeck, Statistical Mechanics of Learning, CUP 2001,
chapters 2-4)
    Hebb (Vallet 1989): R = √(2α/(2α + π)), ε_Hebb = arccos(R)/π → 1/√(2πα) ≈ 0.399/√α.
    Gibbs (Györgyi & Tishby 1990): R/√(1 − R) = (α/π) ∫Dt e^(−Rt²/2)/H(−√R t), ε_Gibbs = arccos(R)/π
        → 0.625/α; Bayes-optimal (Opper & Haussler 1991): the same R, ε_Bayes = arccos(√R)/π
        → 0.442/α; ε_Bayes(5) = 0.0839.
    Maximal stability (Gardner 1988; Opper, Kinzel, Kleinz & Nehl 1990): the hard-margin limit of
        the replica equations above, ε_MS → 0.500/α.

Modules, along the seams of the model: ``settings`` (the config block, job sizes), ``simulation``
(teacher, inputs, GD), ``flow`` (K₀ GD steps, then BDF on the gradient flow: GD's path at a
fraction of its cost), ``cells`` (a cell's trajectory file: config, integrator, footer), ``losses`` (losses and the field quadrature), ``fixed_norm``, ``theory``,
``validation`` (the paper's variables and validation.json), ``figures``, ``cli``.
CLI: ``python -m workflow_scripts.perceptron {train,fixed-norm,theory,theory-scaling,validate} --help``;
figures: ``python -m workflow_scripts.perceptron.figures --help``.
"""
# The package exports what its callers use: the rules (job settings), the benches, the tests and
# the command line. Everything else, private helpers included, is imported from its module
# (``from workflow_scripts.perceptron.theory import _prox_shift``), so each name has one home.
from .cells import train
from .cli import main
from .fixed_norm import fixed_norm_curve
from .flow import FLOW_DEFAULTS, flow_settings, simulate_flow
from .losses import OMEGA, OMEGA_W, learning_rate, log_steps, loss_value, omega_grid_for, population_loss
from .settings import (LOSS_NAMES, RUNTIME_S_PER_ENTRY, alpha_tag, check_config, memory_mb, n_examples,
                       run_settings, runtime_minutes, scaling_theory_alphas)
from .simulation import data_spec, dataset_sha256, make_inputs, make_teacher, signed_inputs, simulate
from .theory import (LIMIT_C, bayes_error, gibbs_error, hebb_error, hebb_overlap, limit_curve,
                     max_stability, replica_fixed_norm)
from .validation import curve_optimum, window_bounds

__all__ = [
    # settings: the config block and job sizes (rules/perceptron.smk)
    "LOSS_NAMES", "RUNTIME_S_PER_ENTRY", "alpha_tag", "check_config", "memory_mb", "n_examples",
    "run_settings", "runtime_minutes", "scaling_theory_alphas",
    # simulation and the hybrid integrator
    "data_spec", "dataset_sha256", "make_inputs", "make_teacher", "signed_inputs", "simulate", "train",
    "FLOW_DEFAULTS", "flow_settings", "simulate_flow",
    # losses and the field quadrature
    "OMEGA", "OMEGA_W", "learning_rate", "log_steps", "loss_value", "omega_grid_for", "population_loss",
    # the fixed-norm curve, closed-form and replica theory, the paper's variables
    "fixed_norm_curve", "LIMIT_C", "bayes_error", "gibbs_error", "hebb_error", "hebb_overlap",
    "limit_curve", "max_stability", "replica_fixed_norm", "curve_optimum", "window_bounds",
    # the command line
    "main",
]
