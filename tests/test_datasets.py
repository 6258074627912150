"""The canonical dataset files: real torchvision conversion, checksums, refusal of altered files."""
import pickle

import numpy as np
import pytest

from workflow_scripts.datasets import (DATASET_SIZES, DatasetError, checksum_path, load_canonical,
                                       prepare)
from workflow_scripts.io import read_json
from workflow_scripts.seal import seal_path


def test_mnist_conversion_through_torchvision(mnist_raw, tmp_path):
    out = tmp_path / "mnist.npz"
    sha = prepare("mnist", out, raw_dir=mnist_raw, verify_md5=False)
    data = load_canonical(out)
    assert data.sha256 == sha == read_json(checksum_path(out))["sha256"]
    assert data.x_train.shape == (300, 1, 28, 28) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (100, 1, 28, 28)
    # the pixels are the ones in the idx file, in order
    raw = (mnist_raw / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()[16:]
    assert np.array_equal(data.x_train.reshape(-1), np.frombuffer(raw, np.uint8))
    labels = (mnist_raw / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes()[8:]
    assert np.array_equal(data.y_test, np.frombuffer(labels, np.uint8))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_conversion_through_torchvision(name, tmp_path, request):
    raw = request.getfixturevalue(f"{name}_raw")
    out = tmp_path / f"{name}.npz"
    prepare(name, out, raw_dir=raw, verify_md5=False)
    data = load_canonical(out)
    n_train = 200 if name == "cifar10" else 40
    assert data.x_train.shape == (n_train, 3, 32, 32)
    folder, first = ("cifar-10-batches-py", "data_batch_1") if name == "cifar10" else \
        ("cifar-100-python", "train")
    with open(raw / folder / first, "rb") as f:
        entry = pickle.load(f)
    # torchvision's row layout is channel-major 3x32x32: the canonical file keeps N×C×H×W
    assert np.array_equal(data.x_train[0].reshape(-1), entry["data"][0])
    key = "labels" if name == "cifar10" else "fine_labels"
    assert data.y_train[:5].tolist() == entry[key][:5]
    assert data.mean.shape == (3,) and np.all(data.std > 0)


def test_md5_verification_refuses_generated_files(cifar10_raw, tmp_path):
    with pytest.raises(RuntimeError, match="corrupted"):
        prepare("cifar10", tmp_path / "c.npz", raw_dir=cifar10_raw, verify_md5=True)


def test_canonical_file_is_byte_reproducible(tmp_path):
    a, b = prepare("digits", tmp_path / "a.npz"), prepare("digits", tmp_path / "b.npz")
    assert a == b
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_digits_and_teacher_sizes(tmp_path):
    for name in ("digits", "teacher"):
        data = load_canonical(tmp_path / f"{name}.npz", prepare(name, tmp_path / f"{name}.npz"))
        assert len(data.y_train) == DATASET_SIZES[name]["train"]
        assert len(data.y_test) == DATASET_SIZES[name]["test"]
        assert set(np.unique(data.y_train)) == set(range(10))


def test_altered_or_truncated_file_is_refused(digits_npz, tmp_path):
    altered = tmp_path / "digits.npz"
    blob = bytearray(digits_npz.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    altered.write_bytes(bytes(blob))
    for record in (checksum_path(digits_npz), seal_path(checksum_path(digits_npz))):  # record, its seal
        (tmp_path / record.name).write_bytes(record.read_bytes())
    with pytest.raises(DatasetError, match="does not match"):
        load_canonical(altered)
    altered.write_bytes(digits_npz.read_bytes()[:1000])
    with pytest.raises(DatasetError, match="truncated or altered"):
        load_canonical(altered)
    altered.unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_canonical(altered)
