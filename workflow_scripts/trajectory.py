"""The trajectory contract: one Parquet file per cell, one row per evaluation point.

Columns (all float64 unless noted):
    step (int64)       optimiser steps taken before this evaluation (0 = initialisation)
    epoch              step / steps_per_epoch
    wall_time          seconds of training (evaluation excluded) since the cell started
    train_error, train_loss, val_error, val_loss, test_error, test_loss
    lambda             the cell's complexity measure λ (config ``training.measure``; default R_A)
    <measure>          every complexity measure by name, see ``measures.MEASURES``
Footer metadata (key ``scaling_dynamics``): the provenance block of ``provenance.provenance`` plus
    cell_id, status ("completed" | "diverged"), diverged_step (int or None), dataset_sha256.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .io import read_parquet, write_parquet

BASE_COLUMNS = ("step", "epoch", "wall_time", "train_error", "train_loss", "val_error", "val_loss",
                "test_error", "test_loss", "lambda")
STATUSES = ("completed", "diverged")


def validate_trajectory(df: pd.DataFrame, meta: dict) -> None:
    """Raise ValueError if ``df``/``meta`` break the contract above."""
    missing = [c for c in BASE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"trajectory lacks columns {missing}")
    if len(df) == 0:
        raise ValueError("trajectory has no rows")
    steps = df["step"].to_numpy()
    if not np.all(np.diff(steps) > 0):
        raise ValueError("trajectory steps are not strictly increasing")
    for col in ("train_error", "val_error", "test_error"):
        vals = df[col].to_numpy()
        finite = vals[np.isfinite(vals)]
        if np.any((finite < 0) | (finite > 1)):
            raise ValueError(f"{col} outside [0, 1]")
    for key in ("cell_id", "status", "config", "config_hash", "code", "dataset_sha256"):
        if key not in meta:
            raise ValueError(f"trajectory metadata lacks {key!r}")
    if meta["status"] not in STATUSES:
        raise ValueError(f"unknown status {meta['status']!r}")


def write_trajectory(df: pd.DataFrame, meta: dict, path) -> None:
    validate_trajectory(df, meta)
    write_parquet(df, path, meta)


def read_trajectory(path) -> tuple[pd.DataFrame, dict]:
    df, meta = read_parquet(path)
    validate_trajectory(df, meta)
    return df, meta
