"""Cost of the on-device training augmentation as a fraction of a training step (target <= 5%).

For each architecture on MNIST- and CIFAR-shaped inputs (the paper's models, batch 128): one
training step as the sequential engine takes it (forward, cross-entropy, backward, fused Adam;
channels_last for the conv nets) against the augmentation of its batch as the engine does it
(``BatchAugmenter`` with the stream seed of (seed, step), parameters drawn on the CPU, the transform
on the device): the authors' RandomAffine on 28x28, their random crop + flip on 32x32. Every
architecture is timed with the augmentation of its input shape, whether or not the authors used it
for that pair (the CNN has none; the fraction is then an upper bound of nothing).

Timing: on a CPU, the calling thread's CPU time (``time.thread_time``) with torch on one thread, so
other processes on a shared machine do not count; steps and augmentations are interleaved and the
median is reported. On CUDA: wall time between synchronisations.

    .venv/bin/python bench/bench_augment.py                    # CPU, every arch x {mnist, cifar10}
    .venv/bin/python bench/bench_augment.py --device cuda --steps 20 --augs 200
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from workflow_scripts.augment import BatchAugmenter  # noqa: E402
from workflow_scripts.datasets import AUTHORS_INPUTS  # noqa: E402
from workflow_scripts.models import build_model  # noqa: E402
from workflow_scripts.engines import STREAM_AUGMENT, make_optimizer, stream_seed  # noqa: E402

SHAPES = {"mnist": (1, 28, 28, 10, "affine"), "cifar10": (3, 32, 32, 10, "crop_flip")}


def timer(device):
    if device.type == "cuda":
        def now():
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return now
    return time.thread_time


def measure(arch: str, dataset: str, device, batch: int, steps: int, augs: int) -> dict:
    C, H, W, n_classes, kind = SHAPES[dataset]
    mean, std, _ = AUTHORS_INPUTS[(arch, dataset)]
    aug = BatchAugmenter(kind, np.asarray(mean, np.float32), np.asarray(std, np.float32), device)
    torch.manual_seed(0)
    model = build_model(arch, dataset).to(device)
    channels_last = arch in ("cnn", "resnet")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0})
    x = torch.randn(batch, C, H, W, device=device)
    y = torch.randint(0, n_classes, (batch,), device=device)
    now = timer(device)

    def step():
        opt.zero_grad(set_to_none=True)
        xb = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        F.cross_entropy(model(xb), y).backward()
        opt.step()

    def augment(i):
        return aug(x, [stream_seed(0, STREAM_AUGMENT, i)])

    step(), augment(0)  # warm-up: allocations, kernel selection
    t_step, t_aug = [], []
    per_step = max(1, augs // steps)
    for s in range(steps):
        t0 = now()
        step()
        t_step.append(now() - t0)
        t0 = now()
        for i in range(per_step):
            augment(s * per_step + i)
        t_aug.append((now() - t0) / per_step)
    step_s, aug_s = statistics.median(t_step), statistics.median(t_aug)
    return {"arch": arch, "dataset": dataset, "augmentation": kind, "step_ms": 1e3 * step_s,
            "augment_ms": 1e3 * aug_s, "fraction": aug_s / step_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--archs", nargs="+", default=["cnn", "resnet", "vit"])
    ap.add_argument("--datasets", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per model")
    ap.add_argument("--augs", type=int, default=50, help="timed augmentations per model")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    what = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{args.threads} thread(s), thread CPU time")
    print(f"device {device} ({what}), batch {args.batch}")
    print(f"{'arch':7} {'data':8} {'augmentation':12} {'step ms':>9} {'augment ms':>11} "
          f"{'fraction':>9}")
    worst = 0.0
    for dataset in args.datasets:
        for arch in args.archs:
            r = measure(arch, dataset, device, args.batch, args.steps, args.augs)
            worst = max(worst, r["fraction"])
            print(f"{arch:7} {dataset:8} {r['augmentation']:12} {r['step_ms']:9.1f} "
                  f"{r['augment_ms']:11.3f} {100 * r['fraction']:8.2f}%", flush=True)
    print(f"worst: {100 * worst:.2f}% of a training step (target <= 5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
