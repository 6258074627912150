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
from workflow_scripts.provenance import config_hash as cfg_hash
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
                             "--checkpoint-dir", str(ckpt)],
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


def test_checkpoint_of_another_thread_count_is_not_resumed(digits_npz, tmp_path):
    """training.threads is part of the cell: a checkpoint made under another count starts over."""
    saved = torch.get_num_threads()
    logs: list[str] = []
    try:
        (one,) = cells(P=60, epochs=2, threads=1)
        (two,) = cells(P=60, epochs=2, threads=2)
        train_batch([one], digits_npz, tmp_path / "one", tmp_path / "ckpt", log=logs.append)
        assert torch.get_num_threads() == 1
        (meta,) = train_batch([two], digits_npz, tmp_path / "two", tmp_path / "ckpt",
                              log=logs.append)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)
    assert cfg_hash(one) != cfg_hash(two) == meta["config_hash"]
    assert meta["config"]["training"]["threads"] == 2
    assert any("made for another config" in m and "starting the cell over" in m for m in logs)
    assert not any("finished earlier" in m or "resuming" in m for m in logs)


class _WritesMarker:
    """Unpickling this calls open(marker, 'w'): the marker file proves code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("with_header", [False, True])
def test_planted_checkpoint_never_runs_code(digits_npz, tmp_path, with_header):
    """A malicious seed0.pt under the checkpoint directory: without our header it is not opened
    past its first line; with a forged header carrying the right hash, weights_only refuses it."""
    import pickle

    from workflow_scripts.engines import checkpoint_path
    from workflow_scripts.train import CHECKPOINT_MAGIC

    (cell,) = cells(P=60, epochs=2)
    marker = tmp_path / "marker"
    planted = checkpoint_path(tmp_path / "ckpt", cell)
    planted.parent.mkdir(parents=True)
    dataset = json.loads(digits_npz.with_suffix(".json").read_text())["sha256"]
    header = {"config_hash": cfg_hash(cell), "dataset_sha256": dataset}
    state = {**header, "done": True, "rows": [], "meta": _WritesMarker(marker)}
    with open(planted, "wb") as f:
        if with_header:
            f.write(CHECKPOINT_MAGIC + json.dumps(header).encode() + b"\n")
            torch.save(state, f)
        else:
            pickle.dump(state, f)
    logs: list[str] = []
    (meta,) = train_batch([cell], digits_npz, tmp_path / "out", tmp_path / "ckpt", log=logs.append)
    assert not marker.exists()
    assert meta["status"] == "completed"
    expected = "unreadable checkpoint" if with_header else "no checkpoint header"
    assert any(expected in m and "starting the cell over" in m for m in logs)
    # the run replaced it with a real one, which a rerun takes as finished
    logs.clear()
    train_batch([cell], digits_npz, tmp_path / "out", tmp_path / "ckpt", log=logs.append)
    assert any("finished earlier" in m for m in logs) and not marker.exists()


def test_checkpoint_made_on_another_dataset_file_is_not_used(digits_npz, tmp_path):
    """A done-checkpoint rewrites a trajectory only for the dataset file it was trained on."""
    from workflow_scripts.datasets import load_canonical, write_canonical
    from workflow_scripts.io import write_json

    data = load_canonical(digits_npz)
    arrays = {k: getattr(data, k) for k in ("x_train", "y_train", "x_test", "y_test")}
    arrays["y_test"] = (arrays["y_test"] + 1) % 10  # another dataset, with its own record
    other = tmp_path / "other" / "digits.npz"
    write_json({"sha256": write_canonical(arrays, other)}, other.with_suffix(".json"))
    (cell,) = cells(P=60, epochs=2)
    train_batch([cell], digits_npz, tmp_path / "a", tmp_path / "ckpt", log=lambda m: None)
    logs: list[str] = []
    (meta,) = train_batch([cell], other, tmp_path / "b", tmp_path / "ckpt", log=logs.append)
    assert any("made on another dataset file" in m for m in logs)
    assert not any("finished earlier" in m for m in logs)
    assert meta["dataset_sha256"] == load_canonical(other).sha256 != data.sha256
