"""The manifest: one row per nodule with its patch files, labels and a patient-level split."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from lidcvae.io import read_parquet
from lidcvae.annotations import CHARACTERISTICS

__all__ = [
    "MANIFEST_COLUMNS", "FAILURE_COLUMNS", "SPLITS", "malignancy_label", "assign_splits", "read_manifest",
]

SPLITS = ("train", "val", "test")

MANIFEST_COLUMNS = [
    "nodule_id", "patient_id", "scan_id", "series_instance_uid", "nodule_index", "readers",
    "centroid_k", "centroid_row", "centroid_col", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
    "consensus_volume_mm3", "consensus_diameter_mm", *CHARACTERISTICS, "label", "split",
    "edge", "coverage", "mask_coverage", "image_path", "mask_path", "mask_kind", "patch_size", "spacing_mm",
]
FAILURE_COLUMNS = ["patient_id", "series_instance_uid", "nodule_index", "path", "reason"]


def malignancy_label(malignancy_median: float) -> object:
    """Binary label from the readers' median malignancy (1–5): > 3 → 1, < 3 → 0, = 3 → <NA>."""
    if malignancy_median > 3:
        return 1
    if malignancy_median < 3:
        return 0
    return pd.NA


def _patient_rank_key(patient_id: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{patient_id}".encode()).hexdigest()


def assign_splits(patient_ids: pd.Series, train: float, val: float, salt: str) -> pd.Series:
    """Deterministic patient-level split: patients ordered by a salted hash, then cut by fraction.

    Every patient's nodules share a split. With at least three patients, val and test each get at
    least one patient when their fraction is non-zero, so a small cohort still has all three splits.

    Returns:
        A Series aligned with ``patient_ids`` holding "train", "val" or "test".
    """
    patients = sorted(patient_ids.unique(), key=lambda p: _patient_rank_key(p, salt))
    n = len(patients)
    n_val = int(round(val * n))
    n_test = int(round(max(1.0 - train - val, 0.0) * n))
    if n >= 3:
        n_val = max(n_val, 1) if val > 0 else 0
        n_test = max(n_test, 1) if train + val < 1 else 0
    n_train = max(n - n_val - n_test, 0)
    split_of = dict(zip(patients, np.repeat(SPLITS, [n_train, n_val, n - n_train - n_val])))
    return patient_ids.map(split_of)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest and make ``image_path`` / ``mask_path`` absolute (stored relative to its folder).

    ``mask_path`` stays empty where a nodule has no mask (the coordinates route without ``sphere_mask``).
    """
    path = Path(path)
    manifest = read_parquet(path)
    missing = [c for c in ("nodule_id", "image_path") if c not in manifest.columns]
    if missing:
        raise ValueError(f"{path}: not a nodule manifest (missing columns {missing})")
    for column in ("image_path", "mask_path"):
        if column in manifest.columns:
            manifest[column] = [str((path.parent / p).resolve()) if isinstance(p, str) and p else None for p in manifest[column]]
    return manifest
