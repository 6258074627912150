"""Atomic file writes and Parquet files whose footer carries the provenance.

Nothing is ever written in place: each writer fills a temporary file in the target's directory,
fsyncs it and renames it over the final path, so a crash (SIGKILL, preemption) never leaves a
partial file where the workflow expects a finished one.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = b"scaling_dynamics"


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path next to ``path``; on success move it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(path) -> int:
    """Delete temporaries that ``atomic_path`` left beside ``path`` when its writer was killed."""
    path = Path(path)
    stale = list(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.exists() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


def write_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def write_parquet(df: pd.DataFrame, path, metadata: dict) -> None:
    """Write ``df`` with ``metadata`` (JSON-serialisable) in the Parquet footer, atomically."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(metadata, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path, ".parquet") as tmp:
        pq.write_table(table, tmp)


def read_parquet_metadata(path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise ValueError(f"{path}: no scaling_dynamics metadata in the Parquet footer")
    return json.loads(meta[METADATA_KEY])


def read_parquet(path) -> tuple[pd.DataFrame, dict]:
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if METADATA_KEY not in meta:
        raise ValueError(f"{path}: no scaling_dynamics metadata in the Parquet footer")
    return table.to_pandas(), json.loads(meta[METADATA_KEY])
