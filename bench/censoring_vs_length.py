"""Does training longer remove the quick grid's censored minima? (issue 25)

Claim: on digits the ViT's test error rises after its minimum, so enough epochs leave its minimum
inside the run; the CNN's and the ResNet's barely rise (a few of the 397 test images), so their
minimum is the lowest point of a long flat tail and longer training censors about as many of them.

Evidence: this script trains the quick main grid (``config/quick.yaml``'s ``main``) with every
epoch count, and the number of evaluation points, multiplied by ``--factor``, in a fresh copy of
the working tree (this checkout's ``.venv`` linked in), then prints per cell where the minimum lies,
how far the error rose after it by the end (test images), whether it is censored
(``aggregate.censored_optimum``), and whether runs of 1x, 1.5x, ... the quick epochs would be: the
long run's rows at the evaluation steps that run would log (``train.eval_steps``; each the long
run's last evaluation at or before it). The trajectories do not depend on the planned length
(constant learning rate), only where they are evaluated does.

    .venv/bin/python bench/censoring_vs_length.py                     # 2.5x, P 100-400, ~4 min
    .venv/bin/python bench/censoring_vs_length.py --P 800 1200 --factor 1.5
"""
from __future__ import annotations

import argparse
import copy
import math
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quick import REPO, fresh_copy, timed  # noqa: E402

sys.path.insert(0, str(REPO))
from workflow_scripts.aggregate import censored_optimum  # noqa: E402
from workflow_scripts.datasets import DATASET_SIZES  # noqa: E402
from workflow_scripts.train import eval_steps  # noqa: E402
from workflow_scripts.trajectory import read_trajectory  # noqa: E402


def long_config(quick: dict, factor: float, Ps: list[int] | None) -> dict:
    """The quick config with main's epochs and evaluation points multiplied by factor."""
    cfg = copy.deepcopy(quick)
    main = cfg["experiments"]["main"]
    main["training"] = dict(main["training"], epochs=round(main["training"]["epochs"] * factor),
                            eval_points=round(main["training"]["eval_points"] * factor))
    for ov in main.get("overrides", []):
        if "epochs" in ov.get("training", {}):
            ov["training"] = dict(ov["training"], epochs=round(ov["training"]["epochs"] * factor))
    if Ps:
        main["P"] = {"digits": sorted(Ps)}
    cfg["targets"]["deferred"]["experiments"] = [e for e in cfg["experiments"] if e != "main"]
    return cfg


def subsample(steps: np.ndarray, total: int, n_points: int) -> np.ndarray:
    """Row indices of a run of about ``total`` steps logged at eval_steps(total, n_points): each
    the last row at or before that step (the long run's evaluations are log-spaced, so its last
    one at or before ``total`` may be up to one evaluation interval, ~10%, earlier)."""
    idx = np.searchsorted(steps, eval_steps(total, n_points), side="right") - 1
    return np.unique(idx[idx >= 0])


def report(results: Path, factor: float, quick_points: int) -> None:
    n_test = DATASET_SIZES["digits"]["test"]
    multiples = [m for m in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0) if m <= factor + 1e-9]
    counts = defaultdict(lambda: defaultdict(int))
    print(f"{'cell':24s} {'min at epoch':>14s} {'rise (images)':>14s}  censored at "
          + " ".join(f"{m:g}x" for m in multiples))
    for f in sorted(results.glob("train/main/*/digits/P*/seeds*/seed*.parquet"),
                    key=lambda p: (p.parts[-5], int(p.parts[-3][1:]), p.name)):
        df, meta = read_trajectory(f)
        cfg = meta["config"]
        arch, P, seed = cfg["arch"], int(cfg["P"]), int(cfg["seed"])
        spe = math.ceil(P / cfg["training"]["batch_size"])
        steps, lam, err = (df[c].to_numpy() for c in ("step", "lambda", "test_error"))
        i = int(np.argmin(err))
        quick_epochs = cfg["training"]["epochs"] / factor
        marks = []
        for m in multiples:
            rows = subsample(steps, round(quick_epochs * m) * spe, quick_points)
            c = censored_optimum(lam[rows], err[rows])
            counts[m][arch, "censored"] += c
            counts[m][arch, "cells"] += 1
            marks.append("C" if c else ".")
        print(f"{arch + f' P{P} s{seed}':24s} {steps[i] / spe:7.0f} of {steps[-1] / spe:4.0f} "
              f"{(err[-1] - err[i]) * n_test:14.0f}  " + "  ".join(f"{x:>3s}" for x in marks))
    for m in multiples:
        archs = sorted({a for a, _ in counts[m]})
        parts = [f"{a} {counts[m][a, 'censored']}/{counts[m][a, 'cells']}" for a in archs]
        tot = sum(counts[m][a, "censored"] for a in archs)
        cells = sum(counts[m][a, "cells"] for a in archs)
        print(f"{m:g}x the quick epochs: {tot} of {cells} censored ({', '.join(parts)})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factor", type=float, default=2.5, help="epochs multiplier (>= 1)")
    ap.add_argument("--P", type=int, nargs="*", help="main's P values instead of quick.yaml's")
    ap.add_argument("--keep", action="store_true", help="keep the copy (its results/)")
    args = ap.parse_args(argv)
    if args.factor < 1:
        ap.error("--factor must be >= 1")
    quick = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())
    cfg = long_config(quick, args.factor, args.P)
    quick_points = quick["experiments"]["main"]["training"]["eval_points"]
    root = Path(tempfile.mkdtemp(prefix="censoring_vs_length_"))
    fresh_copy(root)
    (root / "config" / "censoring.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [".venv/bin/snakemake", "--cores", "all", "--until", "train",
           "--configfile", "config/censoring.yaml"]
    wall, cpu, rc = timed(cmd, root, root / "snakemake.log")
    print(f"{' '.join(cmd)}: {wall:.0f} s wall, {cpu:.0f} CPU s, exit {rc} ({root})", flush=True)
    if rc:
        print((root / "snakemake.log").read_text()[-3000:], file=sys.stderr)
        return rc
    report(root / "results", args.factor, quick_points)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
