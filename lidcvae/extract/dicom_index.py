"""Index a DICOM tree once: header-only reads, one row per file, grouped by Series Instance UID.

Any folder layout works (TCIA's descriptive folders, UID folders, flat): files are matched to scans by
their UIDs, never by their paths, and the tree is walked exactly once per extraction.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pydicom
from tqdm.auto import tqdm

from lidcvae.io import UnsafePathError, raise_if_environment, safe_name

__all__ = ["INDEX_COLUMNS", "DicomRootError", "find_dicom_files", "file_stat", "read_header", "index_dicom_tree",
           "index_dicom_files"]

log = logging.getLogger(__name__)

#: Index columns; positions and spacings in mm, patient coordinates (DICOM LPS). ``size_bytes`` and
#: ``mtime_ns`` are the file's stat when indexed: a replaced file changes its series' rows, which is what
#: reruns that series' extraction under Snakemake (``listing.series_digests``).
INDEX_COLUMNS = [
    "path", "patient_id", "study_instance_uid", "series_instance_uid", "modality", "instance_number",
    "x0_mm", "y0_mm", "z_mm", "row_spacing_mm", "col_spacing_mm", "rows", "cols", "orientation",
    "size_bytes", "mtime_ns",
]
_HEADER_TAGS = [
    "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "InstanceNumber",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
]


class DicomRootError(FileNotFoundError):
    """The DICOM root does not exist or holds no DICOM file."""


def find_dicom_files(root: str | os.PathLike) -> list[Path]:
    """Every ``*.dcm`` file under ``root`` (hidden files skipped), sorted for a stable order.

    Symlinked folders are followed (a download assembled from links to several disks), each real
    folder once, so a link back up the tree cannot loop.
    """
    root = Path(root)
    if not root.is_dir():
        raise DicomRootError(f"DICOM root does not exist or is not a folder: {root}")
    files, seen = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen:
            subfolders.clear()
            continue
        seen.add((stat.st_dev, stat.st_ino))
        files += [Path(folder) / name for name in names if name.lower().endswith(".dcm") and not name.startswith(".")]
    return sorted(files)


def file_stat(paths: list[Path]) -> tuple[int, int]:
    """``(size_bytes, mtime_ns)`` of the files that make up one image: sizes summed, the latest mtime
    (links followed); ``(-1, -1)`` for a file that cannot be stat'ed, so its return changes them too."""
    size, mtime = 0, 0
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            return -1, -1
        size, mtime = size + stat.st_size, max(mtime, stat.st_mtime_ns)
    return size, mtime


def read_header(path: Path) -> dict:
    """One index row from a file's header (pixel data is not read).

    Raises:
        ValueError: the file is not DICOM, is truncated before the header ends, lacks a tag the
            extraction needs, or has a PatientID / SeriesInstanceUID unfit for a file name (they name
            the output files); the message names the file.
        StorageError: the file cannot be read for a reason of the machine (permission, I/O error).
    """
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        position = [float(v) for v in header.ImagePositionPatient]
        row_spacing, col_spacing = (float(v) for v in header.PixelSpacing)
        return {
            "path": str(path),
            "patient_id": safe_name(str(header.PatientID), "PatientID"),
            "study_instance_uid": str(header.StudyInstanceUID).strip(),
            "series_instance_uid": safe_name(str(header.SeriesInstanceUID).strip(), "SeriesInstanceUID"),
            "modality": str(header.get("Modality", "")),
            "instance_number": int(header.get("InstanceNumber", 0) or 0),
            "x0_mm": position[0],
            "y0_mm": position[1],
            "z_mm": position[2],
            "row_spacing_mm": row_spacing,
            "col_spacing_mm": col_spacing,
            "rows": int(header.Rows),
            "cols": int(header.Columns),
            "orientation": "\\".join(f"{float(v):g}" for v in header.ImageOrientationPatient),
            **dict(zip(("size_bytes", "mtime_ns"), file_stat([path]))),
        }
    except UnsafePathError as error:
        raise ValueError(f"{path}: {error}") from error
    except Exception as error:  # noqa: BLE001 - pydicom raises a dozen types on malformed files
        raise_if_environment(error, path, "reading")
        # (struct.error, BytesLengthException, IndexError on a 2-value ImagePositionPatient, ...); any of
        # them means "this file is unusable", and that must never stop the walk over the others.
        raise ValueError(f"{path}: not a readable CT DICOM header ({type(error).__name__}: {error})") from error


def index_dicom_tree(root: str | os.PathLike, threads: int = 4, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read every header under ``root`` once.

    Args:
        root: the DICOM root.
        threads: parallel header reads (I/O bound).
        progress: show a progress bar.

    Returns:
        ``(index, unreadable)``: the index (``INDEX_COLUMNS``, one row per readable file) and a table
        ``path, reason`` of files that could not be read.
    """
    files = find_dicom_files(root)
    if not files:
        raise DicomRootError(f"no .dcm file found under DICOM root {root}")
    return index_dicom_files(files, threads, progress)


def index_dicom_files(files: list[Path], threads: int = 4, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the headers of ``files`` (found by one walk): ``(index, unreadable)`` as ``index_dicom_tree``."""

    def read(path: Path) -> dict:
        try:
            return read_header(path)
        except ValueError as error:
            return {"path": str(path), "reason": str(error)}

    with ThreadPoolExecutor(max_workers=threads) as pool:
        rows = list(tqdm(pool.map(read, files), total=len(files), desc="index DICOM", unit="file", disable=not progress))
    unreadable = pd.DataFrame([r for r in rows if "reason" in r], columns=["path", "reason"])
    for reason in unreadable["reason"]:
        log.warning("skipping unreadable file: %s", reason)
    index = pd.DataFrame([r for r in rows if "reason" not in r], columns=INDEX_COLUMNS)
    return index, unreadable
