"""Sealed outputs: what one-bit flips in a trajectory's test_error column do with and without the
seal, and what verifying a seal costs next to parsing the file.

    .venv/bin/python bench/bench_seals.py [--flips 180] [--rows 40] [--reads 200]

A trajectory is written by the pipeline's writer (``trajectory.write_trajectory``, synthetic data
of the contract's shape, ``--rows`` evaluation points). Each flip (sampled without replacement
over the bits of the test_error column chunk) is read twice: with pyarrow alone, as the readers did
before seals (used with changed values / used unchanged / raised), and through
``trajectory.read_trajectory`` (refused by the seal, or not). Then the CPU time per read of
``seal.verify`` and of a plain pyarrow read of the same file, measured in this process.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workflow_scripts import seal, trajectory  # noqa: E402
from workflow_scripts.synthetic_curves import simulate_trajectories  # noqa: E402


def column_bytes(path, column: str) -> range:
    md = pq.ParquetFile(path).metadata.row_group(0)
    col = next(md.column(i) for i in range(md.num_columns) if md.column(i).path_in_schema == column)
    start = col.dictionary_page_offset or col.data_page_offset
    return range(start, start + col.total_compressed_size)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flips", type=int, default=180)
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    (df, meta), = simulate_trajectories(rng, [1000], 1, 0.5, 0.9, n_eval=args.rows)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "seed0.parquet"
        trajectory.write_trajectory(df, meta, path)
        blob = path.read_bytes()
        clean = pq.read_table(path).column("test_error").to_numpy()
        cols = column_bytes(path, "test_error")
        picks = rng.choice(len(cols) * 8, size=min(args.flips, len(cols) * 8), replace=False)
        counts = {"changed": 0, "unchanged": 0, "raised": 0, "refused": 0, "read": 0}
        for k in picks:
            flipped = bytearray(blob)
            flipped[cols.start + int(k) // 8] ^= 1 << (int(k) % 8)
            path.write_bytes(bytes(flipped))
            try:
                vals = pq.read_table(path).column("test_error").to_numpy()
                same = np.array_equal(vals, clean, equal_nan=True)
                counts["unchanged" if same else "changed"] += 1
            except Exception:
                counts["raised"] += 1
            try:
                trajectory.read_trajectory(path)
                counts["read"] += 1
            except seal.RefusedFile:
                counts["refused"] += 1
        path.write_bytes(blob)
        t0 = time.process_time()
        for _ in range(args.reads):
            seal.verify(path)
        t_verify = (time.process_time() - t0) / args.reads
        t0 = time.process_time()
        for _ in range(args.reads):
            pq.read_table(path).to_pandas()
        t_parse = (time.process_time() - t0) / args.reads
        size = len(blob)
    print(f"trajectory: {args.rows} rows, {size} bytes; test_error chunk {len(cols)} bytes; "
          f"{len(picks)} one-bit flips")
    print(f"without seals (pyarrow alone): {counts['changed']} used with changed values, "
          f"{counts['unchanged']} used unchanged, {counts['raised']} raised")
    print(f"with seals (read_trajectory): {counts['refused']} refused, {counts['read']} read")
    print(f"CPU per read: seal.verify {t_verify * 1e6:.0f} µs, pyarrow read+to_pandas "
          f"{t_parse * 1e6:.0f} µs")
    return 0 if counts["read"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
