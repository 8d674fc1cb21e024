"""Fingerprints of the data a cohort is extracted from, so that a changed folder reruns what it changes.

Two levels, both cheap: ``listing_digest`` is taken at DAG time over every file the index would read
(the index rule's param: any added, removed or replaced file re-indexes); ``series_digests`` is taken over
each series' rows of the tables a per-series job reads (the index rows carry each file's size and mtime),
so after a re-index only the series whose rows changed are extracted again.

Names + sizes + mtimes, not a digest of the headers: on the real whole series (``lidc-whole``, 133
slices, warm cache, 2 busy cores) the listing costs ~16 µs a file (2.1 ms), a header digest ~2.3 ms a
file (pydicom, header only) and a content digest 0.5-1.2 ms a file. For the whole of LIDC-IDRI (1,018 scans,
~240k files) that is ~4 s against ~9 min on every DAG build (a cold network file system: stat ~0.1-1 ms,
so ~0.5-4 min). A copy that keeps both size and mtime (``cp -p`` of a same-size file) is not seen:
``--forcerun extract_index`` redoes the index and the series whose rows changed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from lidcvae.extract.dicom_index import file_stat, find_dicom_files
from lidcvae.extract.volumes import image_files

__all__ = ["listing_digest", "dicom_listing_digest", "image_listing_digest", "series_digests"]


def listing_digest(files: list[Path], root: str | os.PathLike) -> str:
    """SHA-256 of the lines ``<path relative to root>\\t<size>\\t<mtime_ns>`` of ``files`` (in their order)."""
    digest = hashlib.sha256()
    for path in files:
        size, mtime_ns = file_stat([path])
        digest.update(f"{os.path.relpath(path, root)}\t{size}\t{mtime_ns}\n".encode())
    return digest.hexdigest()


def dicom_listing_digest(root: str | os.PathLike) -> str:
    """The listing digest of the DICOM files the readings route indexes under ``root``; a fixed text when
    ``root`` is missing or empty (the index step says why, in its log)."""
    if not Path(root).is_dir():
        return "no folder"
    return listing_digest(find_dicom_files(root), root)


def image_listing_digest(root: str | os.PathLike) -> str:
    """The listing digest of the DICOM and volume files (with ``.mhd`` data files) the coordinates route
    reads under ``root``; a fixed text when ``root`` is not a folder."""
    if not Path(root).is_dir():
        return "no folder"
    return listing_digest(image_files(root), root)


def series_digests(table: pd.DataFrame, key: str = "series_instance_uid") -> dict[str, str]:
    """``{series: SHA-256}`` of each series' rows of ``table`` (all columns, in table order, as CSV).

    Args:
        table: an index or candidates table with a ``key`` column; rows without one are left out.
        key: the column naming a row's series.

    Returns:
        One digest per series; it changes whenever any of the series' rows does (a file added, removed or
        replaced, a table row edited).
    """
    return {str(series): hashlib.sha256(rows.to_csv(index=False, lineterminator="\n").encode()).hexdigest()
            for series, rows in table.groupby(key, sort=False)}
