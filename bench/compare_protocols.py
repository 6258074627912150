"""The two input protocols on the same cells of real MNIST: ε(λ) under our own normalisation
(`dataset`: the training split's mean and std) against the authors' (`authors`: CNN-MNIST
Normalize(0.5, 0.5), no augmentation), with the training engine.

Issue 22 saw, with the authors' script beside ours on this cell (CNN-MNIST, P = 1,000, 16 epochs,
init 0.05, Adam 1e-3, batch 128, 3 seeds), that under a small initialisation the escape from the
initial plateau depends strongly on the input scale. This script trains those cells under both
settings on a subset of the real MNIST files (the first ``--n-train`` training and ``--n-test`` test
images of the idx files; a validation split of ``--val-size`` carved from the training part as in
every cell), prints the final and minimum test errors per seed and their mean ± sd, and plots the
test error against λ (and against the epoch) for both protocols into one PNG.

    nice -n 10 .venv/bin/python bench/compare_protocols.py --raw-dir /work/data/mnist_raw \
        --out /tmp/compare_protocols
    # on a loaded machine, as two processes, then once more to print both and plot:
    for p in dataset authors; do nice -n 10 .venv/bin/python bench/compare_protocols.py \
        --raw-dir /work/data/mnist_raw --out /tmp/compare_protocols --protocols $p & done; wait
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

from workflow_scripts import config as cfg  # noqa: E402
from workflow_scripts.datasets import checksum_path, write_canonical  # noqa: E402
from workflow_scripts.io import read_parquet, write_json  # noqa: E402
from workflow_scripts.engines import EngineOptions  # noqa: E402
from workflow_scripts.train import train_batch  # noqa: E402

PROTOCOLS = ("dataset", "authors")


def read_idx(path: Path, n: int, header: int) -> np.ndarray:
    """The first n records of an uncompressed MNIST idx file (big-endian header, uint8 data)."""
    raw = np.fromfile(path, dtype=np.uint8)
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i].tobytes(), "big") for i in range(header)]
    per = int(np.prod(dims[1:])) if len(dims) > 1 else 1
    if n > dims[0]:
        raise ValueError(f"{path}: {dims[0]} records, asked for {n}")
    return raw[4 + 4 * header:4 + 4 * header + n * per].reshape(n, *dims[1:])


def mnist_subset(raw_dir: Path, n_train: int, n_test: int, out: Path) -> Path:
    arrays = {"x_train": read_idx(raw_dir / "train-images-idx3-ubyte", n_train, 3)[:, None],
              "y_train": read_idx(raw_dir / "train-labels-idx1-ubyte", n_train, 1).astype(np.int64),
              "x_test": read_idx(raw_dir / "t10k-images-idx3-ubyte", n_test, 3)[:, None],
              "y_test": read_idx(raw_dir / "t10k-labels-idx1-ubyte", n_test, 1).astype(np.int64)}
    sha = write_canonical(arrays, out)
    write_json({"sha256": sha, "dataset": "mnist", "subset": [n_train, n_test]}, checksum_path(out))
    return out


def cells(protocol: str, args) -> list[dict]:
    training = {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": args.epochs,
                "eval_points": args.eval_points, "init_scale": 0.05, "device": "cpu",
                "normalization": protocol, "augmentation": "authors" if protocol == "authors"
                else "none", "checkpoint_minutes": 1000}
    config = cfg.load_config({"data": {"val_size": {"mnist": args.val_size}},
                              "experiments": {protocol: {"archs": ["cnn"], "datasets": ["mnist"],
                                                         "P": {"mnist": [args.P]},
                                                         "seeds": list(range(args.seeds)),
                                                         "training": training}}})
    return [cfg.resolve_cell(config, protocol, "cnn", "mnist", args.P, s)
            for s in range(args.seeds)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw-dir", type=Path, required=True, help="MNIST idx files (uncompressed)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--val-size", type=int, default=500)
    ap.add_argument("--P", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--eval-points", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS,
                    help="train only these (finished cells are kept in <out>/ckpt: a later run "
                         "with both rewrites them without training, so the two can run as two "
                         "processes)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = mnist_subset(args.raw_dir, args.n_train, args.n_test, args.out / "mnist_subset.npz")
    curves = {}
    for protocol in args.protocols:
        t0 = time.perf_counter()
        cs = cells(protocol, args)
        train_batch(cs, data, args.out / protocol, args.out / "ckpt" / protocol,
                    log=lambda m: None, opts=EngineOptions(engine="sequential"))
        curves[protocol] = [read_parquet(args.out / protocol / f"seed{c['seed']}.parquet")[0]
                            for c in cs]
        final = [float(df["test_error"].iloc[-1]) for df in curves[protocol]]
        best = [float(df["test_error"].min()) for df in curves[protocol]]
        escape = [next((float(e) for e, err in zip(df["epoch"], df["test_error"]) if err < 0.5),
                       float("nan")) for df in curves[protocol]]

        def ms(v):
            return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else \
                f"{v[0]:.3f}"
        print(f"{protocol:8} final test error {ms(final)}  min {ms(best)}  per seed final "
              f"{[round(v, 3) for v in final]} min {[round(v, 3) for v in best]}  first epoch "
              f"with test error < 0.5: {escape}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    if len(curves) < len(PROTOCOLS):
        return 0

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for protocol, colour in zip(PROTOCOLS, ("C0", "C3")):
        for i, df in enumerate(curves[protocol]):
            label = f"{protocol} normalisation" if i == 0 else None
            axes[0].loglog(df["lambda"], df["test_error"], color=colour, marker=".", label=label)
            axes[1].plot(df["epoch"], df["test_error"], color=colour, marker=".", label=label)
    axes[0].set(xlabel="λ (spectral complexity R_A)", ylabel="test error ε",
                title=f"CNN-MNIST, P = {args.P}, init 0.05, {args.seeds} seeds")
    axes[1].set(xlabel="epoch", ylabel="test error ε", title="the same against training time")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "compare_protocols.png", dpi=120)
    print(f"wrote {args.out / 'compare_protocols.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
