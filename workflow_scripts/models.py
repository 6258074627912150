"""The three architectures of the paper (CNN, ResNet, ViT) for every dataset, built by name.

``build_model(arch, dataset, init_scale)`` returns a freshly initialised ``torch.nn.Module`` taking a
normalised float tensor (B, C, H, W) and returning logits (B, classes). The sizes follow the
reference protocol (the paper's appendix and the authors' public code; README,
"Architectures and complexity measures"); ``digits`` and ``teacher`` (8x8x1 inputs)
get small variants of each architecture that train in seconds on a CPU, for tests and the quick
config.

Initialisation. Every architecture first gets the authors' initialisation (CNN: PyTorch defaults;
ResNet: Kaiming-normal fan-out convs, BN γ=1 β=0, head N(0, 0.01²), zero head bias; ViT:
truncated-normal(0.02) Linear/Conv weights and CLS/position embeddings, zero biases, LayerNorm
γ=1 β=0, and the fused Q/K/V matrix Xavier-uniform with zero bias as nn.MultiheadAttention does).
Then ``init_scale`` multiplies the weight of every Conv2d and Linear (including the fused Q/K/V
matrix), i.e. exactly the weight matrices that enter the complexity measures (see
``measures.weight_matrices``). Biases, BatchNorm/LayerNorm affine parameters, the CLS token and the
position embeddings are NOT scaled. This is the authors' choice in their CNN code
(``_scale_initial_weights``: "scale all conv/linear weights, leave bias") applied uniformly to the
three architectures; it makes λ at initialisation scale as init_scale^L while leaving the
normalisation layers functional. All randomness comes from the global torch RNG (the caller seeds
it); nothing here reseeds.

Module registration order equals forward order, so ``measures.weight_matrices`` can list the weight
matrices by walking ``model.modules()``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

# (channels, height, width, classes) of the (already normalised) inputs of each dataset.
INPUT_SPECS = {
    "mnist": (1, 28, 28, 10),
    "cifar10": (3, 32, 32, 10),
    "cifar100": (3, 32, 32, 100),
    "digits": (1, 8, 8, 10),
    "teacher": (1, 8, 8, 10),
}
ARCHS = ("cnn", "resnet", "vit")

# Per-dataset hyper-parameters (reference protocol; the small ones are ours).
CNN_SPECS = {
    # conv channels after the input, FC hidden widths, dropout after each hidden FC ReLU
    "mnist": dict(convs=(32, 64, 128), hidden=(512,), dropout=0.0),
    "cifar10": dict(convs=(32, 64, 128), hidden=(512,), dropout=0.0),
    "cifar100": dict(convs=(64, 128, 256, 512), hidden=(1024, 512), dropout=0.1),
    "digits": dict(convs=(8, 16, 32), hidden=(64,), dropout=0.0),
}
RESNET_SPECS = {
    "mnist": dict(blocks=(2, 2, 2, 2), widths=(16, 32, 64, 128)),
    "cifar10": dict(blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512)),
    "cifar100": dict(blocks=(3, 4, 6, 3), widths=(64, 128, 256, 512)),
    "digits": dict(blocks=(1, 1, 1, 1), widths=(8, 16, 32, 64)),
}
VIT_SPECS = {
    "mnist": dict(patch=7, dim=128, depth=4, heads=4),
    "cifar10": dict(patch=4, dim=192, depth=6, heads=3),
    "cifar100": dict(patch=4, dim=256, depth=6, heads=4),
    "digits": dict(patch=2, dim=32, depth=2, heads=2),
}
# Parameter counts of the reference protocol (the paper's), in millions, for the tests.
REFERENCE_PARAMS_M = {
    ("cnn", "mnist"): 12.9, ("cnn", "cifar10"): 16.9, ("cnn", "cifar100"): 35.7,
    ("resnet", "mnist"): 0.70, ("resnet", "cifar10"): 11.2, ("resnet", "cifar100"): 21.3,
    ("vit", "mnist"): 0.80, ("vit", "cifar10"): 2.69, ("vit", "cifar100"): 4.79,
}


def _spec_key(dataset: str) -> str:
    # teacher-student data has the digits shape, so it shares the small variants
    return "digits" if dataset == "teacher" else dataset


# ----------------------------------------------------------------------------------------- CNN
class CNN(nn.Module):
    """Conv 3x3 (padding 1) + ReLU, 2x2 max-pool after every 2nd conv, no BatchNorm, then an MLP."""

    def __init__(self, in_ch: int, hw: tuple[int, int], convs, hidden, classes: int,
                 dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        c, (h, w) = in_ch, hw
        for i, out in enumerate(convs):
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(inplace=True)]
            if (i + 1) % 2 == 0:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = out
        self.features = nn.Sequential(*layers)
        mlp: list[nn.Module] = []
        prev = c * h * w
        for width in hidden:
            mlp += [nn.Linear(prev, width), nn.ReLU(inplace=True)]
            if dropout > 0:
                mlp.append(nn.Dropout(dropout))
            prev = width
        mlp.append(nn.Linear(prev, classes))
        self.classifier = nn.Sequential(*mlp)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


# -------------------------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU-3x3 conv-BN plus shortcut (1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem, no max-pool, stage strides (1, 2, 2, 2), avg-pool, linear."""

    def __init__(self, in_ch: int, blocks, widths, classes: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_ch, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, c = [], widths[0]
        for n, width, stride in zip(blocks, widths, (1, 2, 2, 2)):
            stage = []
            for j in range(n):
                stage.append(BasicBlock(c, width, stride if j == 0 else 1))
                c = width
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(c, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ----------------------------------------------------------------------------------------- ViT
class QKVLinear(nn.Linear):
    """The fused (3·dim × dim) query/key/value projection; ``measures`` splits it into Q, K, V."""
    n_split = 3


class Attention(nn.Module):
    """Multi-head self-attention with a fused QKV projection and an output projection.

    ``fused`` (True unless set otherwise): softmax(QKᵀ/√d)V by PyTorch's fused
    ``scaled_dot_product_attention`` kernel. False: the same formula written out as
    matmul-softmax-matmul, for ``torch.vmap`` (the vmap engine, ``engines.StackedModels``), which has
    no batching rule for the fused kernels and would loop over the seeds. The two round differently,
    so each engine keeps its own (and its trajectories stay as they were).
    """

    def __init__(self, dim: int, heads: int, fused: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.fused = fused
        self.qkv = QKVLinear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = torch.softmax((q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5), dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + MLP(LN(x)) with GELU, ratio 4."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Conv patch embedding, CLS token, learned positions, pre-LN blocks, final LN, linear head."""

    def __init__(self, in_ch: int, image: int, patch: int, dim: int, depth: int, heads: int,
                 classes: int):
        super().__init__()
        if image % patch:
            raise ValueError(f"patch size {patch} does not divide image size {image}")
        self.patch_embed = nn.Conv2d(in_ch, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (image // patch) ** 2, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, QKVLinear):  # as nn.MultiheadAttention's in_proj
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


# ------------------------------------------------------------------------------------- factory
def build_model(arch: str, dataset: str, init_scale: float = 1.0) -> nn.Module:
    """A freshly initialised ``arch`` for ``dataset`` (see the module docstring for the init).

    Uses the global torch RNG; seed it before calling for a reproducible initialisation.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")
    if dataset not in INPUT_SPECS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {tuple(INPUT_SPECS)}")
    if not (isinstance(init_scale, (int, float)) and math.isfinite(init_scale) and init_scale > 0):
        raise ValueError(f"init_scale must be a positive finite number, got {init_scale!r}")
    c, h, w, classes = INPUT_SPECS[dataset]
    key = _spec_key(dataset)
    if arch == "cnn":
        s = CNN_SPECS[key]
        model = CNN(c, (h, w), s["convs"], s["hidden"], classes, s["dropout"])
    elif arch == "resnet":
        s = RESNET_SPECS[key]
        model = ResNet(c, s["blocks"], s["widths"], classes)
    else:
        s = VIT_SPECS[key]
        if h != w:
            raise ValueError(f"ViT needs square inputs, {dataset!r} is {h}x{w}")
        model = ViT(c, h, s["patch"], s["dim"], s["depth"], s["heads"], classes)
    if init_scale != 1.0:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.mul_(init_scale)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workflow_scripts.models",
        description="Build architectures and print their parameter counts (JSON lines).")
    parser.add_argument("--arch", choices=ARCHS, nargs="+", default=list(ARCHS))
    parser.add_argument("--dataset", choices=tuple(INPUT_SPECS), nargs="+",
                        default=["mnist", "cifar10", "cifar100"])
    parser.add_argument("--init-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    for arch in args.arch:
        for dataset in args.dataset:
            model = build_model(arch, dataset, args.init_scale)
            print(json.dumps({"arch": arch, "dataset": dataset,
                              "params": count_parameters(model),
                              "reference_M": REFERENCE_PARAMS_M.get((arch, dataset))}))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
