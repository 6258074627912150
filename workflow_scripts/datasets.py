"""Datasets: download through torchvision, convert once to one canonical array file, load it checked.

Training reads only the canonical file, ``results/datasets/<name>.npz`` (uint8 or float32 images
N×C×H×W, int64 labels, per-channel normalisation constants), whose sha256 is recorded beside it in
``<name>.json``; a file whose checksum no longer matches is refused. The file is byte-for-byte
reproducible (fixed zip timestamps), so the same data always has the same checksum.

``digits`` (scikit-learn's bundled 8×8 handwritten digits) and ``teacher`` (a synthetic
teacher–student set) need no download.

    python -m workflow_scripts.datasets download --dataset mnist --raw-dir results/download/mnist
    python -m workflow_scripts.datasets prepare --dataset mnist --raw-dir results/download/mnist \
        --out results/datasets/mnist.npz
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_path, read_json, write_json
from .files import sha256_file
from .provenance import provenance, record

# Sizes of the official splits (digits/teacher: our fixed splits, see _digits/_teacher).
DATASET_SIZES = {
    "mnist": {"train": 60000, "test": 10000},
    "cifar10": {"train": 50000, "test": 10000},
    "cifar100": {"train": 50000, "test": 10000},
    "digits": {"train": 1400, "test": 397},
    "teacher": {"train": 4000, "test": 2000},
}
DOWNLOADED = ("mnist", "cifar10", "cifar100")

# The authors' inputs per (arch, dataset): Normalize(mean, std) after ToTensor (pixels in [0, 1])
# and the training augmentation before it. Taken from `get_transforms` in CNN_train.py,
# ResNet_train.py and ViT_train.py of their repository (github.com/Francill99/deep_norm, commit
# 147e9e0; the ResNet-MNIST entry is that commit's, whose model has the published 16-128 widths;
# the earlier 119f353 had Normalize(0.5, 0.5) and no augmentation there). ``training.normalization:
# authors`` and ``training.augmentation: authors`` read this table (workflow_scripts.augment).
# Augmentations: "affine" = RandomAffine(degrees=10, translate=(0.1, 0.1)); "crop_flip" =
# RandomCrop(32, padding=4) + RandomHorizontalFlip(); None = none.
_MNIST_05 = ((0.5,), (0.5,))
_MNIST = ((0.1307,), (0.3081,))
_CIFAR = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
AUTHORS_INPUTS = {
    ("cnn", "mnist"): (*_MNIST_05, None),
    ("cnn", "cifar10"): (*_CIFAR, None),
    ("cnn", "cifar100"): (*_CIFAR, None),
    ("resnet", "mnist"): (*_MNIST, "affine"),
    ("resnet", "cifar10"): (*_CIFAR, "crop_flip"),
    ("resnet", "cifar100"): (*_CIFAR, "crop_flip"),
    ("vit", "mnist"): (*_MNIST, "affine"),
    ("vit", "cifar10"): (*_CIFAR, None),
    ("vit", "cifar100"): (*_CIFAR, None),
}
TEACHER_SEED = 20250519  # fixed: the synthetic set is part of the code, not of a cell
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class DatasetError(RuntimeError):
    """A canonical dataset file that is missing, truncated or altered, or a raw file that is not
    the one expected."""


@dataclass
class Canonical:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray  # per channel, of the images scaled to [0, 1] (uint8) or as stored (float)
    std: np.ndarray
    sha256: str


# md5 of every raw file prepare reads, relative to the raw folder (torchvision's root). MNIST:
# torchvision lists only the .gz archives' md5s; these are of the uncompressed idx files it reads
# (the official files, as torchvision unpacks them). CIFAR: torchvision's own lists.
MNIST_RAW_MD5 = {
    "MNIST/raw/train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "MNIST/raw/train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "MNIST/raw/t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "MNIST/raw/t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
UNVERIFIED_WARNING = ("raw files NOT verified against torchvision's md5 sums "
                      "(data.verify_download_md5: false); the CIFAR batches were unpickled unchecked")


def raw_md5s(name: str) -> dict[str, str]:
    """{path relative to the raw folder: md5} of the official raw files of ``name``."""
    if name == "mnist":
        return dict(MNIST_RAW_MD5)
    from torchvision import datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
    files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    return {f"{cls.base_folder}/{f}": md5 for f, md5 in files}


def _md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_raw_files(name: str, raw_dir, expected: dict[str, str] | None = None) -> dict[str, str]:
    """Check every raw file of ``name`` under ``raw_dir`` against its md5 before anything reads it.

    ``expected``: {relative path: md5}, by default the official ones (``raw_md5s``); tests pass the
    md5s of their generated files. Returns the verified md5s (for the dataset's record).
    """
    expected = raw_md5s(name) if expected is None else expected
    for rel, md5 in expected.items():
        path = Path(raw_dir) / rel
        if not path.is_file():
            raise DatasetError(f"{path}: raw file of {name} missing; rerun the download rule (or "
                               "fix data.raw_dir)")
        actual = _md5_file(path)
        if actual != md5:
            raise DatasetError(f"{path}: md5 {actual} is not the official {md5} (corrupted or "
                               f"another file); delete it and rerun the download rule (or fix "
                               "data.raw_dir)")
    return dict(expected)


def _torchvision_class(name: str):
    from torchvision import datasets as tvd

    base = {"mnist": tvd.MNIST, "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
    if name == "mnist":
        return base

    class Checked(base):
        """torchvision's CIFAR loader without its own md5 check: ``verify_raw_files`` did it
        before (against the official md5s, or the ones a test gives for its generated files)."""

        def _check_integrity(self):
            return all(os.path.exists(os.path.join(self.root, self.base_folder, f))
                       for f, _ in self.train_list + self.test_list)

        def _load_meta(self):
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]

    return Checked


def download(name: str, raw_dir) -> None:
    """Fetch the official train and test splits with torchvision (verifies its md5 sums)."""
    from torchvision import datasets as tvd

    cls = {"mnist": tvd.MNIST, "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
    for train in (True, False):
        cls(str(raw_dir), train=train, download=True)


def _from_torchvision(name: str, raw_dir) -> dict:
    cls = _torchvision_class(name)
    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = cls(str(raw_dir), train=train, download=False)
        data = np.asarray(ds.data, dtype=np.uint8)
        # MNIST: N×H×W; CIFAR: N×H×W×C (torchvision's HWC) -> N×C×H×W
        data = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)
        out[f"x_{split}"] = np.ascontiguousarray(data)
        out[f"y_{split}"] = np.asarray(ds.targets, dtype=np.int64)
    return out


def _digits() -> dict:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.rint(d.images * 16), 0, 255).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    perm = np.random.default_rng(0).permutation(len(images))
    n_test = DATASET_SIZES["digits"]["test"]
    test, train = perm[:n_test], perm[n_test:]
    return {"x_train": images[train], "y_train": d.target[train].astype(np.int64),
            "x_test": images[test], "y_test": d.target[test].astype(np.int64)}


def _teacher() -> dict:
    """Gaussian 1×8×8 inputs labelled by a random linear teacher over 10 classes."""
    rng = np.random.default_rng(TEACHER_SEED)
    sizes = DATASET_SIZES["teacher"]
    teacher = rng.standard_normal((10, 64))
    out = {}
    for split in ("train", "test"):
        x = rng.standard_normal((sizes[split], 64)).astype(np.float32)
        out[f"x_{split}"] = x.reshape(-1, 1, 8, 8)
        out[f"y_{split}"] = np.argmax(x @ teacher.T, axis=1).astype(np.int64)
    return out


def _normalisation(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x_train.astype(np.float64)
    if x_train.dtype == np.uint8:
        x /= 255.0
    axes = (0, 2, 3)
    return x.mean(axis=axes).astype(np.float32), x.std(axis=axes).astype(np.float32)


def write_canonical(arrays: dict, path) -> str:
    """Write the arrays as a reproducible .npz (fixed entry order and timestamps); return sha256."""
    arrays = dict(arrays)
    arrays["mean"], arrays["std"] = _normalisation(arrays["x_train"])
    with atomic_path(path, ".npz") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for key in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]),
                                          allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME), buf.getvalue())
    return sha256_file(path)


def prepare(name: str, out, raw_dir=None, verify_md5: bool = True,
            expected_md5: dict[str, str] | None = None) -> str:
    """Convert ``name`` to its canonical file ``out`` and record the checksum in ``out``.json.

    Raw files are checked against their md5s (``verify_raw_files``; ``expected_md5`` replaces the
    official ones, for generated test files) before anything reads them. ``verify_md5=False``
    skips that with a warning on stderr, recorded in the dataset's record.
    """
    raw_record = None
    if name in DOWNLOADED:
        if raw_dir is None:
            raise ValueError(f"dataset {name!r} needs --raw-dir (the torchvision download)")
        if verify_md5:
            raw_record = {"verified": True, "md5": verify_raw_files(name, raw_dir, expected_md5)}
        else:
            print(f"WARNING: {name}: {UNVERIFIED_WARNING}", file=sys.stderr, flush=True)
            raw_record = {"verified": False, "warning": UNVERIFIED_WARNING}
        arrays = _from_torchvision(name, raw_dir)
    elif name == "digits":
        arrays = _digits()
    elif name == "teacher":
        arrays = _teacher()
    else:
        raise ValueError(f"unknown dataset {name!r}; allowed: {sorted(DATASET_SIZES)}")
    for split in ("train", "test"):
        n = len(arrays[f"y_{split}"])
        # the official files have the official sizes (generated test files are smaller)
        if verify_md5 and expected_md5 is None and n != DATASET_SIZES[name][split]:
            raise DatasetError(f"{name} {split} split has {n} examples, expected "
                               f"{DATASET_SIZES[name][split]}")
    sha = write_canonical(arrays, out)
    write_json({**record("dataset", None, outputs=[{"path": str(out), "sha256": sha}]),
                "dataset": name, "sha256": sha, "shapes": {k: list(v.shape) for k, v in arrays.items()},
                "raw_files": raw_record,
                "provenance": provenance(config={"dataset": name, "verify_md5": verify_md5})},
               checksum_path(out))
    return sha


def checksum_path(npz_path) -> Path:
    return Path(npz_path).with_suffix(".json")


def load_canonical(path, expected_sha256: str | None = None) -> Canonical:
    """Load a canonical file after checking its sha256 against the recorded (or given) one."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"canonical dataset {path} is missing; make it with the datasets rule "
                           f"(snakemake {path})")
    if expected_sha256 is None:
        record = checksum_path(path)
        if not record.exists():
            raise DatasetError(f"{path}: no recorded checksum {record}")
        expected_sha256 = read_json(record)["sha256"]
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise DatasetError(f"{path}: sha256 {actual[:12]}… does not match the recorded "
                           f"{expected_sha256[:12]}… (truncated or altered); remake it: rerun "
                           "snakemake with --forcerun datasets added (README: When things go wrong)")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return Canonical(sha256=actual, **arrays)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.datasets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_dl = sub.add_parser("download", help="torchvision download of the official splits")
    p_dl.add_argument("--dataset", required=True, choices=DOWNLOADED)
    p_dl.add_argument("--raw-dir", required=True)
    p_prep = sub.add_parser("prepare", help="convert to the canonical .npz (+ .json checksum)")
    p_prep.add_argument("--dataset", required=True, choices=sorted(DATASET_SIZES))
    p_prep.add_argument("--raw-dir")
    p_prep.add_argument("--out", required=True)
    p_prep.add_argument("--no-verify-md5", action="store_true",
                        help="skip the raw files' md5 check (generated test files only; warned "
                             "about and recorded in the dataset's .json)")
    args = parser.parse_args(argv)
    if args.command == "download":
        download(args.dataset, args.raw_dir)
    else:
        sha = prepare(args.dataset, args.out, args.raw_dir, verify_md5=not args.no_verify_md5)
        print(f"{args.out}: sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
