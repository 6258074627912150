"""Training cells: nested subsets, independent streams, log-spaced evaluation, determinism,
resumption after SIGKILL, and divergence handling."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from workflow_scripts import config as cfg
from workflow_scripts.io import read_parquet
from workflow_scripts.seal import seal_path
from workflow_scripts.train import eval_steps, split_indices, train_batch
from workflow_scripts.trajectory import read_trajectory

from .conftest import REPO



def cells(P=120, seeds=(0,), **training):
    config = cfg.load_config(REPO / "config" / "test.yaml")
    config["experiments"]["main"]["training"].update(training)
    return [cfg.resolve_cell(config, "main", "cnn", "digits", P, s) for s in seeds]


def test_subsets_are_nested_across_P_and_disjoint_from_validation():
    small, val = split_indices(1400, 200, 0, 100, seed=3)
    large, val2 = split_indices(1400, 200, 0, 800, seed=3)
    assert np.array_equal(val, val2)
    assert np.array_equal(large[:100], small)
    assert not set(large) & set(val)
    other, _ = split_indices(1400, 200, 0, 100, seed=4)
    assert not np.array_equal(other, small)
    with pytest.raises(ValueError, match="exceeds"):
        split_indices(1400, 200, 0, 1201, seed=0)


@pytest.mark.parametrize("total, n", [(1, 40), (7, 5), (1000, 40), (123457, 40)])
def test_eval_steps_log_spaced_with_first_and_last(total, n):
    steps = eval_steps(total, n)
    assert steps[0] == 0 and steps[-1] == total
    assert np.all(np.diff(steps) > 0) and len(steps) <= n + 1
    if total > 10 * n:
        ratios = steps[2:] / steps[1:-1]  # geometric spacing once past the integer crowding
        assert ratios[-5:].std() < 0.05


def test_trajectory_content_and_provenance(digits_npz, tmp_path):
    (meta,) = train_batch(cells(P=240, seeds=(0,)), digits_npz, tmp_path / "out",
                          tmp_path / "ckpt", log=lambda m: None)
    df, meta_read = read_trajectory(tmp_path / "out" / "seed0.parquet")
    assert meta_read["cell_id"] == "main/cnn/digits/P240/seed0" == meta["cell_id"]
    assert meta_read["status"] == "completed" and meta_read["diverged_step"] is None
    assert meta_read["config"]["P"] == 240 and len(meta_read["config_hash"]) == 16
    assert meta_read["code"]["package_hash"] and meta_read["packages"]["torch"]
    assert meta_read["dataset_sha256"] == json.loads(digits_npz.with_suffix(".json").read_text())["sha256"]
    for col in ("train_error", "val_error", "test_error"):
        assert df[col].between(0, 1).all()
    assert df["step"].iloc[0] == 0 and df["step"].iloc[-1] == meta_read["total_steps"]
    assert list(df["step"]) == meta_read["planned_eval_steps"]
    # λ grows early in training (from small weights, Adam increases the norms)
    assert df["lambda"].iloc[len(df) // 2] > df["lambda"].iloc[0]
    assert (df["lambda"] == df["spectral_complexity"]).all()
    # learning happens: the final test error is well below chance (0.9)
    assert df["test_error"].iloc[-1] < 0.5 < df["test_error"].iloc[0]


def test_same_seed_same_trajectory_different_seed_different(digits_npz, tmp_path):
    c = cells(P=120, seeds=(0, 1))
    torch.use_deterministic_algorithms(False)  # whatever an earlier test left: training sets it
    train_batch(c, digits_npz, tmp_path / "a", tmp_path / "ca", log=lambda m: None)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    train_batch(c[:1], digits_npz, tmp_path / "b", tmp_path / "cb", log=lambda m: None)
    a0, _ = read_parquet(tmp_path / "a" / "seed0.parquet")
    b0, _ = read_parquet(tmp_path / "b" / "seed0.parquet")
    a1, _ = read_parquet(tmp_path / "a" / "seed1.parquet")
    pd.testing.assert_frame_equal(a0.drop(columns="wall_time"), b0.drop(columns="wall_time"),
                                  check_exact=True)
    assert not np.allclose(a0["test_error"], a1["test_error"])


def test_divergence_is_recorded_and_the_trajectory_kept(digits_npz, tmp_path):
    (meta,) = train_batch(cells(P=120, optimizer="sgd", lr=1e12), digits_npz, tmp_path / "o",
                          tmp_path / "c", log=lambda m: None)
    df, meta = read_trajectory(tmp_path / "o" / "seed0.parquet")
    assert meta["status"] == "diverged" and meta["diverged_step"] >= 1
    assert len(df) >= 1 and df["step"].max() < meta["diverged_step"]


def _run_cli(cell_list, data, out, ckpt):
    return subprocess.Popen([sys.executable, "-m", "workflow_scripts.train", "--cells",
                             json.dumps(cell_list), "--data", str(data), "--out", str(out),
                             "--checkpoint-dir", str(ckpt), "--threads", "1"],
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_at_random_moments_then_rerun_gives_the_same_trajectory(digits_npz, tmp_path):
    # checkpoint at every evaluation point; kill the run three times at random moments
    c = cells(P=240, seeds=(0,), epochs=300, checkpoint_minutes=1e-6)
    ref = _run_cli(c, digits_npz, tmp_path / "ref", tmp_path / "ref_ckpt")
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    out = tmp_path / "out" / "seed0.parquet"
    ckpt = tmp_path / "ckpt" / "main/cnn/digits/P240/seed0.pt"
    rng = np.random.default_rng(int(time.time()))
    resumed = 0
    for _ in range(3):
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
        proc = _run_cli(c, digits_npz, tmp_path / "out", tmp_path / "ckpt")
        deadline = time.time() + 120  # wait until this process has written a checkpoint
        while (not ckpt.exists() or ckpt.stat().st_mtime_ns == before) and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        stderr = proc.communicate()[1]
        resumed += "resuming at step" in stderr
        # never a partial trajectory at the final path, nor a temporary file in the outputs
        assert not out.exists(), "the run ended before the kill: make it longer"
        assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")] \
            if out.parent.exists() else True
    rerun = _run_cli(c, digits_npz, tmp_path / "out", tmp_path / "ckpt")
    stderr = rerun.communicate(timeout=300)[1]
    assert rerun.returncode == 0, stderr
    assert "resuming at step" in stderr and resumed >= 1
    a, _ = read_parquet(tmp_path / "ref" / "seed0.parquet")
    b, _ = read_parquet(out)
    pd.testing.assert_frame_equal(a.drop(columns="wall_time"), b.drop(columns="wall_time"),
                                  check_exact=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["seed0.parquet", "seed0.parquet.sha256"]
    # a kill during a checkpoint write leaves a temporary; the rerun removes it
    assert not [p for p in ckpt.parent.iterdir() if p.name.endswith(".tmp")]


def test_training_refuses_an_altered_dataset(digits_npz, tmp_path):
    from workflow_scripts.datasets import DatasetError

    altered = tmp_path / "digits.npz"
    blob = bytearray(digits_npz.read_bytes())
    blob[-5000] ^= 0x01
    altered.write_bytes(bytes(blob))
    for record in (digits_npz.with_suffix(".json"), seal_path(digits_npz.with_suffix(".json"))):
        (tmp_path / record.name).write_bytes(record.read_bytes())  # the record and its seal
    with pytest.raises(DatasetError, match="does not match the recorded"):
        train_batch(cells(), altered, tmp_path / "out", tmp_path / "ckpt", log=lambda m: None)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_stale_checkpoint_temporaries_are_removed(tmp_path):
    from workflow_scripts.io import atomic_path, remove_stale_temporaries

    target = tmp_path / "seed0.pt"
    with pytest.raises(RuntimeError):
        with atomic_path(target, ".pt") as tmp:  # a writer that dies mid-write
            tmp.write_bytes(b"partial")
            stale = tmp.with_name(tmp.name.replace(".tmp", "")).with_suffix(".tmp")
            stale.write_bytes(b"left by a SIGKILL")
            raise RuntimeError
    assert not target.exists()
    (tmp_path / "other.pt.tmp").write_bytes(b"not ours")
    assert remove_stale_temporaries(target) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["other.pt.tmp"]
