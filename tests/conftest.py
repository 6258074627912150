"""Shared fixtures: small files in torchvision's on-disk formats, made here (no download)."""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def write_mnist_raw(root: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """MNIST's idx files (uncompressed) as torchvision expects them under <root>/MNIST/raw."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 0x801, n) + labels.tobytes())
    return root


def write_cifar_raw(root: Path, name: str = "cifar10", per_batch: int = 40, n_test: int = 50,
                    seed: int = 0) -> Path:
    """CIFAR-10/100 python pickles as torchvision expects them."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, train_files, label_key, n_classes = "cifar-10-batches-py", \
            [f"data_batch_{i}" for i in range(1, 6)], "labels", 10
        meta_file, meta = "batches.meta", {"label_names": [f"c{i}" for i in range(10)]}
    else:
        folder, train_files, label_key, n_classes = "cifar-100-python", ["train"], "fine_labels", 100
        meta_file, meta = "meta", {"fine_label_names": [f"c{i}" for i in range(100)]}
    base = root / folder
    base.mkdir(parents=True, exist_ok=True)
    for fname, n in [(f, per_batch) for f in train_files] + [("test_batch" if name == "cifar10"
                                                               else "test", n_test)]:
        entry = {"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 label_key: rng.integers(0, n_classes, size=n).tolist()}
        with open(base / fname, "wb") as f:
            pickle.dump(entry, f)
    with open(base / meta_file, "wb") as f:
        pickle.dump(meta, f)
    return root


@pytest.fixture
def one_thread():
    """Single-threaded torch for the duration of a test (the machine's cores are shared)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def mnist_raw(tmp_path):
    return write_mnist_raw(tmp_path / "mnist")


@pytest.fixture
def cifar10_raw(tmp_path):
    return write_cifar_raw(tmp_path / "cifar10", "cifar10")


@pytest.fixture
def cifar100_raw(tmp_path):
    return write_cifar_raw(tmp_path / "cifar100", "cifar100")


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory):
    from workflow_scripts.datasets import prepare

    path = tmp_path_factory.mktemp("datasets") / "digits.npz"
    prepare("digits", path)
    return path


def interrupted_then_resumed(run, n_cells: int, after_evals: int, between=lambda: None):
    """``run(log)`` killed (an exception from its log) after ``after_evals`` evaluations per cell,
    ``between()`` (checks on what the kill left), then ``run(log)`` again to the end, which must
    say it resumed from a checkpoint; returns that second run's result."""

    class Interrupt(Exception):
        pass

    evals = []

    def dying_log(msg):
        if ": step " in msg:
            evals.append(msg)
            if len(evals) > after_evals * n_cells:
                raise Interrupt

    with pytest.raises(Interrupt):
        run(dying_log)
    between()
    seen = []
    result = run(seen.append)
    assert any("resuming at step" in m for m in seen), seen
    return result
