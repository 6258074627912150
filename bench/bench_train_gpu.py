"""Benchmark 2 of issue 8: training throughput on a GPU, in cells per hour.

For CNN-MNIST and ViT-CIFAR-10 at P = 1,000 (main-grid hyper-parameters of config/config.yaml):
- engine: ``python -m workflow_scripts.train`` with 8 seeds in one process, in each variant of
  ``--variants`` (``auto`` stacks the seeds with vmap on CUDA; ``+bf16`` adds ``--precision bf16``,
  ``+nocl`` ``--channels-last off``, ``+compile`` ``--compile``);
- reference: ``bench/reference_loop.py``, one process per seed (``--ref-seeds`` of them, one after
  the other), per-sample ToTensor/Normalize, DataLoader with workers, evaluation through loaders.
Both train the same cells for ``--epochs`` epochs with full evaluation at every logged step; cells
per hour = cells trained / wall time of the job(s), process start and data loading included. The
target is engine / reference >= 20x. Peak memory: the process's ``torch.cuda.max_memory_allocated``
on CUDA (the 8-seed engine job against 8 x one reference process), ru_maxrss on CPU.

Inputs are generated (random pixels and labels, MNIST and CIFAR-10 shapes and split sizes of the
canonical files; no download): the cost of a step does not depend on what is learnt.

    .venv/bin/python bench/bench_train_gpu.py --device cuda            # the real benchmark
    .venv/bin/python bench/bench_train_gpu.py --device cpu --quick     # proves the script runs
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_train_cpu import timed_with_stderr  # noqa: E402
from workflow_scripts import config as cfg  # noqa: E402
from workflow_scripts.datasets import checksum_path, write_canonical  # noqa: E402
from workflow_scripts.io import write_json  # noqa: E402

CASES = {"cnn-mnist": ("cnn", "mnist", (1, 28, 28)), "vit-cifar10": ("vit", "cifar10", (3, 32, 32))}


def synthetic_canonical(path: Path, shape, n_train: int, n_test: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train).astype(np.int64),
              "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test).astype(np.int64)}
    sha = write_canonical(arrays, path)
    write_json({"dataset": path.stem, "sha256": sha}, checksum_path(path))
    return path


def case_cells(arch, dataset, P, seeds, epochs, eval_points, val_size, device) -> list[dict]:
    config = cfg.load_config(REPO / "config" / "config.yaml")
    out = []
    for s in range(seeds):
        c = cfg.resolve_cell(config, "main", arch, dataset, 1500 if dataset == "mnist" else 4000, s)
        c["P"] = P
        c["data"]["val_size"] = val_size
        c["training"].update(epochs=epochs, eval_points=eval_points, device=device,
                             checkpoint_minutes=1e9)
        out.append(c)
    return out


def variant_flags(variant: str) -> list[str]:
    engine, *extras = variant.split("+")
    flags = ["--engine", engine]
    known = {"bf16": ["--precision", "bf16"], "nocl": ["--channels-last", "off"],
             "compile": ["--compile"]}
    for e in extras:
        if e not in known:
            raise ValueError(f"unknown variant part {e!r} in {variant!r}; known: {sorted(known)}")
        flags += known[e]
    return flags


def peak_mib(stderr: str, rss: float, device: str) -> float:
    if device == "cuda":
        found = re.findall(r"peak device memory (\d+) MiB", stderr)
        return float(found[-1]) if found else float("nan")
    return rss


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (1 epoch, 2 seeds, small eval sets): a smoke run")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--P", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=8, help="seeds in the engine's process")
    parser.add_argument("--ref-seeds", type=int, default=2, help="reference processes timed")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eval-points", type=int, default=40)
    parser.add_argument("--n-test", type=int, default=10000)
    parser.add_argument("--val-size", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4, help="reference DataLoader workers")
    parser.add_argument("--variants", nargs="+", default=["auto", "auto+bf16", "sequential"])
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.ref_seeds, args.epochs, args.eval_points = 2, 1, 1, 4
        args.n_test, args.val_size, args.P, args.workers = 200, 100, 256, 1
        if args.device == "cpu":
            args.variants = ["auto", "vmap"]

    tmp = Path(tempfile.mkdtemp(prefix="bench_train_gpu_"))
    py = sys.executable
    print(f"# device {args.device}, P={args.P}, {args.epochs} epochs, eval points "
          f"{args.eval_points}, test {args.n_test}, val {args.val_size}", flush=True)
    rows = []
    for case in args.cases:
        arch, dataset, shape = CASES[case]
        npz = synthetic_canonical(tmp / f"{dataset}.npz", shape, args.val_size + args.P + 1000,
                                  args.n_test)
        cells = case_cells(arch, dataset, args.P, args.seeds, args.epochs, args.eval_points,
                           args.val_size, args.device)
        ref_wall, ref_peak = 0.0, 0.0
        for c in cells[:args.ref_seeds]:
            wall, rss, err = timed_with_stderr(
                [py, str(REPO / "bench" / "reference_loop.py"), "--cell", json.dumps(c),
                 "--data", str(npz), "--out", str(tmp / f"ref_{case}_{c['seed']}.parquet"),
                 "--workers", str(args.workers), "--device", args.device])
            ref_wall += wall
            ref_peak = max(ref_peak, peak_mib(err, rss, args.device))
        ref_rate = args.ref_seeds * 3600 / ref_wall
        rows.append((case, "reference, 1 seed/process", ref_rate, 1.0,
                     f"{ref_peak:.0f} MiB per process ({args.seeds} processes: "
                     f"{args.seeds * ref_peak:.0f})"))
        print(f"{case} reference: {ref_wall:.1f} s for {args.ref_seeds} cells", flush=True)
        for variant in args.variants:
            out = tmp / f"engine_{case}_{variant.replace('+', '_')}"
            wall, rss, err = timed_with_stderr(
                [py, "-m", "workflow_scripts.train", "--cells", json.dumps(cells), "--data",
                 str(npz), "--out", str(out), "--checkpoint-dir", str(out) + "_ckpt",
                 "--device", args.device, *variant_flags(variant)])
            rate = len(cells) * 3600 / wall
            rows.append((case, f"engine {variant}, {len(cells)} seeds/process", rate,
                         rate / ref_rate, f"{peak_mib(err, rss, args.device):.0f} MiB"))
            print(f"{case} engine {variant}: {wall:.1f} s for {len(cells)} cells", flush=True)

    print("\n| case | job | cells/hour | vs reference | peak memory |")
    print("|---|---|---|---|---|")
    for case, job, rate, ratio, mem in rows:
        print(f"| {case} | {job} | {rate:.0f} | {ratio:.1f}x | {mem} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
