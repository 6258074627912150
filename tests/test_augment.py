"""The authors' inputs: normalisation constants, the on-device augmentations against torchvision's
own functional ops, their parameter distributions, and training with augmentation on (engines
agree, resume is exact, evaluation is un-augmented, the settings are in the cell's hash)."""
import numpy as np
import PIL.Image
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from workflow_scripts import augment
from workflow_scripts import config as cfg
from workflow_scripts.datasets import AUTHORS_INPUTS, load_canonical, prepare
from workflow_scripts.io import read_parquet
from workflow_scripts.provenance import config_hash
from workflow_scripts.engines import EngineOptions
from workflow_scripts.train import device_data, train_batch

from .conftest import REPO, interrupted_then_resumed, write_mnist_raw

# Measured (this file's images): our affine equals torchvision's tensor affine exactly (max |diff|
# 0, no pixel differs); against its PIL affine (the authors' path) 1.3e-4 of the pixels differ
# (nearest-pixel ties rounded the other way). The bounds leave room for other kernels' rounding.
MAX_DIFFERING_TENSOR = 1e-3
MAX_DIFFERING_PIL = 1e-3


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------- the table
def test_authors_table_has_their_constants_and_covers_every_paper_pair():
    assert set(AUTHORS_INPUTS) == {(a, d) for a in ("cnn", "resnet", "vit")
                                   for d in ("mnist", "cifar10", "cifar100")}
    assert AUTHORS_INPUTS[("cnn", "mnist")] == ((0.5,), (0.5,), None)
    assert AUTHORS_INPUTS[("resnet", "mnist")] == ((0.1307,), (0.3081,), "affine")
    assert AUTHORS_INPUTS[("vit", "mnist")] == ((0.1307,), (0.3081,), "affine")
    cifar = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    for d in ("cifar10", "cifar100"):
        assert AUTHORS_INPUTS[("cnn", d)] == (*cifar, None)
        assert AUTHORS_INPUTS[("resnet", d)] == (*cifar, "crop_flip")
        assert AUTHORS_INPUTS[("vit", d)] == (*cifar, None)


# ------------------------------------------------------------------------- against torchvision
def test_crop_flip_equals_torchvision_pad_crop_hflip_exactly():
    x = torch.randn(200, 3, 32, 32, generator=generator(1))
    fill = torch.tensor([-2.43, -2.42, -2.22])
    p = augment.sample_params("crop_flip", len(x), generator(2), 32, 32)
    ours = augment.crop_flip(x, p["top"], p["left"], p["flip"], fill)
    for b in range(len(x)):
        ref = TF.crop(TF.pad(x[b], [4], fill=fill.tolist()), int(p["top"][b]),
                      int(p["left"][b]), 32, 32)
        if p["flip"][b]:
            ref = TF.horizontal_flip(ref)
        assert torch.equal(ours[b], ref), b
    assert p["flip"].any() and not p["flip"].all() and (p["top"] == 0).any()


def _affine_reference(x, p, b, fill):
    return TF.affine(x[b], angle=float(p["angle"][b]), translate=[int(p["tx"][b]), int(p["ty"][b])],
                     scale=1.0, shear=[0.0, 0.0], fill=fill)


def test_affine_matches_torchvision_tensor_affine():
    x = torch.randn(300, 1, 28, 28, generator=generator(3))
    fill = torch.tensor([-0.1307 / 0.3081])
    p = augment.sample_params("affine", len(x), generator(4), 28, 28)
    ours = augment.affine(x, p["angle"], p["tx"], p["ty"], fill)
    ref = torch.stack([_affine_reference(x, p, b, fill.tolist()) for b in range(len(x))])
    differ = (ours != ref)
    assert differ.float().mean() <= MAX_DIFFERING_TENSOR
    # a differing pixel is a neighbour's value (a tie rounded the other way), never garbage
    assert set(ours[differ].tolist()) <= set(x.flatten().tolist()) | {fill.item()}
    assert not torch.equal(ours, x)  # it did transform


def test_affine_matches_torchvision_on_pil_images_the_authors_path():
    """The authors transform uint8 PIL images, then ToTensor; ours the same pixels as floats."""
    rng = np.random.default_rng(5)
    u8 = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    x = torch.from_numpy(u8).float().div(255).unsqueeze(1)
    p = augment.sample_params("affine", len(x), generator(6), 28, 28)
    ours = augment.affine(x, p["angle"], p["tx"], p["ty"], torch.tensor([0.0]))
    ref = torch.stack([torch.from_numpy(np.array(TF.affine(
        PIL.Image.fromarray(u8[b]), angle=float(p["angle"][b]),
        translate=[int(p["tx"][b]), int(p["ty"][b])], scale=1.0, shear=[0.0, 0.0])))
        .float().div(255).unsqueeze(0) for b in range(len(u8))])
    assert (ours != ref).float().mean() <= MAX_DIFFERING_PIL


@pytest.mark.parametrize("kind, shape", [("crop_flip", (3, 32, 32)), ("affine", (1, 28, 28))])
def test_black_stays_black_after_normalising(kind, shape):
    """The fill is what a zero pixel becomes (-mean/std), so a black image stays uniformly black."""
    mean, std = (np.array([0.4914, 0.4822, 0.4465], np.float32), np.array(
        [0.2023, 0.1994, 0.2010], np.float32)) if shape[0] == 3 else \
        (np.array([0.1307], np.float32), np.array([0.3081], np.float32))
    aug = augment.BatchAugmenter(kind, mean, std, torch.device("cpu"))
    black = torch.from_numpy(-mean / std).view(1, -1, 1, 1).expand(64, *shape).contiguous()
    assert torch.equal(aug(black, [7]), black)
    ones = torch.ones(64, *shape)  # a white image gets the black border
    out = aug(ones, [7])
    assert set(out.unique().tolist()) == {1.0, *(-mean / std).tolist()}


# ------------------------------------------------------------------------- parameters
def test_crop_flip_parameters_are_uniform_over_torchvisions_ranges():
    n = 90_000
    p = augment.sample_params("crop_flip", n, generator(8), 32, 32)
    for k in ("top", "left"):
        counts = np.bincount(p[k].numpy(), minlength=9)
        assert len(counts) == 9  # offsets 0..8 = 2 * padding + 1 positions, as RandomCrop
        assert np.abs(counts - n / 9).max() < 5 * np.sqrt(n / 9)
    assert abs(p["flip"].float().mean().item() - 0.5) < 5 * 0.5 / np.sqrt(n)


def test_affine_parameters_follow_random_affine_get_params():
    n = 100_000
    p = augment.sample_params("affine", n, generator(9), 28, 28)
    angle = p["angle"].numpy()
    assert angle.min() >= -10 and angle.max() <= 10
    hist, _ = np.histogram(angle, bins=20, range=(-10, 10))
    assert np.abs(hist - n / 20).max() < 5 * np.sqrt(n / 20)
    # round(uniform(-2.8, 2.8)): |t| <= 2 with probability 1/5.6 each, ±3 with 0.3/5.6 each
    expected = {k: (0.3 if abs(k) == 3 else 1.0) / 5.6 for k in range(-3, 4)}
    for key in ("tx", "ty"):
        values, counts = np.unique(p[key].numpy(), return_counts=True)
        assert values.tolist() == list(range(-3, 4))
        for v, c in zip(values, counts):
            q = expected[int(v)]
            assert abs(c / n - q) < 5 * np.sqrt(q * (1 - q) / n), (key, v)
    # torchvision's own draws land in the same sets
    from torchvision.transforms import RandomAffine
    torch.manual_seed(0)
    theirs = [RandomAffine.get_params([-10.0, 10.0], [0.1, 0.1], None, None, [28, 28])
              for _ in range(2000)]
    assert {t[1][0] for t in theirs} <= set(range(-3, 4))
    assert all(-10 <= t[0] <= 10 and t[2] == 1.0 and t[3] == (0.0, 0.0) for t in theirs)


def test_blocks_augment_as_if_alone_and_a_stream_seed_fixes_them():
    """What makes the two engines see the same batches: a cell's block is augmented the same
    whether alone (sequential) or stacked with other cells (vmap)."""
    mean, std = np.array([0.1307], np.float32), np.array([0.3081], np.float32)
    for kind in augment.AUGMENTATIONS:
        aug = augment.BatchAugmenter(kind, mean, std, torch.device("cpu"))
        x = torch.randn(3 * 32, 1, 28, 28, generator=generator(10))
        together = aug(x, [11, 12, 13])
        alone = torch.cat([aug(x[i * 32:(i + 1) * 32], [s]) for i, s in enumerate((11, 12, 13))])
        assert torch.equal(together, alone)
        assert torch.equal(aug(x, [11, 12, 13]), together)
        assert not torch.equal(aug(x, [14, 12, 13])[:32], together[:32])
    with pytest.raises(ValueError, match="equal blocks"):
        aug(torch.zeros(10, 1, 28, 28), [1, 2, 3])


# ------------------------------------------------------------------------- config and hash
def mnist_config(**training) -> dict:
    config = cfg.load_config(REPO / "config" / "test.yaml")
    raw = {"data": {"val_size": {"mnist": 50}},
           "experiments": {"main": {**{k: v for k, v in config["experiments"]["main"].items()
                                       if k in ("training", "seeds", "seeds_per_job")},
                                    "archs": ["vit"], "datasets": ["mnist"], "P": {"mnist": [120]},
                                    "overrides": []}}}
    raw["experiments"]["main"]["training"] = {**raw["experiments"]["main"]["training"],
                                              "optimizer": "adamw", "lr": 3e-4, **training}
    return cfg.load_config(raw)


def test_settings_resolve_into_the_cell_and_its_hash():
    plain = cfg.resolve_cell(mnist_config(), "main", "vit", "mnist", 120, 0)
    assert plain["training"]["normalization"] == "dataset"
    assert plain["training"]["augmentation"] == "none"
    hashes = {config_hash(cfg.resolve_cell(mnist_config(normalization=n, augmentation=a),
                                           "main", "vit", "mnist", 120, 0))
              for n in ("dataset", "authors") for a in ("none", "authors")}
    assert len(hashes) == 4


def test_settings_can_differ_per_pair_through_overrides():
    config = mnist_config()
    main = config["experiments"]["main"]
    main["archs"] = ["cnn", "vit"]
    main["overrides"] = [{"match": {"arch": "vit"},
                          "training": {"normalization": "authors", "augmentation": "authors"}}]
    config = cfg.load_config(config)
    vit = cfg.resolve_cell(config, "main", "vit", "mnist", 120, 0)["training"]
    cnn = cfg.resolve_cell(config, "main", "cnn", "mnist", 120, 0)["training"]
    assert (vit["normalization"], vit["augmentation"]) == ("authors", "authors")
    assert (cnn["normalization"], cnn["augmentation"]) == ("dataset", "none")


def test_authors_protocol_for_a_dataset_without_one_is_a_config_error():
    config = cfg.load_config(REPO / "config" / "test.yaml")
    for key in ("normalization", "augmentation"):
        raw = cfg.load_config(REPO / "config" / "test.yaml")
        raw["experiments"]["main"]["training"][key] = "authors"
        with pytest.raises(cfg.ConfigError,
                           match=rf"experiments\.main\.training\.{key} \(for cnn/digits\)"):
            cfg.load_config(raw)
    raw = config
    raw["experiments"]["main"]["training"]["augmentation"] = "sometimes"
    with pytest.raises(cfg.ConfigError, match="augmentation"):
        cfg.load_config(raw)


def test_paper_config_trains_every_pair_with_the_authors_inputs():
    config = cfg.load_config(REPO / "config" / "config.yaml")
    for job in cfg.training_grid(config):
        t = cfg.training_settings(config, job["experiment"], job["arch"], job["dataset"])
        assert (t["normalization"], t["augmentation"]) == ("authors", "authors"), job


# ------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def mnist_npz(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    write_mnist_raw(root / "raw")
    path = root / "mnist.npz"
    prepare("mnist", path, raw_dir=root / "raw", verify_md5=False)
    return path


def vit_cells(seeds=(0, 1), **training):
    config = mnist_config(epochs=3, eval_points=5, **training)
    return [cfg.resolve_cell(config, "main", "vit", "mnist", 120, s) for s in seeds]


def train(cells, data, root, name, log=lambda m: None, **opts):
    metas = train_batch(cells, data, root / name, root / f"ckpt_{name}", log=log,
                        opts=EngineOptions(**opts))
    return metas, [read_parquet(root / name / f"seed{c['seed']}.parquet")[0] for c in cells]


def test_authors_normalisation_uses_their_constants(mnist_npz):
    canonical = load_canonical(mnist_npz)
    data = device_data(vit_cells(normalization="authors"), canonical, torch.device("cpu"))
    expected = (torch.from_numpy(canonical.x_train).float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(data.x_train, expected, rtol=0, atol=1e-6)
    own = device_data(vit_cells(), canonical, torch.device("cpu"))
    np.testing.assert_array_equal(own.mean, canonical.mean)
    with pytest.raises(ValueError, match="one normalisation"):
        device_data(vit_cells(seeds=(0,)) + vit_cells(seeds=(1,), normalization="authors"),
                    canonical, torch.device("cpu"))


@pytest.mark.usefixtures("one_thread")
def test_training_with_augmentation_engines_agree_and_evaluation_is_unaugmented(mnist_npz,
                                                                                tmp_path):
    authors = vit_cells(normalization="authors", augmentation="authors")
    seq_meta, seq = train(authors, mnist_npz, tmp_path, "seq", engine="sequential")
    vm_meta, vm = train(authors, mnist_npz, tmp_path, "vmap", engine="vmap")
    for a, b in zip(seq, vm):
        assert list(a["step"]) == list(b["step"])
        for col in ("train_loss", "val_loss", "test_loss", "lambda"):
            np.testing.assert_allclose(a[col], b[col], rtol=1e-4, err_msg=col)
    assert seq_meta[0]["input_protocol"] == {"mean": [pytest.approx(0.1307)],
                                     "std": [pytest.approx(0.3081)], "augmentation": "affine"}
    _, plain = train(vit_cells(normalization="authors"), mnist_npz, tmp_path, "plain",
                     engine="sequential")
    # same init and data: identical before the first step (evaluation sees no augmentation),
    # different once augmented batches have been trained on
    cols = ["train_error", "train_loss", "val_loss", "test_loss"]
    assert plain[0].iloc[0][cols].tolist() == seq[0].iloc[0][cols].tolist()
    assert plain[0].iloc[-1]["train_loss"] != seq[0].iloc[-1]["train_loss"]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("engine", ["sequential", "vmap"])
def test_resume_with_augmentation_is_bit_identical(engine, mnist_npz, tmp_path):
    # the sequential engine trains a job's cells one after the other: one cell is interrupted
    cells = vit_cells(seeds=(0,) if engine == "sequential" else (0, 1), normalization="authors",
                      augmentation="authors")
    for c in cells:
        c["training"]["checkpoint_minutes"] = 1e-6  # a checkpoint at every evaluation
    _, straight = train(cells, mnist_npz, tmp_path, "straight", engine=engine)

    _, resumed = interrupted_then_resumed(
        lambda log: train(cells, mnist_npz, tmp_path, "resumed", log=log, engine=engine),
        len(cells), after_evals=3)
    for a, b in zip(straight, resumed):
        a, b = a.drop(columns="wall_time"), b.drop(columns="wall_time")
        assert a.equals(b)
