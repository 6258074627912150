"""Training trajectories against reference files written by an earlier version of the code.

Guard for refactors of ``workflow_scripts/train.py`` (issue 16, one training loop): each engine must
keep producing, bit for bit, what the code produced when ``tests/data/train_reference.json`` was
written, for a completed and a diverged cell (or stack), run straight through and killed and
resumed from its checkpoint.

Why not byte-identical Parquet files: a trajectory's footer holds volatile provenance (creation
time, the package hash of the code itself, host, package and device descriptions) and its
``wall_time`` column is measured time. The comparison is therefore exact on everything else:
- the data columns (all but ``wall_time``): names, order, dtypes, and every value (the sha256 of
  their bytes, and the values themselves so that a failure names the column);
- the footer's deterministic fields (``DETERMINISTIC_META``: config, hashes, status, divergence,
  evaluation schedule, engine record) and the set of footer keys.

Exactness holds for one torch build on one CPU model, single-threaded: the fixture records the
build, the instruction set and the chip, and the test skips elsewhere (other kernels round
differently). To rewrite the fixture, with the code whose behaviour is the reference:

    .venv/bin/python -m tests.test_train_reference
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from workflow_scripts import config as cfg
from workflow_scripts.io import read_parquet
from workflow_scripts.engines import EngineOptions
from workflow_scripts.train import train_batch

from .conftest import interrupted_then_resumed

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "train_reference.json"
DETERMINISTIC_META = ("cell_id", "config", "config_hash", "dataset_sha256", "diverged_step",
                      "engine", "n_params", "planned_eval_steps", "status", "steps_per_epoch",
                      "total_steps")
VOLATILE_COLUMNS = ("wall_time",)


def reference_cells() -> dict[str, list[dict]]:
    """Small digits cells, one run each: a few seconds on one CPU thread. Checkpoints at every
    evaluation point, so the straight run also exercises checkpoint writing."""
    config = cfg.load_config(REPO / "config" / "test.yaml")
    config["experiments"]["main"]["seeds"] = [0, 1]

    def resolve(seeds, **training):
        out = [cfg.resolve_cell(config, "main", "cnn", "digits", 120, s) for s in seeds]
        for c in out:
            c["training"].update(epochs=4, checkpoint_minutes=1e-6, **training)
        return out

    return {"sequential": resolve([0]),
            "sequential_diverged": resolve([0], optimizer="sgd", lr=1e12),
            "vmap": resolve([0, 1]),
            "vmap_diverged": resolve([0, 1], optimizer="sgd", lr=1e12)}


def engine_of(name: str) -> str:
    return name.split("_")[0]


def cpu_model() -> str:
    """The CPU's model name: one instruction set (AVX512) still rounds differently on two vendors'
    chips (the kernels dispatch on the vendor too), so the fixture names the chip."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else "unknown"


def platform() -> dict:
    return {"torch": torch.__version__, "numpy": np.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_model": cpu_model()}


def data_sha256(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for col in df.columns:
        values = df[col].to_numpy()
        h.update(f"{col}:{values.dtype.str}:{len(values)};".encode())
        h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


def summarise(path: Path) -> dict:
    df, meta = read_parquet(path)
    df = df.drop(columns=list(VOLATILE_COLUMNS))
    return {"data_sha256": data_sha256(df), "columns": list(df.columns),
            "dtypes": [df[c].dtype.str for c in df.columns],
            "values": {c: df[c].tolist() for c in df.columns},
            "meta_keys": sorted(meta), "meta": {k: meta.get(k) for k in DETERMINISTIC_META}}


def run(cells: list[dict], data, root: Path, engine: str, log=lambda m: None) -> dict:
    train_batch(cells, data, root / "out", root / "ckpt", log=log,
                opts=EngineOptions(engine=engine))
    return {f"seed{c['seed']}": summarise(root / "out" / f"seed{c['seed']}.parquet")
            for c in cells}


def run_interrupted(cells: list[dict], data, root: Path, engine: str, after_evals: int) -> dict:
    """Kill the run (an exception from its log) after ``after_evals`` evaluations, then rerun it
    to the end from its checkpoint."""
    def no_output_yet():
        assert not (root / "out" / f"seed{cells[0]['seed']}.parquet").exists()

    return interrupted_then_resumed(lambda log: run(cells, data, root, engine, log=log),
                                    len(cells), after_evals, between=no_output_yet)


def load_fixture() -> dict:
    fixture = json.loads(FIXTURE.read_text())
    if fixture["platform"] != platform():
        pytest.skip(f"reference written on {fixture['platform']}, this is {platform()}: "
                    "exact floats differ across torch builds and instruction sets; rewrite it "
                    "with `python -m tests.test_train_reference` from a known-good commit")
    return fixture


def assert_matches(got: dict, want: dict, label: str):
    assert got.keys() == want.keys(), label
    for seed, w in want.items():
        g = got[seed]
        where = f"{label}/{seed}"
        assert g["columns"] == w["columns"] and g["dtypes"] == w["dtypes"], where
        for col in w["columns"]:  # exact: == on floats (NaN-safe through assert_equal)
            np.testing.assert_array_equal(np.array(g["values"][col]), np.array(w["values"][col]),
                                          err_msg=f"{where}: column {col}")
        assert g["data_sha256"] == w["data_sha256"], where
        assert g["meta_keys"] == w["meta_keys"], where
        for k in DETERMINISTIC_META:
            assert g["meta"][k] == w["meta"][k], f"{where}: footer field {k}"


CASES = list(reference_cells())


@pytest.mark.parametrize("name", CASES)
def test_trajectories_match_the_reference(name, digits_npz, tmp_path, one_thread):
    fixture = load_fixture()
    got = run(reference_cells()[name], digits_npz, tmp_path, engine_of(name))
    assert_matches(got, fixture["runs"][name], name)


@pytest.mark.parametrize("name", ["sequential", "vmap"])
def test_resumed_trajectories_match_the_reference(name, digits_npz, tmp_path, one_thread):
    fixture = load_fixture()
    got = run_interrupted(reference_cells()[name], digits_npz, tmp_path, engine_of(name),
                          after_evals=6)
    assert_matches(got, fixture["runs"][name], f"{name} (resumed)")


def write_fixture() -> None:
    import tempfile

    from workflow_scripts.datasets import prepare

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "digits.npz"
        prepare("digits", data)
        runs = {name: run(cells, data, tmp / name, engine_of(name))
                for name, cells in reference_cells().items()}
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps({"platform": platform(), "runs": runs}, indent=1,
                                  sort_keys=True) + "\n")
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")


if __name__ == "__main__":
    sys.exit(write_fixture())
