"""The plain research training loop that the training engine is measured against (baseline only).

What a typical research script does, and what the engine replaces: a torchvision-style dataset
decoding every sample through PIL with per-sample ``ToTensor``/``Normalize`` transforms, a
``DataLoader`` with worker processes (batch 128, shuffled), one process per seed, and evaluation
(training subset, validation split, test set) through the same kind of loader at every logged step.
It trains the same cell as ``workflow_scripts.train``: same model, initial scale, optimiser,
subset and validation indices (``split_indices``), number of steps, evaluation steps and complexity
measures; only its random streams (initialisation ``torch.manual_seed(seed)``, the loader's
shuffling) are its own, so its trajectories agree with the engine's in distribution, not bit for bit
(tests/test_engine.py checks the agreement; bench/bench_train_cpu.py times both).

    .venv/bin/python bench/reference_loop.py --cell "$(python -m workflow_scripts.config cells \
        config/test.yaml --experiment main --arch cnn --dataset digits --P 240 --seeds 0 | jq -c '.[0]')" \
        --data results/datasets/digits.npz --out /tmp/ref_seed0.parquet --workers 2

``--mnist-root DIR`` reads the images through ``torchvision.datasets.MNIST`` (raw idx files under
DIR/MNIST/raw) instead of the canonical file, as a research script would.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms

from workflow_scripts.datasets import load_canonical
from workflow_scripts.engines import make_optimizer
from workflow_scripts.measures import ComplexityTracker
from workflow_scripts.models import build_model
from workflow_scripts.train import eval_steps, split_indices


class ArrayImages(Dataset):
    """uint8 (N, C, H, W) images (C = 1 or 3) served one by one as PIL images through
    ``transform``, the way torchvision's MNIST and CIFAR datasets do."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform):
        if x.dtype != np.uint8 or x.shape[1] not in (1, 3):
            raise ValueError(f"ArrayImages takes uint8 images with 1 or 3 channels, got {x.dtype} "
                             f"{x.shape}")
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img = self.x[i, 0] if self.x.shape[1] == 1 else self.x[i].transpose(1, 2, 0)
        return self.transform(Image.fromarray(img)), int(self.y[i])


def datasets_for(data_path=None, mnist_root=None):
    """(train, test) datasets with per-sample ToTensor/Normalize, and the train-split size."""
    if (data_path is None) == (mnist_root is None):
        raise ValueError("give exactly one of data_path (canonical .npz) and mnist_root")
    if mnist_root is not None:
        from torchvision.datasets import MNIST
        probe = MNIST(mnist_root, train=True, download=False)
        x = probe.data.numpy().astype(np.float64) / 255.0
        tf = transforms.Compose([transforms.ToTensor(),
                                 transforms.Normalize((x.mean(),), (x.std(),))])
        return (MNIST(mnist_root, train=True, transform=tf, download=False),
                MNIST(mnist_root, train=False, transform=tf, download=False))
    data = load_canonical(data_path)
    tf = transforms.Compose([transforms.ToTensor(),
                             transforms.Normalize(data.mean.tolist(), data.std.tolist())])
    return ArrayImages(data.x_train, data.y_train, tf), ArrayImages(data.x_test, data.y_test, tf)


@torch.no_grad()
def evaluate(model, loader, device="cpu") -> tuple[float, float]:
    model.eval()
    loss_sum, wrong, n = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        wrong += (logits.argmax(1) != y).sum().item()
        n += len(y)
    model.train()
    return wrong / n, loss_sum / n


def train_reference(cell: dict, train_set, test_set, workers: int = 2, log=print,
                    device="cpu") -> pd.DataFrame:
    """Train ``cell`` the plain way; return its trajectory (the engine's columns)."""
    training, seed, P = cell["training"], cell["seed"], cell["P"]
    subset, val = split_indices(len(train_set), cell["data"]["val_size"],
                                cell["data"]["split_seed"], P, seed)
    torch.manual_seed(seed)
    model = build_model(cell["arch"], cell["dataset"], training["init_scale"]).to(device)
    optimizer = make_optimizer(model, training, fused=False)  # torch's default, as scripts have it
    tracker = ComplexityTracker(model)
    batch = training["batch_size"]

    def loader(ds, shuffle=False):
        gen = torch.Generator().manual_seed(seed) if shuffle else None
        return DataLoader(ds, batch_size=batch, shuffle=shuffle, num_workers=workers,
                          generator=gen, pin_memory=str(device).startswith("cuda"))

    train_loader = loader(Subset(train_set, subset.tolist()), shuffle=True)
    eval_loaders = {"train": loader(Subset(train_set, subset.tolist())),
                    "val": loader(Subset(train_set, val.tolist())), "test": loader(test_set)}
    steps_per_epoch = math.ceil(P / batch)
    total = training["epochs"] * steps_per_epoch
    evals = set(int(s) for s in eval_steps(total, training["eval_points"]))
    rows, step, wall = [], 0, 0.0

    def record():
        res = {k: evaluate(model, ld, device) for k, ld in eval_loaders.items()}
        measures = tracker.compute()
        rows.append({"step": step, "epoch": step / steps_per_epoch, "wall_time": wall,
                     **{f"{k}_{q}": res[k][j] for k in res for j, q in enumerate(("error", "loss"))},
                     "lambda": measures[training["measure"]], **measures})
        log(f"seed {seed}: step {step}/{total} test_err {res['test'][0]:.4f}")

    record()
    model.train()
    for _ in range(training["epochs"]):
        t0 = time.perf_counter()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            step += 1
            if step in evals:
                wall += time.perf_counter() - t0
                record()
                t0 = time.perf_counter()
        wall += time.perf_counter() - t0
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench/reference_loop.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", required=True, help="one resolved cell config (JSON object)")
    parser.add_argument("--data", help="canonical dataset .npz")
    parser.add_argument("--mnist-root", help="torchvision MNIST root instead of --data")
    parser.add_argument("--out", required=True, help="trajectory .parquet (plain, no footer)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cell = json.loads(args.cell)
    train_set, test_set = datasets_for(args.data, args.mnist_root)
    df = train_reference(cell, train_set, test_set, args.workers,
                         log=lambda m: print(m, file=sys.stderr, flush=True), device=args.device)
    if args.device.startswith("cuda"):
        print(f"peak device memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB",
              file=sys.stderr, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
