"""Cost of logging the complexity measures, relative to training.

For each (architecture, dataset) it builds the model, times the first ``ComplexityTracker.compute()``
(cold start), trains one epoch at P samples (batch 128, Adam lr 1e-3; AdamW lr 3e-4 for the ViT, as
in the reference protocol) on synthetic inputs of the dataset's shape, then times ``compute()`` at
that logged step (warm start from the first call's singular vectors). It prints a table with the
warm cost as a percentage of the epoch; the target is under 5 %.

    .venv/bin/python bench/bench_measures.py                      # CNN/ResNet/ViT × MNIST/CIFAR-10
    .venv/bin/python bench/bench_measures.py --datasets cifar100 --threads 2
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

from workflow_scripts.measures import ComplexityTracker
from workflow_scripts.models import ARCHS, INPUT_SPECS, build_model, count_parameters


def bench_one(arch: str, dataset: str, P: int, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    c, h, w, classes = INPUT_SPECS[dataset]
    model = build_model(arch, dataset)
    x = torch.randn(P, c, h, w)
    y = torch.randint(0, classes, (P,))
    if arch == "vit":
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.0)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tracker = ComplexityTracker(model)
    t0 = time.perf_counter()
    tracker.compute()
    cold = time.perf_counter() - t0
    cold_steps = max(tracker.last_steps.values())

    model.train()
    t0 = time.perf_counter()
    for idx in torch.randperm(P).split(batch):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    epoch = time.perf_counter() - t0

    model.eval()
    warm = []
    for r in range(repeats):  # the first repeat is the real logged step; later ones are re-reads
        t0 = time.perf_counter()
        tracker.compute()
        warm.append(time.perf_counter() - t0)
        if r == 0:
            warm_steps = max(tracker.last_steps.values())
    return {"arch": arch, "dataset": dataset, "params": count_parameters(model),
            "matrices": len(tracker.last_sigmas), "epoch_s": epoch, "cold_s": cold,
            "cold_max_steps": cold_steps, "warm_s": warm[0], "warm_max_steps": warm_steps,
            "warm_min_s": min(warm), "warm_pct_epoch": 100 * warm[0] / epoch}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS))
    p.add_argument("--datasets", nargs="+", choices=tuple(INPUT_SPECS),
                   default=["mnist", "cifar10"])
    p.add_argument("--P", type=int, default=1000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="warm compute() calls timed")
    p.add_argument("--json", action="store_true", help="also print one JSON line per row")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, P={args.P}, batch {args.batch}")
    head = (f"{'arch':7} {'dataset':9} {'params':>10} {'mats':>5} {'epoch s':>8} {'cold s':>7} "
            f"{'warm s':>7} {'steps':>5} {'warm/epoch':>10}")
    print(head)
    print("-" * len(head))
    rows = []
    for dataset in args.datasets:
        for arch in args.archs:
            r = bench_one(arch, dataset, args.P, args.batch, args.repeats)
            rows.append(r)
            print(f"{arch:7} {dataset:9} {r['params']:>10,} {r['matrices']:>5} {r['epoch_s']:>8.2f} "
                  f"{r['cold_s']:>7.3f} {r['warm_s']:>7.3f} {r['warm_max_steps']:>5} "
                  f"{r['warm_pct_epoch']:>9.2f}%", flush=True)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    worst = max(r["warm_pct_epoch"] for r in rows)
    print(f"worst warm compute() / epoch: {worst:.2f}% (target < 5%)")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
