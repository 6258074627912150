"""The canonical dataset files: real torchvision conversion, checksums, refusal of altered files."""
import hashlib
import pickle

import numpy as np
import pytest

from workflow_scripts.datasets import (DATASET_SIZES, UNVERIFIED_WARNING, DatasetError,
                                       checksum_path, load_canonical, prepare, raw_md5s)
from workflow_scripts.io import read_json
from workflow_scripts.seal import seal_path


def generated_md5s(name, raw):
    """md5s of the generated raw files, under the relative paths of the official ones."""
    return {rel: hashlib.md5((raw / rel).read_bytes()).hexdigest() for rel in raw_md5s(name)}


def test_mnist_conversion_through_torchvision(mnist_raw, tmp_path):
    out = tmp_path / "mnist.npz"
    sha = prepare("mnist", out, raw_dir=mnist_raw, expected_md5=generated_md5s("mnist", mnist_raw))
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
    prepare(name, out, raw_dir=raw, expected_md5=generated_md5s(name, raw))
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


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
def test_official_md5s_refuse_generated_files(name, tmp_path, request):
    raw = request.getfixturevalue(f"{name}_raw")
    first = next(iter(raw_md5s(name)))
    with pytest.raises(DatasetError, match=f"{first}: md5 .* is not the official"):
        prepare(name, tmp_path / "x.npz", raw_dir=raw)
    assert not (tmp_path / "x.npz").exists()


def test_the_official_mnist_md5s_are_of_the_uncompressed_idx_files():
    assert raw_md5s("mnist") == {
        "MNIST/raw/train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "MNIST/raw/train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "MNIST/raw/t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "MNIST/raw/t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"}
    from torchvision.datasets import CIFAR10

    assert raw_md5s("cifar10")["cifar-10-batches-py/data_batch_1"] == CIFAR10.train_list[0][1]
    assert len(raw_md5s("cifar10")) == 7 and len(raw_md5s("cifar100")) == 3


class _WritesMarker:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("planted", ["cifar-10-batches-py/batches.meta",
                                     "cifar-10-batches-py/data_batch_3"])
def test_an_altered_raw_file_is_refused_before_it_is_read(cifar10_raw, tmp_path, planted):
    """A raw file that is not the one expected (here a pickle that would write a marker file when
    loaded) is refused, naming it, before anything unpickles it."""
    expected = generated_md5s("cifar10", cifar10_raw)
    marker = tmp_path / "marker"
    with open(cifar10_raw / planted, "wb") as f:
        pickle.dump(_WritesMarker(marker), f)
    with pytest.raises(DatasetError, match=f"{planted}: md5"):
        prepare("cifar10", tmp_path / "c.npz", raw_dir=cifar10_raw, expected_md5=expected)
    assert not marker.exists() and not (tmp_path / "c.npz").exists()


def test_an_altered_or_missing_mnist_file_is_refused(mnist_raw, tmp_path):
    expected = generated_md5s("mnist", mnist_raw)
    labels = mnist_raw / "MNIST/raw/t10k-labels-idx1-ubyte"
    blob = bytearray(labels.read_bytes())
    blob[-1] ^= 1  # one bit of one label
    labels.write_bytes(bytes(blob))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte: md5"):
        prepare("mnist", tmp_path / "m.npz", raw_dir=mnist_raw, expected_md5=expected)
    labels.unlink()
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte: raw file of mnist missing"):
        prepare("mnist", tmp_path / "m.npz", raw_dir=mnist_raw, expected_md5=expected)


def test_skipping_the_md5_check_warns_and_is_recorded(mnist_raw, tmp_path, capsys):
    out = tmp_path / "mnist.npz"
    prepare("mnist", out, raw_dir=mnist_raw, verify_md5=False)
    assert "WARNING" in capsys.readouterr().err
    assert read_json(checksum_path(out))["raw_files"] == {"verified": False,
                                                          "warning": UNVERIFIED_WARNING}
    prepare("mnist", out, raw_dir=mnist_raw, expected_md5=generated_md5s("mnist", mnist_raw))
    recorded = read_json(checksum_path(out))["raw_files"]
    assert recorded == {"verified": True, "md5": generated_md5s("mnist", mnist_raw)}


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
