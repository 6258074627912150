"""Benchmark 1 of issue 8: the training engine against the plain research loop, on a CPU.

Same cell on both sides: the CNN for MNIST (12.9 M parameters, init scale 0.05, Adam lr 1e-3,
batch 128) at P = 1,000 for 2 epochs, evaluated in full (training subset, validation split, test
set, and every complexity measure) at each logged step. Inputs are MNIST-sized images in
torchvision's on-disk format, generated here (no download; random pixels and labels: the cost of a
step does not depend on what is learnt), read by ``torchvision.datasets.MNIST`` on the reference side
and converted to the canonical file for the engine.

- engine: ``python -m workflow_scripts.train`` once for all seeds (one process), with
  ``--engine sequential`` (its defaults: channels_last, fused Adam, evaluation in chunks of 128),
  optionally the same with ``--channels-last off`` (``sequential+nocl``), and ``--engine vmap``;
- reference: ``bench/reference_loop.py`` once per seed (one process each), per-sample
  ToTensor/Normalize, DataLoader with ``--workers`` workers, evaluation through the same loaders.

Every timing is a whole job's wall time (process start, imports, data loading included), measured
interleaved in one run (engine, reference, engine, ...) because the machine is shared; the ratio is
reference time / engine time for the same seeds. Peak memory: the largest resident set of one
process of the job (``wait4``'s ru_maxrss; the reference's loader workers are separate processes).

    .venv/bin/python bench/bench_train_cpu.py                         # 2 seeds, 1 repeat
    .venv/bin/python bench/bench_train_cpu.py --seeds 2 --n-test 10000 --val-size 5000 --eval-points 40
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workflow_scripts import config as cfg  # noqa: E402
from workflow_scripts.datasets import prepare  # noqa: E402
from tests.conftest import write_mnist_raw  # noqa: E402  (MNIST's idx files, generated)


def bench_cells(P: int, seeds: int, epochs: int, eval_points: int, val_size: int,
                threads: int) -> list[dict]:
    config = cfg.load_config(REPO / "config" / "config.yaml")
    out = []
    for s in range(seeds):
        c = cfg.resolve_cell(config, "main", "cnn", "mnist", 1500, s)
        c["P"] = P
        c["data"]["val_size"] = val_size
        c["training"].update(epochs=epochs, eval_points=eval_points, device="cpu",
                             checkpoint_minutes=1e9, threads=threads)
        out.append(c)
    return out


def timed_with_stderr(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of the largest process, stderr) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    stderr = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss / 1024, stderr


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB of the largest process) of one command."""
    return timed_with_stderr(cmd)[:2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--P", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eval-points", type=int, default=10,
                        help="about this many logged steps (9 of the 16 steps of 2 epochs at P=1000)")
    parser.add_argument("--n-test", type=int, default=500, help="test-set size (MNIST: 10000)")
    parser.add_argument("--val-size", type=int, default=200, help="validation size (config: 5000)")
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--engines", nargs="+", default=["sequential", "vmap"],
                        help="engine names; '+nocl' adds --channels-last off")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench_train_cpu_"))
    n_train = args.val_size + args.P + 1000
    root = write_mnist_raw(tmp / "mnist", n_train, args.n_test)
    npz = tmp / "mnist.npz"
    prepare("mnist", npz, raw_dir=root, verify_md5=False)
    cells = bench_cells(args.P, args.seeds, args.epochs, args.eval_points, args.val_size,
                        args.threads)
    py = sys.executable
    print(f"# CNN-MNIST P={args.P}, {args.epochs} epochs, {args.seeds} seeds, "
          f"eval sets: train {args.P} + val "
          f"{args.val_size} + test {args.n_test}, threads {args.threads}, "
          f"reference workers {args.workers}; load average {os.getloadavg()[0]:.1f}", flush=True)

    results: dict[str, list[tuple[float, float]]] = {e: [] for e in args.engines}
    results["reference"] = []
    for rep in range(args.repeats):
        for engine in args.engines:
            out = tmp / f"engine_{engine.replace('+', '_')}_{rep}"
            wall, rss = timed([py, "-m", "workflow_scripts.train", "--cells", json.dumps(cells),
                               "--data", str(npz), "--out", str(out), "--checkpoint-dir",
                               str(out) + "_ckpt", "--engine", engine.split("+")[0]]
                              + (["--channels-last", "off"] if engine.endswith("+nocl") else []))
            results[engine].append((wall, rss))
            print(f"rep {rep} engine {engine:10s} {wall:7.1f} s  peak {rss:6.0f} MiB", flush=True)
        walls, rsss = [], []
        for c in cells:  # one process per seed, one after the other
            wall, rss = timed([py, str(REPO / "bench" / "reference_loop.py"), "--cell",
                               json.dumps(c), "--mnist-root", str(root), "--out",
                               str(tmp / f"ref_{rep}_seed{c['seed']}.parquet"),
                               "--workers", str(args.workers), "--threads", str(args.threads)])
            walls.append(wall)
            rsss.append(rss)
        results["reference"].append((sum(walls), max(rsss)))
        print(f"rep {rep} reference        {sum(walls):7.1f} s  peak {max(rsss):6.0f} MiB "
              f"(per process; {len(cells)} processes)", flush=True)

    ref = statistics.median(w for w, _ in results["reference"])
    print("\n| job | wall time (median) | peak RSS | speed-up vs reference |")
    print("|---|---|---|---|")
    print(f"| reference loop, {args.seeds} processes | {ref:.1f} s | "
          f"{max(r for _, r in results['reference']):.0f} MiB | 1.0x |")
    for engine in args.engines:
        w = statistics.median(w for w, _ in results[engine])
        print(f"| engine `{engine}`, 1 process | {w:.1f} s | "
              f"{max(r for _, r in results[engine]):.0f} MiB | {ref / w:.2f}x |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}; data in {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
