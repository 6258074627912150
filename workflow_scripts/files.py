"""Bytes on disk, below everything else: a file's sha256 and the temporary beside a file that an
atomic write goes through. ``seal`` (sidecars), ``io`` (sealed writes) and ``provenance`` (records)
all need these, and none of them may import another's job to get them."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def temporary_beside(path: Path, suffix: str = "") -> str:
    """A new empty file ``.<name>.<random><suffix>.tmp`` in ``path``'s folder (same file system,
    so ``os.replace`` onto ``path`` is atomic; ``io.remove_stale_temporaries`` knows the pattern)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def write_synced(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` and fsync it: on disk before a rename publishes it."""
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
