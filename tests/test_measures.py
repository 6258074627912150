"""Complexity measures against brute-force numpy references, invariances, log-space safety,
warm-started spectral norms against svdvals, and that measuring leaves model and RNG untouched."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from workflow_scripts import measures
from workflow_scripts.measures import (MEASURES, ComplexityTracker, authors_norms, compute_measures,
                                       log_spectral_complexity, log_spectral_complexity_later_sum,
                                       weight_matrices)
from workflow_scripts.models import QKVLinear, build_model


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- brute-force references
def ref_weight_matrices(model, arch):
    """The weight matrices written out by hand for each architecture (numpy float64)."""
    def np64(w):
        w = w.detach().double().numpy()
        return w.reshape(w.shape[0], -1)
    if arch == "cnn":
        layers = [m for m in list(model.features) + list(model.classifier)
                  if isinstance(m, (nn.Conv2d, nn.Linear))]
        return [np64(m.weight) for m in layers]
    if arch == "resnet":
        out = [np64(model.stem[0].weight)]
        for stage in model.stages:
            for blk in stage:
                out += [np64(blk.conv1.weight), np64(blk.conv2.weight)]
                if blk.shortcut is not None:
                    out.append(np64(blk.shortcut[0].weight))
        return out + [np64(model.fc.weight)]
    out = [np64(model.patch_embed.weight)]
    for blk in model.blocks:
        qkv = np64(blk.attn.qkv.weight)
        d = qkv.shape[1]
        out += [qkv[:d], qkv[d:2 * d], qkv[2 * d:], np64(blk.attn.proj.weight),
                np64(blk.mlp[0].weight), np64(blk.mlp[2].weight)]
    return out + [np64(model.head.weight)]


def ref_measures(mats, arch):
    """Every measure in linear space with explicit loops over layers, rows and columns."""
    sig = [np.linalg.svd(a, compute_uv=False)[0] for a in mats]
    rows = [sum(math.sqrt(sum(x * x for x in r)) for r in a.tolist()) for a in mats]
    cols = [sum(math.sqrt(sum(x * x for x in c)) for c in a.T.tolist()) for a in mats]
    prod = math.prod(sig)
    ra = prod * sum((g / s) ** (2 / 3) for g, s in zip(rows, sig)) ** 1.5
    if arch == "vit":
        auth = ra
    else:
        idx = [0, len(mats) - 1] if arch == "resnet" else list(range(len(mats)))
        s_, c_ = [sig[i] for i in idx], [cols[i] for i in idx]
        auth = math.prod(s_) * sum(sum(c_[j] for j in range(i + 1, len(idx))) ** (2 / 3)
                                   / s_[i] ** (2 / 3) for i in range(len(idx))) ** 1.5
    return {
        "spectral_complexity": ra,
        "spectral_product": prod,
        "l1": sum(float(np.abs(a).sum()) for a in mats),
        "frobenius": math.sqrt(sum(float((a * a).sum()) for a in mats)),
        "group21": sum(rows),
        "spectral_complexity_authors": auth,
    }


def exact_sigmas(model):
    return torch.stack([torch.linalg.svdvals(w.double())[0] for w in weight_matrices(model)])


# ------------------------------------------------------------------------------- the measures
@pytest.mark.parametrize("arch", ["cnn", "resnet", "vit"])
@pytest.mark.parametrize("init_scale", [1.0, 0.05])
def test_every_measure_matches_the_brute_force_reference(arch, init_scale):
    torch.manual_seed(11)
    model = build_model(arch, "digits", init_scale)
    mats = weight_matrices(model)
    ref_mats = ref_weight_matrices(model, arch)
    assert len(mats) == len(ref_mats)
    for a, b in zip(mats, ref_mats):
        np.testing.assert_array_equal(a.double().numpy(), b)
    got = ComplexityTracker(model).compute()
    assert tuple(got) == MEASURES
    assert all(type(v) is float for v in got.values())
    want = ref_measures(ref_mats, arch)
    for key in MEASURES:
        assert got[key] == pytest.approx(want[key], rel=1e-5), key
    assert got["spectral_complexity_authors"] != pytest.approx(got["spectral_complexity"]) \
        or arch == "vit"


def test_plain_stack_of_layers_needs_its_arch_and_then_uses_its_forms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 7),
                          nn.ReLU(), nn.Linear(7, 3))
    # no silent fallback to the CNN's formula for a model of no known class
    with pytest.raises(ValueError, match="no authors' complexity variant is known for a Sequential"):
        compute_measures(model)
    mats = [model[0].weight.detach().double().numpy().reshape(5, -1),
            model[3].weight.detach().double().numpy(), model[5].weight.detach().double().numpy()]
    got, want = compute_measures(model, "cnn"), ref_measures(mats, "cnn")
    for key in MEASURES:
        assert got[key] == pytest.approx(want[key], rel=1e-5), key


def test_multihead_attention_is_split_into_q_k_v_and_output():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2)
    mats = weight_matrices(mha)
    w = mha.in_proj_weight.detach()
    assert [tuple(m.shape) for m in mats] == [(8, 8)] * 4
    for got, want in zip(mats, [w[:8], w[8:16], w[16:], mha.out_proj.weight.detach()]):
        assert torch.equal(got, want)


def test_model_without_weight_matrices_is_rejected():
    with pytest.raises(ValueError, match="no Conv/Linear"):
        weight_matrices(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="unknown arch"):
        ComplexityTracker(nn.Linear(2, 2), arch="mlp")


def test_one_layer_model_spectral_complexity_is_its_row_group_norm():
    torch.manual_seed(1)
    layer = nn.Linear(40, 9)
    w = layer.weight.detach().double()
    sigma = torch.linalg.svdvals(w)[0].item()
    rows = torch.linalg.vector_norm(w, dim=1).sum().item()
    got = compute_measures(layer, "cnn")
    # R_A = ‖W‖_σ · (‖Wᵀ‖_{2,1}/‖W‖_σ)^{(2/3)·(3/2)} = ‖Wᵀ‖_{2,1}
    assert got["spectral_complexity"] == pytest.approx(sigma * (rows / sigma), rel=1e-6)
    assert got["spectral_product"] == pytest.approx(sigma, rel=1e-6)
    # the authors' later-layers sum is empty for the last (only) layer
    assert got["spectral_complexity_authors"] == 0.0


@pytest.mark.parametrize("arch", ["cnn", "resnet", "vit"])
def test_scaling_one_layer_by_c_scales_the_product_and_r_a_by_c(arch):
    torch.manual_seed(2)
    model = build_model(arch, "digits")
    before = compute_measures(model)
    c = 3.7
    # one weight matrix (not the fused Q/K/V weight, which holds three)
    target = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
              and not isinstance(m, QKVLinear)][1]
    with torch.no_grad():
        target.weight.mul_(c)
    after = compute_measures(model)
    assert after["spectral_product"] == pytest.approx(c * before["spectral_product"], rel=1e-5)
    # ‖Aᵀ‖_{2,1}/‖A‖_σ is scale invariant, so R_A is homogeneous of degree 1 in each layer
    assert after["spectral_complexity"] == pytest.approx(c * before["spectral_complexity"],
                                                         rel=1e-5)
    assert after["l1"] > before["l1"] and after["group21"] > before["group21"]


def test_zero_matrix_gives_zero_complexity():
    model = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 4))
    with torch.no_grad():
        model[0].weight.zero_()
    got = compute_measures(model, "cnn")
    assert got["spectral_complexity"] == 0.0 and got["spectral_product"] == 0.0
    assert got["l1"] > 0


def test_authors_norms_use_all_parameters_and_column_norms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    params = [p.detach().double() for p in model.parameters()]
    got = authors_norms(model)
    assert got["l1_authors"] == pytest.approx(sum(p.abs().sum().item() for p in params))
    assert got["frobenius_authors"] == pytest.approx(
        math.sqrt(sum((p * p).sum().item() for p in params)))
    assert got["group21_authors"] == pytest.approx(
        sum(torch.linalg.vector_norm(m.weight.detach().double(), dim=0).sum().item()
            for m in (model[0], model[2])))


# ------------------------------------------------------------------------------- log space
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(1e-3, 1e3), st.floats(1.0, 50.0)), min_size=1, max_size=12))
def test_log_space_agrees_with_linear_space(layers):
    sig = [s for s, _ in layers]
    g = [s * r for s, r in layers]  # ‖Aᵀ‖_{2,1} ≥ ‖A‖_σ
    linear = math.prod(sig) * sum((gi / si) ** (2 / 3) for gi, si in zip(g, sig)) ** 1.5
    assert math.exp(log_spectral_complexity(sig, g)) == pytest.approx(linear, rel=1e-10)
    later = [sum(g[j] for j in range(i + 1, len(g))) for i in range(len(g))]
    lin_auth = math.prod(sig) * sum((la ** (2 / 3)) / s ** (2 / 3)
                                    for la, s in zip(later, sig)) ** 1.5
    log_auth = log_spectral_complexity_later_sum(sig, g)
    assert (math.exp(log_auth) if lin_auth > 0 else 0.0) == pytest.approx(lin_auth, rel=1e-10)


def test_log_space_survives_products_that_overflow_or_underflow_linear_float64():
    for s in (1e-12, 1e12):  # 40 layers: 1e±480, beyond float64
        sig, g = [s] * 40, [5 * s] * 40
        naive = math.prod(sig)
        assert naive in (0.0, math.inf)
        want = 40 * math.log(s) + 1.5 * math.log(40 * 5 ** (2 / 3))
        assert log_spectral_complexity(sig, g) == pytest.approx(want, rel=1e-12)


def test_deep_small_scale_vit_is_finite_and_positive():
    torch.manual_seed(0)
    model = build_model("vit", "cifar10", init_scale=0.005)
    got = ComplexityTracker(model).compute()
    # 38 matrices of σ ~ 1e-3: R_A ~ 1e-100, far below float32 but representable in float64
    assert 0.0 < got["spectral_complexity"] < 1e-60
    assert all(math.isfinite(v) for v in got.values())


def test_formula_inputs_are_validated():
    with pytest.raises(ValueError, match="equally many"):
        log_spectral_complexity([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        log_spectral_complexity([-1.0], [1.0])


# -------------------------------------------------------------------------- spectral norms
@pytest.mark.parametrize("arch,dataset", [("cnn", "mnist"), ("resnet", "mnist"), ("vit", "mnist"),
                                          ("vit", "cifar10")])
def test_spectral_norms_within_1e_4_of_svdvals_cold_and_warm_on_every_layer(arch, dataset):
    torch.manual_seed(4)
    model = build_model(arch, dataset)
    tracker = ComplexityTracker(model)
    tracker.compute()
    exact = exact_sigmas(model)
    assert torch.all((tracker.last_sigmas - exact).abs() <= 1e-4 * exact)
    assert max(tracker.last_steps.values()) > 0  # some layers really were iterated
    # a small weight change, as between two logged steps; warm start from the last vectors
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-2 * p.abs().mean() * torch.randn(p.shape, generator=gen))
    tracker.compute()
    exact = exact_sigmas(model)
    assert torch.all((tracker.last_sigmas - exact).abs() <= 1e-4 * exact)


def test_warm_start_needs_fewer_steps_than_cold():
    torch.manual_seed(4)
    model = build_model("resnet", "mnist")
    tracker = ComplexityTracker(model)
    tracker.compute()
    cold = sum(tracker.last_steps.values())
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.001)
    tracker.compute()
    assert sum(tracker.last_steps.values()) < cold / 2


@pytest.mark.parametrize("gap", [0.0, 1e-7, 1e-3])
def test_clustered_top_singular_values(gap):
    # Near-degenerate spectra are where plain power iteration is slow; Lanczos must still deliver.
    gen = torch.Generator().manual_seed(0)
    m, n = 300, 700
    u, _ = torch.linalg.qr(torch.randn(m, m, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, m, generator=gen, dtype=torch.float64))
    s = torch.linspace(1.0, 0.5, m, dtype=torch.float64)
    s[1:5] = 1.0 - gap
    layer = nn.Linear(n, m, bias=False)
    with torch.no_grad():
        layer.weight.copy_(u @ torch.diag(s) @ v.T)
    tracker = ComplexityTracker(layer, arch="cnn", direct_max=0)
    tracker.compute()
    exact = torch.linalg.svdvals(layer.weight.detach().double())[0]
    assert abs(tracker.last_sigmas[0] - exact) <= 1e-4 * exact


def test_direct_and_iterative_paths_agree():
    torch.manual_seed(0)
    model = build_model("vit", "digits")
    a = ComplexityTracker(model, direct_max=0).compute()  # everything by Lanczos
    b = ComplexityTracker(model, direct_max=10_000).compute()  # everything by svdvals
    for key in MEASURES:
        assert a[key] == pytest.approx(b[key], rel=1e-5)


def test_rank_deficient_and_tiny_matrices():
    torch.manual_seed(0)
    layer = nn.Linear(50, 40, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(40, 2) @ torch.randn(2, 50))  # rank 2: Krylov breaks down
    tracker = ComplexityTracker(layer, arch="cnn", direct_max=0)
    tracker.compute()
    exact = torch.linalg.svdvals(layer.weight.detach().double())[0]
    assert abs(tracker.last_sigmas[0] - exact) <= 1e-4 * exact
    assert math.isfinite(tracker.compute()["spectral_complexity"])


# ------------------------------------------------------------------------ side-effect free
@pytest.mark.parametrize("arch", ["cnn", "resnet", "vit"])
def test_compute_leaves_parameters_buffers_mode_and_rng_unchanged(arch):
    torch.manual_seed(6)
    model = build_model(arch, "digits").train()
    model(torch.randn(8, 1, 8, 8))  # non-trivial BN running statistics
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    torch.set_num_threads(2)  # compute() runs single-threaded and must restore this
    tracker = ComplexityTracker(model)
    first = tracker.compute()
    second = tracker.compute()
    assert torch.equal(rng, torch.get_rng_state())
    assert torch.get_num_threads() == 2
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in model.parameters())
    for key in MEASURES:
        assert second[key] == pytest.approx(first[key], rel=1e-6)


def test_tracker_is_deterministic_across_instances():
    torch.manual_seed(6)
    model = build_model("cnn", "digits")
    assert ComplexityTracker(model).compute() == ComplexityTracker(model).compute()


def test_cli_prints_every_measure(capsys):
    assert measures.main(["--arch", "resnet", "--dataset", "digits", "--init-scale", "0.5"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert set(MEASURES) <= set(row) and row["arch"] == "resnet"


# ---------------------------------------------------------------- convolution operator norm
def test_conv_operator_norm_matches_the_dense_circular_convolution_matrix():
    torch.manual_seed(0)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    h, w = 5, 6
    basis = torch.eye(2 * h * w, dtype=torch.float64).reshape(-1, 2, h, w)
    out = nn.functional.conv2d(nn.functional.pad(basis, (1, 1, 1, 1), mode="circular"), weight)
    dense = out.reshape(2 * h * w, -1).T  # column i = image of basis vector i
    exact = torch.linalg.svdvals(dense)[0].item()
    assert measures.conv_operator_norm(weight, (h, w)) == pytest.approx(exact, rel=1e-10)
    with pytest.raises(ValueError, match="larger than the input"):
        measures.conv_operator_norm(weight, (2, 2))


def test_state_dict_round_trip_resumes_with_identical_results(tmp_path):
    torch.manual_seed(8)
    model = build_model("vit", "mnist")
    tracker = ComplexityTracker(model)
    tracker.compute()
    path = tmp_path / "tracker.pt"
    torch.save(tracker.state_dict(), path)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.01)
    uninterrupted = tracker.compute()
    resumed = ComplexityTracker(model)
    resumed.load_state_dict(torch.load(path, weights_only=True))
    assert resumed.compute() == uninterrupted  # bit-identical: same warm starts
    fresh = ComplexityTracker(model, seed=1).compute()
    for key in MEASURES:
        assert fresh[key] == pytest.approx(uninterrupted[key], rel=1e-5)
    with pytest.raises(ValueError, match="not a ComplexityTracker state"):
        resumed.load_state_dict({"groups": []})
