"""Input normalisation and training augmentation, on the device, batch-wise.

``training.normalization`` and ``training.augmentation`` (config schema) choose between our
defaults (each dataset by its own per-channel statistics; no augmentation) and the authors' protocol
for the cell's (arch, dataset), read from ``datasets.AUTHORS_INPUTS``.

The authors augment PIL images before ``ToTensor``/``Normalize`` in a DataLoader. Here the data is
one resident tensor of normalised images, and a training batch is augmented in the engine's step
with the same parameter ranges and nearest-pixel sampling:

- ``crop_flip`` (RandomCrop(32, padding=4) + RandomHorizontalFlip()): one gather per batch; offsets
  in [0, 2·pad] and a fair coin per image, as ``RandomCrop.get_params`` and the flip draw them.
- ``affine`` (RandomAffine(degrees=10, translate=(0.1, 0.1))): angle uniform in [−10°, 10°],
  translation ``round(uniform(−0.1·W, 0.1·W))`` whole pixels (likewise for H), scale 1, no shear,
  as ``RandomAffine.get_params``; the image through ``grid_sample`` (nearest) with the grid of
  ``torchvision.transforms.v2.functional.affine`` on tensors (its ``_get_inverse_affine_matrix``
  about the centre, ``_affine_grid``).

torchvision pads and fills with black before normalising; on normalised images the fill is what a
zero pixel becomes, ``−mean/std`` per channel. The parameters of a batch come from a CPU generator
seeded by the caller (the engines: from seed and step), so they are the same on any device, for a
resumed run and for both engines (tests/test_augment.py).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import AUTHORS_INPUTS

AUGMENTATIONS = ("crop_flip", "affine")
CROP_PADDING = 4
AFFINE_DEGREES = 10.0
AFFINE_TRANSLATE = 0.1


def _authors(arch: str, dataset: str, key: str):
    if (arch, dataset) not in AUTHORS_INPUTS:
        raise ValueError(f"training.{key}: the authors' protocol has no entry for {arch} on "
                         f"{dataset!r}; allowed datasets {sorted({d for _, d in AUTHORS_INPUTS})}")
    return AUTHORS_INPUTS[(arch, dataset)]


def normalisation(training: dict, arch: str, dataset: str, data) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per channel (float32) applied to images scaled to [0, 1]: the canonical file's
    own statistics (``dataset``) or the authors' constants (``authors``)."""
    if training["normalization"] == "dataset":
        return np.asarray(data.mean, np.float32), np.asarray(data.std, np.float32)
    if training["normalization"] != "authors":
        raise ValueError(f"training.normalization: unknown {training['normalization']!r}; "
                         "expected 'authors' or 'dataset'")
    mean, std, _ = _authors(arch, dataset, "normalization")
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def augmentation(training: dict, arch: str, dataset: str) -> str | None:
    """The training augmentation of a cell: None, ``crop_flip`` or ``affine``."""
    if training["augmentation"] == "none":
        return None
    if training["augmentation"] != "authors":
        raise ValueError(f"training.augmentation: unknown {training['augmentation']!r}; "
                         "expected 'authors' or 'none'")
    return _authors(arch, dataset, "augmentation")[2]


# ------------------------------------------------------------------------- parameters
def sample_params(kind: str, n: int, generator: torch.Generator, height: int, width: int) -> dict:
    """Random parameters of ``n`` images (CPU tensors), drawn as torchvision draws them."""
    if kind == "crop_flip":
        span = 2 * CROP_PADDING + 1  # RandomCrop.get_params: randint(0, h + 2·pad − h + 1)
        return {"top": torch.randint(0, span, (n,), generator=generator),
                "left": torch.randint(0, span, (n,), generator=generator),
                "flip": torch.rand(n, generator=generator) < 0.5}
    if kind == "affine":
        def uniform(bound):
            return (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        angle = uniform(AFFINE_DEGREES)
        # Python's round and torch.round both round half to even
        tx = torch.round(uniform(AFFINE_TRANSLATE * width))
        ty = torch.round(uniform(AFFINE_TRANSLATE * height))
        return {"angle": angle, "tx": tx, "ty": ty}
    raise ValueError(f"unknown augmentation {kind!r}; expected one of {AUGMENTATIONS}")


# ------------------------------------------------------------------------- transforms
def crop_flip(x: torch.Tensor, top, left, flip, fill: torch.Tensor,
              padding: int = CROP_PADDING) -> torch.Tensor:
    """Per image b: pad by ``padding`` with ``fill``, crop back to H×W at (top[b], left[b]), then
    mirror horizontally where flip[b]. One gather; out-of-image pixels take ``fill``."""
    B, C, H, W = x.shape
    dev = x.device
    top, left, flip = top.to(dev), left.to(dev), flip.to(dev)
    ar_h, ar_w = torch.arange(H, device=dev), torch.arange(W, device=dev)
    rows = top[:, None] - padding + ar_h  # source row in the unpadded image, (B, H)
    cols = left[:, None] - padding + torch.where(flip[:, None], W - 1 - ar_w, ar_w)  # (B, W)
    inside = (((rows >= 0) & (rows < H))[:, :, None]
              & ((cols >= 0) & (cols < W))[:, None, :])  # (B, H, W)
    flat = rows.clamp(0, H - 1)[:, :, None] * W + cols.clamp(0, W - 1)[:, None, :]
    out = x.reshape(B, C, H * W).gather(2, flat.view(B, 1, H * W).expand(B, C, H * W))
    return torch.where(inside[:, None], out.view(B, C, H, W), fill.view(1, C, 1, 1))


def affine_grid(angle, tx, ty, height: int, width: int, device) -> torch.Tensor:
    """Sampling grid (B, H, W, 2) of torchvision's tensor ``affine`` (rotation by ``angle``
    degrees about the image centre, then translation by (tx, ty) pixels; scale 1, no shear)."""
    rot = torch.deg2rad(angle.to(device=device, dtype=torch.float64))
    cos, sin = torch.cos(rot), torch.sin(rot)
    tx, ty = (t.to(device=device, dtype=torch.float64) for t in (tx, ty))
    # _get_inverse_affine_matrix(center=[0, 0], angle, [tx, ty], 1, [0, 0]), rows of (x, y, 1);
    # _affine_grid: output pixel centres relative to the image centre, rescaled to [-1, 1]
    m = torch.stack([torch.stack([cos, sin, -cos * tx - sin * ty], 1) / (0.5 * width),
                     torch.stack([-sin, cos, sin * tx - cos * ty], 1) / (0.5 * height)], 1)
    m = m.to(torch.float32)
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=device)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=device)
    xs, ys = xs.view(1, 1, width), ys.view(1, height, 1)
    gx = xs * m[:, 0, 0, None, None] + ys * m[:, 0, 1, None, None] + m[:, 0, 2, None, None]
    gy = xs * m[:, 1, 0, None, None] + ys * m[:, 1, 1, None, None] + m[:, 1, 2, None, None]
    return torch.stack([gx, gy], -1)


def affine(x: torch.Tensor, angle, tx, ty, fill: torch.Tensor) -> torch.Tensor:
    """Per image b: rotate by angle[b] degrees and translate by (tx[b], ty[b]) pixels, nearest
    pixel; pixels from outside the image take ``fill`` (torchvision's mask channel)."""
    B, C, H, W = x.shape
    grid = affine_grid(angle, tx, ty, H, W, x.device)
    with_mask = torch.cat([x, torch.ones(B, 1, H, W, dtype=x.dtype, device=x.device)], 1)
    out = F.grid_sample(with_mask, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    image, mask = out[:, :C], out[:, C:]
    return torch.where(mask < 0.5, fill.view(1, C, 1, 1), image)


def apply(kind: str, x: torch.Tensor, params: dict, fill: torch.Tensor) -> torch.Tensor:
    if kind == "crop_flip":
        return crop_flip(x, params["top"], params["left"], params["flip"], fill)
    if kind == "affine":
        return affine(x, params["angle"], params["tx"], params["ty"], fill)
    raise ValueError(f"unknown augmentation {kind!r}; expected one of {AUGMENTATIONS}")


class BatchAugmenter:
    """The training augmentation of a job's cells (one kind, one normalisation).

    ``augmenter(x, stream_seeds)``: x holds S equal blocks of images, block s for the cell whose
    parameters come from ``torch.Generator().manual_seed(stream_seeds[s])``; an image's result
    depends only on it and its block's parameters, so one cell's augmented batch is the same
    whether it is augmented alone (sequential engine) or stacked (vmap engine).
    """

    def __init__(self, kind: str, mean: np.ndarray, std: np.ndarray, device):
        if kind not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {kind!r}; expected one of {AUGMENTATIONS}")
        self.kind = kind
        # what a black (0) pixel becomes after normalising
        self.fill = torch.as_tensor(-mean / std, dtype=torch.float32, device=device)

    def params(self, stream_seeds, per_seed: int, height: int, width: int) -> dict:
        blocks = [sample_params(self.kind, per_seed, torch.Generator().manual_seed(int(s)),
                                height, width) for s in stream_seeds]
        return {k: torch.cat([b[k] for b in blocks]) for k in blocks[0]}

    def __call__(self, x: torch.Tensor, stream_seeds) -> torch.Tensor:
        n, _, H, W = x.shape
        if n % len(stream_seeds):
            raise ValueError(f"{n} images do not split into {len(stream_seeds)} equal blocks")
        params = self.params(stream_seeds, n // len(stream_seeds), H, W)
        return apply(self.kind, x, {k: _to_device(v, x.device) for k, v in params.items()},
                     self.fill)


def _to_device(t: torch.Tensor, device) -> torch.Tensor:
    """A CPU tensor on ``device`` without a host sync: an ordinary copy to CUDA waits for the work
    queued before it (the previous step); one from pinned memory does not."""
    if device.type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)
