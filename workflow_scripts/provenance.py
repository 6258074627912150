"""Provenance: who made a file, from what, with which code (README, "What the pipeline makes").

Every output of the pipeline carries a ``provenance`` dict built here, so that the audit can walk from
any number back to the trajectories, configs and code that produced it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata

from . import PACKAGE_DIR, REPO_ROOT

TRACKED_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn",
                    "statsmodels", "matplotlib", "seaborn", "snakemake")


# A fit's identity: the (experiment, arch, dataset, measure) its path or its recorded group names.
FIT_PATH = re.compile(r"(?:^|/)fit/([^/]+)/([^/]+)/([^/]+)/([^/]+)/fit\.json$")
IDENTITY = ("experiment", "arch", "dataset", "measure")


def fit_identity(path: str, group: dict | None = None) -> dict:
    """(experiment, arch, dataset, measure) of a fit: from its path results/fit/e/a/d/m/fit.json when
    it has that form (the analysis experiment; the group in fit.json names the training one for
    experiments that reuse another's runs), else from the group recorded in the file."""
    m = FIT_PATH.search(str(path).replace("\\", "/"))
    if m:
        return dict(zip(IDENTITY, m.groups()))
    return {k: str((group or {}).get(k, "?")) for k in IDENTITY}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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
