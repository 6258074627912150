"""Seeds cut into the batches one job trains, and the batch's folder name.

A base module with no imports of the package: config (deep nets) and perceptron.settings both
batch seeds, and config checks the perceptron's settings, so this lives below both.
"""
from __future__ import annotations


def chunk_seeds(seeds_, per_job: int) -> list[list[int]]:
    """Sorted seeds cut into batches of ``per_job``: what one training job trains."""
    ordered = sorted(int(s) for s in seeds_)
    return [ordered[i:i + per_job] for i in range(0, len(ordered), per_job)]


def batch_name(batch: list[int]) -> str:
    return f"seeds{batch[0]}-{batch[-1]}"
