"""Provenance: who made a file, from what, with which code (README, "What the pipeline makes").

Every output of the pipeline carries a ``provenance`` dict built here, so that the audit can walk from
any number back to the trajectories, configs and code that produced it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from . import PACKAGE_DIR, REPO_ROOT, io
from .files import sha256_file

TRACKED_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn",
                    "statsmodels", "matplotlib", "seaborn", "snakemake")


# What an analysis output is about: the analysing experiment and the (arch, dataset, measure) group.
IDENTITY = ("experiment", "arch", "dataset", "measure")

# Every analysis output carries a typed record (``record``): in the file itself (fit.json, the Parquet
# footer of an aggregate) or in a JSON sidecar beside the files it describes (figures, tables, the
# numbers file, the sensitivity grid). The audit reads these records; it never guesses.
RECORD = "record/1"
RECORD_KINDS = ("dataset", "aggregate", "fit", "sensitivity", "figure", "table", "numbers")


def record(kind: str, experiment, *, outputs=(), printed=None) -> dict:
    """The typed header of an output's record: what it is (``kind``), the experiment that analysed
    it (given as one name or as names: one distinct name is stored as that name, several as their
    sorted list, for an output spanning experiments), and, for a sidecar, the sha256 of every file it
    describes (``outputs``) and the exact strings those files print (``printed``, by file name).
    Writers merge it with their content and their ``provenance`` block."""
    if kind not in RECORD_KINDS:
        raise ValueError(f"unknown record kind {kind!r} (one of {RECORD_KINDS})")
    if isinstance(experiment, (list, tuple, set)):
        names = sorted({str(e) for e in experiment})
        experiment = names[0] if len(names) == 1 else names
    rec = {"record": RECORD, "kind": kind, "experiment": experiment}
    if outputs:  # paths, or {"path", "sha256"} where the writer has the hash already
        rec["outputs"] = [o if isinstance(o, dict) else inputs_with_hashes([o])[0] for o in outputs]
    if printed is not None:
        rec["printed"] = printed
    return rec


def is_record(obj) -> bool:
    return isinstance(obj, dict) and obj.get("record") == RECORD and obj.get("kind") in RECORD_KINDS


def record_candidates(path) -> list[Path]:
    """Where the record of ``path`` may live: in it, then ``<file>.json``, then ``<stem>.json``."""
    path = Path(path)
    return list(dict.fromkeys([path, Path(f"{path}.json"), path.with_suffix(".json")]))


def read_record(path) -> tuple[Path, dict] | tuple[None, None]:
    """The record describing ``path`` and the file holding it: the record in the file itself (a JSON
    record, a Parquet footer), else the sidecar beside it whose ``outputs`` list it."""
    path = Path(path)
    for cand in record_candidates(path):
        if not cand.is_file():
            continue
        try:
            if cand.suffix == ".parquet":
                obj = io.read_parquet_metadata(cand)
            elif cand.suffix == ".json":
                obj = io.read_json(cand)
            else:
                continue
        except (OSError, ValueError):
            continue
        if not is_record(obj):
            continue
        if cand == path or any(Path(o["path"]).name == path.name for o in obj.get("outputs") or []):
            return cand, obj
    return None, None


def fit_identity(fit: dict) -> dict:
    """(experiment, arch, dataset, measure) of a fit.json: the analysing experiment its record names,
    and the group it fitted."""
    group = fit.get("group") or {}
    ident = {k: str(group.get(k, "?")) for k in IDENTITY}
    if fit.get("experiment"):
        ident["experiment"] = str(fit["experiment"])
    return ident


def canonical_json(obj) -> str:
    """JSON with sorted keys and no whitespace: the form that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def package_source_hash() -> str:
    """sha256 over the package's .py files (path and content), independent of git."""
    h = hashlib.sha256()
    for p in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(str(p.relative_to(PACKAGE_DIR)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> dict:
    def git(*args):
        try:
            out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                                 text=True, timeout=10)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status),
            "package_hash": package_source_hash()}


@lru_cache(maxsize=1)
def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_description(device=None) -> str:
    cpu = f"cpu:{platform.processor() or platform.machine()}"
    torch = sys.modules.get("torch")  # numpy-only stages must not pay torch's import (seconds)
    if torch is None:
        return cpu
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    return f"{cpu}:{torch.get_num_threads()}threads"


def slurm_job_id() -> str | None:
    job = os.environ.get("SLURM_JOB_ID")
    if job and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return job


def inputs_with_hashes(paths) -> list[dict]:
    return [{"path": str(p), "sha256": sha256_file(p)} for p in paths]


def provenance(config: dict | None = None, inputs=(), device=None, **extra) -> dict:
    """The provenance block stored with every output."""
    record = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code": code_version(),
        "packages": package_versions(),
        "host": platform.node(),
        "device": device_description(device),
        "slurm_job_id": slurm_job_id(),
        "inputs": inputs_with_hashes(inputs),
    }
    if config is not None:
        record["config"] = config
        record["config_hash"] = config_hash(config)
    record.update(extra)
    return record
