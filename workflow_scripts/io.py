"""Atomic, sealed file writes and Parquet files whose footer carries the provenance.

Nothing is ever written in place: each writer fills a temporary file in the target's directory,
fsyncs it and renames it over the final path, so a crash (SIGKILL, preemption) never leaves a
partial file where the workflow expects a finished one. JSON and Parquet files are also sealed
(``seal.py``: a sidecar ``<file>.sha256``), and their readers here verify the seal before parsing.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import seal
from .files import sha256_file, temporary_beside, write_synced

METADATA_KEY = b"scaling_dynamics"


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", sealed: bool = False):
    """Yield a temporary path next to ``path``; on success move it over ``path``. With ``sealed``,
    also write its seal ``<path>.sha256``, renamed after the data (see ``seal.py``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path, suffix)
    sidecar = seal.seal_path(path)
    sidecar_tmp = temporary_beside(sidecar) if sealed else None
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if sealed:
            write_synced(sidecar_tmp, seal.seal_text(sha256_file(tmp), path))
        os.replace(tmp, path)
        if sealed:
            os.replace(sidecar_tmp, sidecar)
    finally:
        for t in (tmp, sidecar_tmp):
            if t is not None and os.path.exists(t):
                os.unlink(t)


def remove_stale_temporaries(path) -> int:
    """Delete temporaries that ``atomic_path`` left beside ``path`` when its writer was killed."""
    path = Path(path)
    stale = list(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.exists() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


def write_json(obj, path) -> None:
    with atomic_path(path, sealed=True) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path):
    """A JSON file the pipeline wrote, after verifying its seal."""
    seal.verify(path)
    try:
        return json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise seal.unreadable(path, e) from None


def write_parquet(df: pd.DataFrame, path, metadata: dict) -> None:
    """Write ``df`` with ``metadata`` (JSON-serialisable) in the Parquet footer, atomically."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(metadata, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path, ".parquet", sealed=True) as tmp:
        pq.write_table(table, tmp)


def read_parquet_metadata(path) -> dict:
    """The footer metadata of a Parquet file the pipeline wrote, after verifying its seal."""
    seal.verify(path)
    try:
        meta = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError) as e:
        raise seal.unreadable(path, e) from None
    if METADATA_KEY not in meta:
        raise ValueError(f"{path}: no scaling_dynamics metadata in the Parquet footer")
    return json.loads(meta[METADATA_KEY])


def read_parquet(path, footer_required: bool = True) -> tuple[pd.DataFrame, dict]:
    """A Parquet file the pipeline wrote and its footer metadata, after verifying its seal; without
    ``footer_required`` a file with no footer metadata (one sealed by hand) gives ``{}``."""
    seal.verify(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise seal.unreadable(path, e) from None
    meta = table.schema.metadata or {}
    if METADATA_KEY not in meta:
        if not footer_required:
            return table.to_pandas(), {}
        raise ValueError(f"{path}: no scaling_dynamics metadata in the Parquet footer")
    return table.to_pandas(), json.loads(meta[METADATA_KEY])
