"""Architectures: sizes of the reference protocol, shapes, structure, init_scale and determinism."""
import json

import pytest
import torch
import torch.nn as nn

from workflow_scripts import models
from workflow_scripts.measures import weight_matrices
from workflow_scripts.models import (ARCHS, INPUT_SPECS, REFERENCE_PARAMS_M, build_model,
                                     count_parameters)

PAPER = ("mnist", "cifar10", "cifar100")
SMALL = ("digits", "teacher")


@pytest.mark.parametrize("arch,dataset", sorted(REFERENCE_PARAMS_M))
def test_parameter_counts_within_one_percent_of_the_reference_and_output_shape(arch, dataset):
    # meta tensors: real modules and shapes, no memory for the 35.7M-parameter CNN
    with torch.device("meta"):
        model = build_model(arch, dataset)
        c, h, w, classes = INPUT_SPECS[dataset]
        out = model(torch.empty(2, c, h, w))
    n = count_parameters(model)
    assert abs(n / 1e6 - REFERENCE_PARAMS_M[arch, dataset]) <= 0.01 * REFERENCE_PARAMS_M[arch, dataset]
    assert out.shape == (2, classes)


def test_parameter_counts_of_a_real_build_match_the_meta_build():
    torch.manual_seed(0)
    real = build_model("resnet", "mnist")
    with torch.device("meta"):
        meta = build_model("resnet", "mnist")
    assert count_parameters(real) == count_parameters(meta) == 701178


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dataset", SMALL)
def test_small_variants_run_on_8x8_inputs_and_learn(arch, dataset):
    torch.manual_seed(0)
    model = build_model(arch, dataset)
    assert count_parameters(model) < 100_000
    x = torch.randn(64, 1, 8, 8)
    y = torch.randint(0, 10, (64,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):  # memorising 64 random points must reduce the loss
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert model(x).shape == (64, 10)
    assert losses[-1] < 0.7 * losses[0]


def test_cnn_structure_matches_the_reference_table():
    with torch.device("meta"):
        cnn = {d: build_model("cnn", d) for d in PAPER}
    convs = {d: [(m.in_channels, m.out_channels) for m in cnn[d].modules()
                 if isinstance(m, nn.Conv2d)] for d in PAPER}
    fcs = {d: [(m.in_features, m.out_features) for m in cnn[d].modules()
               if isinstance(m, nn.Linear)] for d in PAPER}
    assert convs["mnist"] == [(1, 32), (32, 64), (64, 128)]
    assert fcs["mnist"] == [(25088, 512), (512, 10)]
    assert convs["cifar10"] == [(3, 32), (32, 64), (64, 128)]
    assert fcs["cifar10"] == [(32768, 512), (512, 10)]
    assert convs["cifar100"] == [(3, 64), (64, 128), (128, 256), (256, 512)]
    assert fcs["cifar100"] == [(32768, 1024), (1024, 512), (512, 100)]
    for d in PAPER:
        mods = list(cnn[d].modules())
        assert not any(isinstance(m, nn.BatchNorm2d) for m in mods)
        assert all(m.kernel_size == (3, 3) and m.padding == (1, 1)
                   for m in mods if isinstance(m, nn.Conv2d))
        n_pool = sum(isinstance(m, nn.MaxPool2d) for m in mods)
        assert n_pool == len(convs[d]) // 2
        dropouts = [m.p for m in mods if isinstance(m, nn.Dropout)]
        assert dropouts == ([0.1, 0.1] if d == "cifar100" else [])


def test_resnet_structure():
    with torch.device("meta"):
        r18 = build_model("resnet", "cifar10")
        r34 = build_model("resnet", "cifar100")
        rm = build_model("resnet", "mnist")
    for model, blocks in ((r18, 8), (r34, 16), (rm, 8)):
        assert sum(isinstance(m, models.BasicBlock) for m in model.modules()) == blocks
        assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
        assert model.stem[0].kernel_size == (3, 3) and model.stem[0].stride == (1, 1)
        strides = [stage[0].conv1.stride[0] for stage in model.stages]
        assert strides == [1, 2, 2, 2]
    assert [stage[0].conv1.out_channels for stage in rm.stages] == [16, 32, 64, 128]
    assert [len(s) for s in r34.stages] == [3, 4, 6, 3]
    # weight matrices: stem, 2 convs per block, 3 shortcut convs, head
    assert len(weight_matrices(r18)) == 1 + 16 + 3 + 1
    assert len(weight_matrices(r34)) == 1 + 32 + 3 + 1


def test_vit_structure():
    for dataset, (patch, dim, depth, heads) in {"mnist": (7, 128, 4, 4),
                                                "cifar10": (4, 192, 6, 3),
                                                "cifar100": (4, 256, 6, 4)}.items():
        with torch.device("meta"):
            vit = build_model("vit", dataset)
        assert vit.patch_embed.kernel_size == (patch, patch) == vit.patch_embed.stride
        assert vit.patch_embed.out_channels == dim
        assert len(vit.blocks) == depth and vit.blocks[0].attn.heads == heads
        assert vit.blocks[0].mlp[0].out_features == 4 * dim
        assert isinstance(vit.blocks[0].mlp[1], nn.GELU)
        assert not any(isinstance(m, nn.Dropout) for m in vit.modules())
        n_tokens = (INPUT_SPECS[dataset][1] // patch) ** 2 + 1
        assert vit.pos_embed.shape == (1, n_tokens, dim)
        # patch embedding, Q, K, V, O and two MLP matrices per block, head
        assert len(weight_matrices(vit)) == 1 + 6 * depth + 1


def test_vit_blocks_are_pre_layernorm():
    torch.manual_seed(0)
    block = models.Block(16, 2)
    x = torch.randn(3, 5, 16)
    # pre-LN: the residual stream is added to raw x, the sub-layers see LN(x)
    expected = x + block.attn(block.norm1(x))
    expected = expected + block.mlp(block.norm2(expected))
    torch.testing.assert_close(block(x), expected)


def test_attention_matches_a_reference_multi_head_computation():
    torch.manual_seed(0)
    att = models.Attention(12, 3)
    x = torch.randn(2, 5, 12)
    q, k, v = att.qkv(x).chunk(3, dim=-1)
    heads = []
    for h in range(3):
        sl = slice(4 * h, 4 * h + 4)
        a = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / 2.0, dim=-1)
        heads.append(a @ v[..., sl])
    torch.testing.assert_close(att(x), att.proj(torch.cat(heads, dim=-1)))


@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_same_init_and_the_global_rng_is_the_only_source(arch):
    torch.manual_seed(3)
    a = build_model(arch, "digits")
    torch.manual_seed(3)
    b = build_model(arch, "digits")
    torch.manual_seed(4)
    c = build_model(arch, "digits")
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pc)


@pytest.mark.parametrize("arch", ARCHS)
def test_init_scale_multiplies_exactly_the_conv_and_linear_weights(arch):
    torch.manual_seed(5)
    base = build_model(arch, "digits")
    torch.manual_seed(5)
    scaled = build_model(arch, "digits", init_scale=0.05)
    n_scaled = 0
    for (name, p0), (_, p1) in zip(base.named_parameters(), scaled.named_parameters()):
        owner = base.get_submodule(name.rsplit(".", 1)[0]) if "." in name else base
        if isinstance(owner, (nn.Conv2d, nn.Linear)) and name.endswith("weight"):
            torch.testing.assert_close(p1, 0.05 * p0, rtol=1e-6, atol=0)
            n_scaled += 1
        else:  # biases, BN/LN affine, CLS token, position embeddings
            assert torch.equal(p0, p1), name
    assert n_scaled >= 5
    # the weight matrices of the measures are exactly the scaled tensors (Q/K/V split of one)
    for w0, w1 in zip(weight_matrices(base), weight_matrices(scaled)):
        torch.testing.assert_close(w1, 0.05 * w0, rtol=1e-6, atol=0)


def test_teacher_uses_the_digits_variants():
    for arch in ARCHS:
        torch.manual_seed(0)
        a = build_model(arch, "digits")
        torch.manual_seed(0)
        b = build_model(arch, "teacher")
        assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


@pytest.mark.parametrize("kwargs,match", [
    (dict(arch="mlp", dataset="mnist"), "unknown arch"),
    (dict(arch="cnn", dataset="svhn"), "unknown dataset"),
    (dict(arch="cnn", dataset="mnist", init_scale=0.0), "init_scale"),
    (dict(arch="cnn", dataset="mnist", init_scale=float("nan")), "init_scale"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(**kwargs)


def test_cli_prints_parameter_counts(capsys):
    assert models.main(["--arch", "cnn", "vit", "--dataset", "digits"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["arch"], r["dataset"]) for r in rows] == [("cnn", "digits"), ("vit", "digits")]
    assert rows[0]["params"] == 39370
