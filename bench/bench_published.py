"""How long the published import and refit take on files of the real sizes, and what the
restricted unpickler costs against np.load.

Files are built with the layouts of workflow_scripts/published.py at the authors' sizes: nine main
files (6-10 P, grids of 130-200 λ), three _wd files (3 curve sets), three _norms files (4 curve sets,
grids of 200 and 2000 λ) and two _SGD files. Times are CPU seconds of this process
(resource.getrusage), so other load on the machine does not inflate them much.

    .venv/bin/python bench/bench_published.py
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_scripts import config as cfg  # noqa: E402
from workflow_scripts import published  # noqa: E402


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def curves(rng, P, grid, leading=None):
    """Seed-mean-like curves: a power law left of λ_opt(P), rising after it, NaN past each end."""
    shape = ((leading,) if leading else ()) + (len(P), len(grid))
    lam_opt = 0.5 * np.asarray(P, float) ** 0.6
    x = grid[None, :] / lam_opt[:, None]
    E = 0.3 * np.where(x <= 1, x ** -0.3, x ** 0.1) * (P[:, None] / P[0]) ** -0.2
    E = np.broadcast_to(E, shape) * np.exp(0.01 * rng.standard_normal(shape))
    E = np.where(x < 1e-4, np.nan, E)
    l0 = np.broadcast_to(lam_opt, shape[:-1]).copy()
    return E, l0


def build(folder: Path) -> None:
    rng = np.random.default_rng(0)
    P10 = np.array([1500, 3000, 6000, 11000, 16000, 24000, 28000, 36000, 42000, 48000])
    for arch in ("CNN", "ResNet", "ViT"):
        for ds in ("MNIST", "CIFAR10", "CIFAR100"):
            grid = np.geomspace(1e-4, 1e5, 200 if arch == "ViT" else 130)
            E, l0 = curves(rng, P10, grid)
            np.save(folder / f"{arch}_{ds}.npy", {"P_arr": P10, "seed_arr": np.arange(15), "log_x_grid": grid,
                                                  "mean_val_error_arr": E, "l_0_arr": l0, "gamma_1": 0.3,
                                                  "gamma_2": 0.6, "min_P": 5}, allow_pickle=True)
        P = np.array([6000, 11000, 16000, 26000, 36000, 48000])
        grid = np.geomspace(1e-4, 1e5, 130)
        E, l0 = curves(rng, P, grid, 3)
        np.save(folder / f"{arch}_CIFAR10_wd.npy",
                {"P_arr": P, "log_x_grid": grid, "mean_val_error_arr": E, "l_0_arr": l0,
                 "x_left_arr": np.array([None, 1e-3, None], dtype=object),
                 "x_right_arr": np.array([0.3, 0.3, 0.1], dtype=object)}, allow_pickle=True)
        grid = np.geomspace(1e-4, 1e5, 2000 if arch == "CNN" else 200)
        E, l0 = curves(rng, P, grid, 4)
        np.save(folder / f"{arch}_CIFAR10_norms.npy",
                {"P_arr": P, "log_x_grid": grid, "mean_val_error_arr": E, "l_0_arr": l0,
                 "x_left_arr": np.array([1e-3] * 4, dtype=object),
                 "x_right_arr": np.array([0.3] * 4, dtype=object)}, allow_pickle=True)
    for ds in ("CIFAR10", "CIFAR100"):
        P = np.array([4000, 8000, 16000, 26000, 36000, 48000])
        grid = np.geomspace(1e-4, 1e5, 130)
        E, l0 = curves(rng, P, grid)
        np.save(folder / f"CNN_{ds}_SGD.npy", {"P_arr": P, "log_x_grid": grid, "mean_val_error_arr": E,
                                               "l_0_arr": l0}, allow_pickle=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20, help="loads per file for the unpickler ratio")
    args = ap.parse_args(argv)
    config = cfg.load_config(Path(__file__).resolve().parents[1] / "config" / "config.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "analysis", Path(tmp) / "out"
        folder.mkdir()
        build(folder)
        files = sorted(folder.glob("*.npy"))
        size = sum(f.stat().st_size for f in files)
        t = cpu()
        for _ in range(args.repeats):
            for f in files:
                np.load(f, allow_pickle=True)
        t_np = cpu() - t
        t = cpu()
        for _ in range(args.repeats):
            for f in files:
                published.read_npy_dict(f)
        t_safe = cpu() - t
        t = cpu()
        report = published.import_dir(folder, out)
        t_import = cpu() - t
        n_sets = sum(len(e["curve_sets"]) for e in report["imported"])
        t = cpu()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for e in report["imported"]:
                for c in e["curve_sets"]:
                    base = published.aggregate_dir(out, c["experiment"], e["arch"], e["dataset"], c["measure"])
                    s = published.settings_for(config, e["table"], e["arch"], e["dataset"])
                    published.refit(base / "curves.parquet", base / "optima.parquet", s,
                                    Path(tmp) / "fit" / c["experiment"] / e["file"] / c["measure"] / "fit.json")
        t_fit = cpu() - t
    print(f"{len(files)} files, {size / 2**20:.1f} MiB, {n_sets} curve sets")
    print(f"load, per pass over all files: np.load {t_np / args.repeats:.3f} s CPU, restricted "
          f"unpickler {t_safe / args.repeats:.3f} s CPU (ratio {t_safe / t_np:.2f})")
    print(f"import of the folder (load, check, write 2 Parquet files per curve set): {t_import:.2f} s CPU")
    print(f"refit of every curve set, both estimators: {t_fit:.2f} s CPU ({t_fit / n_sets:.3f} s per set)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
