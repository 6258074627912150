"""The training engines: the vectorised (vmap) engine against the sequential one, its determinism,
checkpoint/resume and divergence handling, the engine choice, bf16, and agreement in distribution
with the plain research loop of bench/reference_loop.py."""
import numpy as np
import pandas as pd
import pytest
import torch

from bench.reference_loop import datasets_for, train_reference
from workflow_scripts import config as cfg
from workflow_scripts.io import read_parquet
from workflow_scripts.engines import EngineOptions, choose_engine
from workflow_scripts.train import train_batch
from workflow_scripts.trajectory import read_trajectory

from .conftest import REPO

QUIET = dict(log=lambda m: None)
DATA_COLUMNS = ["train_error", "val_error", "test_error", "train_loss", "val_loss", "test_loss",
                "lambda", "frobenius"]


pytestmark = pytest.mark.usefixtures("one_thread")


def cells(arch="cnn", P=120, seeds=(0, 1, 2), **training):
    config = cfg.load_config(REPO / "config" / "test.yaml")
    config["experiments"]["main"]["training"].update(training)
    config["experiments"]["main"]["seeds"] = list(range(8))
    out = [cfg.resolve_cell(config, "main", "cnn", "digits", P, s) for s in seeds]
    for c in out:
        c["arch"] = arch
    return out


def run(cell_list, data, root, name, **opts):
    metas = train_batch(cell_list, data, root / name, root / f"ckpt_{name}",
                        opts=EngineOptions(**opts), **QUIET)
    return metas, [read_parquet(root / name / f"seed{c['seed']}.parquet")[0] for c in cell_list]


def assert_close_trajectories(a: pd.DataFrame, b: pd.DataFrame, n_test: int):
    assert list(a["step"]) == list(b["step"])
    # float reassociation may flip the argmax of a near-tie: at most a couple of test examples
    assert np.abs(a["test_error"] - b["test_error"]).max() <= 2 / n_test
    for col in ("train_loss", "val_loss", "test_loss", "lambda", "frobenius"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-4, err_msg=col)


@pytest.mark.parametrize("arch, training", [("cnn", {}),
                                            ("vit", {"optimizer": "adamw", "lr": 3e-4})])
def test_vmap_engine_matches_the_sequential_engine(arch, training, digits_npz, tmp_path):
    c = cells(arch, P=120, seeds=(0, 1, 2), epochs=6, **training)
    seq_meta, seq = run(c, digits_npz, tmp_path, "seq", engine="sequential")
    vm_meta, vm = run(c, digits_npz, tmp_path, "vmap", engine="vmap")
    for a, b in zip(seq, vm):
        assert_close_trajectories(a, b, n_test=397)
    assert not np.allclose(vm[0]["test_loss"], vm[1]["test_loss"])  # seeds stay distinct
    assert vm_meta[0]["engine"]["engine"] == "vmap" and vm_meta[0]["engine"]["seeds_together"] == [0, 1, 2]
    assert seq_meta[0]["engine"]["engine"] == "sequential"
    assert vm_meta[0]["engine"]["precision"] == "fp32"
    _, meta = read_trajectory(tmp_path / "vmap" / "seed2.parquet")
    assert meta["cell_id"] == "main/cnn/digits/P120/seed2".replace("cnn", arch)
    assert meta["engine"]["engine"] == "vmap" and meta["total_steps"] == seq_meta[2]["total_steps"]


def test_vmap_engine_is_deterministic_and_resumes_exactly(digits_npz, tmp_path):
    c = cells("cnn", P=120, seeds=(0, 1), epochs=8, checkpoint_minutes=1e-6)
    _, ref = run(c, digits_npz, tmp_path, "ref", engine="vmap")
    _, again = run(c, digits_npz, tmp_path, "again", engine="vmap")

    class Interrupt(Exception):
        pass

    seen = []

    def dying_log(msg):  # dies in the middle of the 6th evaluation, after 5 checkpoints
        seen.append(msg)
        if sum("step " in m for m in seen) > 2 * 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_batch(c, digits_npz, tmp_path / "out", tmp_path / "ckpt",
                    opts=EngineOptions(engine="vmap"), log=dying_log)
    assert not (tmp_path / "out" / "seed0.parquet").exists()
    log = []
    train_batch(c, digits_npz, tmp_path / "out", tmp_path / "ckpt",
                opts=EngineOptions(engine="vmap"), log=log.append)
    assert any("resuming at step" in m for m in log)
    resumed = [read_parquet(tmp_path / "out" / f"seed{s}.parquet")[0] for s in (0, 1)]
    for a, b, d in zip(ref, again, resumed):
        pd.testing.assert_frame_equal(a.drop(columns="wall_time"), b.drop(columns="wall_time"),
                                      check_exact=True)
        pd.testing.assert_frame_equal(a.drop(columns="wall_time"), d.drop(columns="wall_time"),
                                      check_exact=True)
    # the stack's checkpoint is gone; each cell left the sequential engine's done-checkpoint,
    # so a rerun with either engine rewrites the trajectories without training
    ckpts = sorted(p.name for p in (tmp_path / "ckpt").rglob("*.pt"))
    assert ckpts == ["seed0.pt", "seed1.pt"]
    log = []
    train_batch(c, digits_npz, tmp_path / "out2", tmp_path / "ckpt",
                opts=EngineOptions(engine="sequential"), log=log.append)
    assert sum("finished earlier" in m for m in log) == 2
    pd.testing.assert_frame_equal(read_parquet(tmp_path / "out2" / "seed1.parquet")[0],
                                  read_parquet(tmp_path / "out" / "seed1.parquet")[0])


def test_vmap_engine_records_divergence_like_the_sequential_engine(digits_npz, tmp_path):
    c = cells("cnn", P=120, seeds=(0, 1), optimizer="sgd", lr=1e12)
    seq_meta, seq = run(c, digits_npz, tmp_path, "seq", engine="sequential")
    vm_meta, vm = run(c, digits_npz, tmp_path, "vmap", engine="vmap")
    for s in range(2):
        assert vm_meta[s]["status"] == seq_meta[s]["status"] == "diverged"
        assert vm_meta[s]["diverged_step"] == seq_meta[s]["diverged_step"]
        assert list(vm[s]["step"]) == list(seq[s]["step"])


def test_engine_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    cnn, resnet = cells("cnn", seeds=(0, 1)), cells("resnet", seeds=(0, 1))
    # CPU keeps the exactly deterministic sequential engine; CUDA stacks what can be stacked
    assert choose_engine(cnn, cpu, "auto") == "sequential"
    assert choose_engine(cnn, cuda, "auto") == "vmap"
    assert choose_engine(cnn[:1], cuda, "auto") == "sequential"
    assert choose_engine(resnet, cuda, "auto") == "sequential"  # BatchNorm
    assert choose_engine(cnn, cpu, "vmap") == "vmap"
    with pytest.raises(ValueError, match="BatchNorm"):
        choose_engine(resnet, cpu, "vmap")
    mixed = cnn[:1] + cells("cnn", P=60, seeds=(1,))
    with pytest.raises(ValueError, match="differ only in their seed"):
        choose_engine(mixed, cpu, "vmap")
    with pytest.raises(ValueError, match="unknown engine"):
        EngineOptions(engine="turbo")
    with pytest.raises(ValueError, match="unknown precision"):
        EngineOptions(precision="fp8")


def test_channels_last_changes_only_rounding_and_stays_deterministic(digits_npz, tmp_path):
    c = cells("cnn", P=120, seeds=(0,), epochs=6)
    _, (plain,) = run(c, digits_npz, tmp_path, "plain", engine="sequential")
    metas, (cl,) = run(c, digits_npz, tmp_path, "cl", engine="sequential", channels_last=True)
    _, (cl2,) = run(c, digits_npz, tmp_path, "cl2", engine="sequential", channels_last=True)
    assert metas[0]["engine"]["channels_last"] is True
    assert_close_trajectories(plain, cl, n_test=397)
    pd.testing.assert_frame_equal(cl.drop(columns="wall_time"), cl2.drop(columns="wall_time"),
                                  check_exact=True)


def test_bf16_autocast_is_recorded_and_still_learns(digits_npz, tmp_path):
    c = cells("cnn", P=240, seeds=(0,), epochs=8)
    _, (fp32,) = run(c, digits_npz, tmp_path, "fp32", engine="sequential")
    metas, (bf16,) = run(c, digits_npz, tmp_path, "bf16", engine="sequential", precision="bf16")
    assert metas[0]["engine"]["precision"] == "bf16"
    assert not np.array_equal(fp32["test_loss"], bf16["test_loss"])  # bf16 changes the numbers...
    assert abs(fp32["test_error"].iloc[-1] - bf16["test_error"].iloc[-1]) < 0.1  # ...not the result
    assert bf16["test_error"].iloc[-1] < 0.5


def test_engine_and_plain_reference_loop_agree_within_seed_noise(digits_npz, tmp_path):
    seeds = (0, 1, 2, 3)
    c = cells("cnn", P=240, seeds=seeds, epochs=12)
    _, engine = run(c, digits_npz, tmp_path, "engine", engine="vmap")
    train_set, test_set = datasets_for(data_path=digits_npz)
    reference = [train_reference(cell, train_set, test_set, workers=0, log=lambda m: None)
                 for cell in c]
    assert all(list(r["step"]) == list(engine[0]["step"]) for r in reference)
    for col in ("test_error", "train_error", "val_error"):
        e = np.stack([df[col].to_numpy() for df in engine])
        r = np.stack([df[col].to_numpy() for df in reference])
        se = np.sqrt(e.var(0, ddof=1) / len(seeds) + r.var(0, ddof=1) / len(seeds))
        # same curve within seed noise at every logged step (0.02: floor for near-zero variance)
        assert np.all(np.abs(e.mean(0) - r.mean(0)) <= 4 * se + 0.02), col
    # and the complexity grows alike: final log-λ within the seeds' spread
    le = np.log([df["lambda"].iloc[-1] for df in engine])
    lr = np.log([df["lambda"].iloc[-1] for df in reference])
    assert abs(le.mean() - lr.mean()) <= 4 * np.sqrt(le.var(ddof=1) / 4 + lr.var(ddof=1) / 4) + 0.05
