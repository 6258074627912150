"""Seals: every JSON and Parquet file the pipeline writes carries a sidecar ``<file>.sha256``.

The sidecar holds the file's sha256 and name in ``sha256sum``'s format (``<hex>  <name>``), so
``sha256sum -c <file>.sha256`` in the file's folder checks it too. It is written by the same writer
as the file (``io.atomic_path(..., sealed=True)``): data to a temporary, fsync, hash, sidecar to its temporary,
rename the data, rename the sidecar. A crash between the two renames leaves a seal that does not
match, which is refused like any other change (fail closed; Snakemake reruns the incomplete job).

Every reader verifies the seal before parsing (``io.read_json``, ``io.read_parquet``,
``io.read_parquet_metadata``): a file whose seal is missing or does not match, or that cannot be
parsed, is refused with a ``RefusedFile`` whose message is one line naming the file and saying how
to remake it. Snakemake does not see edits inside ``directory()`` outputs, nor edits that keep a
file's modification time older than its consumers'; the seal does. Entry points print a
``RefusedFile`` as that one line, without a traceback (the ``sys.excepthook`` below).

    python -m workflow_scripts.seal check results      # every seal of a run
    python -m workflow_scripts.seal write my.parquet   # seal a file made elsewhere that you vouch for
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from .files import sha256_file, temporary_beside, write_synced

SUFFIX = ".sha256"
SEALED_SUFFIXES = (".json", ".parquet")  # what io writes; every such pipeline output has a seal
_LINE = re.compile(r"^([0-9a-f]{64})  (.+)\n?$")


class RefusedFile(Exception):
    """An output that must not be used: its seal is missing or does not match, or it does not parse.
    The message is one line naming the file and saying how to remake it."""


def seal_path(path) -> Path:
    return Path(f"{path}{SUFFIX}")


def seal_text(sha256: str, path) -> str:
    return f"{sha256}  {Path(path).name}\n"


def remake_hint(path) -> str:
    """How to remake ``path``: the Snakemake target is the ``directory()`` output holding it (such
    an output carries Snakemake's ``.snakemake_timestamp``), else the file itself."""
    path = Path(path)
    target = next((d for d in path.parents if (d / ".snakemake_timestamp").is_file()), path)
    return (f"remake it with `snakemake <your options> --forcerun {target}`, "
            f"or delete {target} and rerun")


def sealed_sha256(path) -> str:
    """The sha256 that ``path``'s seal records; RefusedFile if it has none or it is malformed."""
    path = Path(path)
    try:
        text = seal_path(path).read_text()
    except FileNotFoundError:
        raise RefusedFile(f"{path}: no seal ({seal_path(path).name}): not written by this pipeline's "
                          f"writer, or written before outputs were sealed; {remake_hint(path)}") from None
    m = _LINE.match(text)
    if not m or m.group(2) != path.name:
        raise RefusedFile(f"{path}: its seal {seal_path(path).name} is malformed or names another "
                          f"file; {remake_hint(path)}")
    return m.group(1)


def verify(path) -> str:
    """Check ``path`` against its seal before anything parses it; return its sha256.
    FileNotFoundError if ``path`` does not exist, RefusedFile if the seal is missing or differs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    want = sealed_sha256(path)
    have = sha256_file(path)
    if have != want:
        raise RefusedFile(f"{path}: sealed sha256 {want[:16]}…, file has {have[:16]}…: it changed "
                          f"after it was written; {remake_hint(path)}")
    return have


def check(path) -> str | None:
    """The audit's question: None if ``path`` may be used, else the one-line reason. A JSON or
    Parquet file must be sealed; any other file is checked against its seal when it has one."""
    path = Path(path)
    if path.suffix not in SEALED_SUFFIXES and not seal_path(path).is_file():
        return None
    try:
        verify(path)
    except (RefusedFile, FileNotFoundError) as e:
        return str(e)
    return None


def unreadable(path, error: Exception) -> RefusedFile:
    """A sealed file that still fails to parse, as one line naming it."""
    first = (str(error).strip().splitlines() or [""])[0]
    return RefusedFile(f"{path}: cannot be read ({type(error).__name__}: {first}); {remake_hint(path)}")


def _print_refusal(exc_type, exc, tb, _previous=sys.excepthook):
    """Entry points (``python -m workflow_scripts.<module>``) print a refusal as its one line."""
    if issubclass(exc_type, RefusedFile):
        print(f"error: {exc}", file=sys.stderr)
    else:
        _previous(exc_type, exc, tb)


sys.excepthook = _print_refusal


def write_seal(path) -> str:
    """Seal an existing file (one made outside the pipeline that you vouch for); return its sha256."""
    path = Path(path)
    sha = sha256_file(path)
    tmp = temporary_beside(seal_path(path))
    try:
        write_synced(tmp, seal_text(sha, path))
        os.replace(tmp, seal_path(path))
    finally:
        Path(tmp).unlink(missing_ok=True)
    return sha


def sealed_files(paths) -> list[Path]:
    """The files given, plus every JSON and Parquet file under the directories given."""
    out: set[Path] = set()
    for item in map(Path, paths):
        if item.is_dir():
            out.update(p for p in item.rglob("*") if p.suffix in SEALED_SUFFIXES and p.is_file()
                       and not p.name.startswith("."))
        else:
            out.add(item)
    return sorted(out)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m workflow_scripts.seal",
                                 description="Check the seals (<file>.sha256) of pipeline outputs, or "
                                             "seal files made outside the pipeline that you vouch for.")
    ap.add_argument("action", choices=("check", "write"),
                    help="check: every file given, and every .json/.parquet under folders given; "
                         "write: seal the files given as they are now")
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args(argv)
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        ap.error(f"no such file or directory: {', '.join(missing)}")
    if args.action == "write":
        for p in map(Path, args.paths):
            print(f"{write_seal(p)}  {p}")
        return 0
    files = sealed_files(args.paths)
    problems = [msg for msg in map(check, files) if msg]
    for msg in problems:
        print(msg, file=sys.stderr)
    print(f"{len(files) - len(problems)} of {len(files)} files match their seals")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
