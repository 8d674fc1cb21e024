"""CT volumes for the coordinates route: a DICOM series or a volume file, found by Series Instance UID.

Under an image root the route finds, in one walk, every DICOM file (indexed header-only, as the LIDC
route does) and every volume file that SimpleITK reads whose name is a series UID
(``<seriesuid>.mhd``, ``.nii``, ``.nii.gz``, ``.nrrd``: LUNA16's layout). Either becomes a ``CTVolume``:
HU on an axis-aligned grid in DICOM / ITK patient coordinates (LPS, mm), read slab by slab.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from lidcvae.extract.dicom_index import INDEX_COLUMNS, DicomRootError, file_stat, index_dicom_files
from lidcvae.extract.series import HU_RANGE, SeriesError, SlabReader, SliceGap, SliceStack, series_geometry
from lidcvae.io import UnsafePathError, safe_name

__all__ = [
    "VOLUME_SUFFIXES", "IMAGE_INDEX_COLUMNS", "volume_series_uid", "volume_files", "image_files", "index_images",
    "CTVolume", "open_volume",
]

log = logging.getLogger(__name__)

#: File suffixes of single-file volumes SimpleITK reads (``.mhd`` reads its ``.raw`` beside it).
VOLUME_SUFFIXES = (".mhd", ".nii.gz", ".nii", ".nrrd")
#: The image index: the DICOM header index plus ``kind`` ("dicom" per slice, "volume" per file).
IMAGE_INDEX_COLUMNS = [*INDEX_COLUMNS, "kind"]
#: Slice steps above this multiple of the median step mean missing slices.
_GAP_FACTOR = 1.5


def volume_series_uid(path: str | os.PathLike, warn: bool = True) -> str | None:
    """The series UID a volume file is named by (``<uid>.nii.gz`` → ``<uid>``); None if not a volume or
    if the name is unfit to name output files (``lidcvae.io.safe_name``; logged unless ``warn`` is False)."""
    name = Path(path).name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            try:
                return safe_name(name[: -len(suffix)], "series UID")
            except UnsafePathError:
                if warn:
                    log.warning("skipping %s: its name is not a series UID usable in file names", path)
                return None
    return None


def volume_files(path: str | os.PathLike) -> list[Path]:
    """The files a volume is read from: the file, and for ``.mhd`` the data file its header names
    (``ElementDataFile``, beside it) when that is one file."""
    path = Path(path)
    data_file = _data_file(str(path)) if path.name.lower().endswith(".mhd") else "(not .mhd)"
    if data_file.startswith("(") or Path(data_file).name.upper() in ("LOCAL", "LIST"):
        return [path]
    return [path, Path(data_file)]


def image_files(root: str | os.PathLike) -> list[Path]:
    """Every file ``index_images`` and the per-series reads take from ``root``, sorted: the DICOM files,
    the volume files and their ``.mhd`` data files; a listing to fingerprint (``listing.listing_digest``),
    so it walks quietly. Empty when ``root`` is not a folder."""
    if not Path(root).is_dir():
        return []
    dicom, volumes = _walk_images(Path(root), warn=False)
    return sorted({*dicom, *(file for volume in volumes for file in volume_files(volume))})


def _walk_images(root: Path, warn: bool = True) -> tuple[list[Path], list[Path]]:
    """(DICOM files, volume files) under ``root``, each sorted, in one walk; symlinked folders are followed,
    each real folder once (as ``dicom_index.find_dicom_files``)."""
    dicom, volumes, seen = [], [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen:
            subfolders.clear()
            continue
        seen.add((stat.st_dev, stat.st_ino))
        for name in names:
            if name.startswith("."):
                continue
            if name.lower().endswith(".dcm"):
                dicom.append(Path(folder) / name)
            elif volume_series_uid(name, warn):
                volumes.append(Path(folder) / name)
    return sorted(dicom), sorted(volumes)


def index_images(root: str | os.PathLike, threads: int = 4, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Index every DICOM file (header only) and every volume file under ``root``.

    Returns:
        ``(index, unreadable)``: ``IMAGE_INDEX_COLUMNS`` rows (volume rows carry only ``path``,
        ``series_instance_uid``, ``kind`` and the stat of the file with its ``.mhd`` data file) and a
        ``path, reason`` table of DICOM files that could not be read.

    Raises:
        DicomRootError: ``root`` is not a folder, or holds neither DICOM nor volume files.
    """
    root = Path(root)
    if not root.is_dir():
        raise DicomRootError(f"images_root does not exist or is not a folder: {root}")
    dicom, volumes = _walk_images(root)
    if not dicom and not volumes:
        raise DicomRootError(f"no DICOM (.dcm) or volume ({', '.join(VOLUME_SUFFIXES)}) file found under images_root {root}")

    headers, unreadable = index_dicom_files(dicom, threads, progress)
    headers = headers.assign(kind="dicom")
    stats = [file_stat(volume_files(p)) for p in volumes]  # a replaced .raw changes its series' rows too
    files = pd.DataFrame({"path": [str(p) for p in volumes], "series_instance_uid": [volume_series_uid(p) for p in volumes],
                          "size_bytes": [size for size, _ in stats], "mtime_ns": [mtime for _, mtime in stats],
                          "kind": "volume"})
    parts = [part for part in (headers, files) if len(part)]
    index = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=IMAGE_INDEX_COLUMNS)
    return index.reindex(columns=IMAGE_INDEX_COLUMNS), unreadable


class CTVolume:
    """HU on an axis-aligned LPS grid, read slab by slab.

    Attributes:
        source: the file (or first slice) the volume was read from, for messages.
        patient_id: DICOM PatientID, or None for a volume file.
        x_mm, y_mm, z_mm: (X,), (Y,), (Z,) increasing voxel-centre positions along each patient axis.
        slice_k: (Z,) index of each slice in the series, counting the slices missing from a gap.
    """

    def __init__(self, source: str, patient_id: str | None, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray,
                 slabs: SlabReader | None = None, hu: np.ndarray | None = None, slice_k: np.ndarray | None = None) -> None:
        self.source, self.patient_id = source, patient_id
        self.x_mm, self.y_mm, self.z_mm = x_mm, y_mm, z_mm
        self.slice_k = np.arange(z_mm.size, dtype=float) if slice_k is None else slice_k
        self._slabs, self._hu = slabs, hu

    def slab(self, z_min_mm: float, z_max_mm: float) -> SliceStack:
        """The slices with z in [z_min_mm, z_max_mm]: (Z, Y, X) int16 HU and their z (mm)."""
        if self._slabs is not None:
            return self._slabs.slab(z_min_mm, z_max_mm)
        keep = np.flatnonzero((self.z_mm >= z_min_mm) & (self.z_mm <= z_max_mm))
        return SliceStack(hu=self._hu[keep], slice_z_mm=self.z_mm[keep])

    def contains(self, point_mm: np.ndarray) -> bool:
        """Whether (x, y, z) mm lies within the volume's voxels (half a voxel beyond the outer centres)."""
        for axis_mm, value in zip((self.x_mm, self.y_mm, self.z_mm), point_mm):
            half = (axis_mm[-1] - axis_mm[0]) / max(axis_mm.size - 1, 1) / 2
            if not axis_mm[0] - half <= value <= axis_mm[-1] + half:
                return False
        return True

    def extent_text(self) -> str:
        """The voxel-centre extent, for messages: 'x [a, b], y [...], z [...] mm'."""
        axes = zip("xyz", (self.x_mm, self.y_mm, self.z_mm))
        return ", ".join(f"{name} [{axis[0]:.1f}, {axis[-1]:.1f}]" for name, axis in axes) + " mm"


def _dicom_volume(files: pd.DataFrame, stored_values_are_hu: bool) -> CTVolume:
    """A DICOM series from its index rows; the slices' own z positions are the grid (no database).

    With no database to say where slices belong, a step above ``_GAP_FACTOR`` times the median step
    is a gap: rows whose patch reaches it fail naming it (``SlabReader.slab``), the others are cut.
    """
    geometry = series_geometry(files, np.unique(files["z_mm"].to_numpy(float)), stored_values_are_hu)
    steps = np.diff(geometry.slice_z_mm)
    slice_k = np.arange(geometry.slice_z_mm.size, dtype=float)
    if steps.size:
        median = float(np.median(steps))
        gaps = tuple(SliceGap(geometry.slice_z_mm[g], geometry.slice_z_mm[g + 1], max(int(round(steps[g] / median)) - 1, 1))
                     for g in np.flatnonzero(steps > _GAP_FACTOR * median))
        geometry = replace(geometry, gaps=gaps)
        for gap in gaps:  # the slices above a gap sit that many places further up the series
            slice_k[geometry.slice_z_mm > gap.z_before_mm] += gap.missing
            log.warning("series %s: %s (median step %.3f mm); rows whose patch reaches it fail",
                        files["series_instance_uid"].iloc[0], gap, median)
    rows, cols = geometry.shape_yx
    # The same positions the LIDC route computes for its in-plane indices.
    y_mm = geometry.origin_xy_mm[1] + np.arange(rows) * geometry.spacing_yx_mm[0]
    x_mm = geometry.origin_xy_mm[0] + np.arange(cols) * geometry.spacing_yx_mm[1]
    patient_ids = files["patient_id"].dropna().unique()
    return CTVolume(geometry.files[0], str(patient_ids[0]) if len(patient_ids) else None, x_mm, y_mm,
                    geometry.slice_z_mm, slabs=SlabReader(geometry, stored_values_are_hu), slice_k=slice_k)


def _file_volume(path: str) -> CTVolume:
    """A volume file read whole by SimpleITK, reoriented so its array axes run along +x, +y, +z (LPS)."""
    import SimpleITK as sitk

    printed: list[str] = []
    try:
        with _stderr_captured(printed):
            image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = _read_failure(path, str(error), "".join(printed))
        raise SeriesError(f"{path}: SimpleITK cannot read this volume: {reason}") from error
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise SeriesError(f"{path}: not a 3-D single-channel CT volume ({image.GetDimension()}-D, "
                          f"{image.GetNumberOfComponentsPerPixel()} component(s))")
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if not np.allclose(np.abs(direction), np.round(np.abs(direction)), atol=1e-4):
        raise SeriesError(f"{path}: oblique volume (direction {np.round(direction, 4).tolist()}); only axis-aligned volumes are supported")
    image = sitk.DICOMOrient(image, "LPS")  # identity direction: array (z, y, x) increases along x, y, z
    stored = sitk.GetArrayFromImage(image)
    if stored.dtype.kind == "f":  # a float volume (e.g. resampled NIfTI) is rounded; integers are taken as they are
        stored = np.rint(stored)
    hu = np.clip(stored, *HU_RANGE).astype(np.int16)
    origin, spacing = np.array(image.GetOrigin()), np.array(image.GetSpacing())
    x_mm, y_mm, z_mm = (origin[axis] + np.arange(hu.shape[2 - axis]) * spacing[axis] for axis in range(3))
    return CTVolume(str(path), None, x_mm, y_mm, z_mm, hu=hu)


#: The C library's stderr is one per process: one capture at a time.
_STDERR_LOCK = threading.Lock()


@contextmanager
def _stderr_captured(printed: list[str]) -> Iterator[None]:
    """Send what C++ code writes to file descriptor 2 during the block into ``printed`` (MetaIO prints its
    reasons there, not in the exception, where they reach the console unattributed)."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as buffer:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(buffer.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            buffer.seek(0)
            printed.append(buffer.read().decode(errors="replace"))


def _read_failure(path: str, error: str, printed: str) -> str:
    """SimpleITK's own reason for a failed read, from its exception and what MetaIO printed:
    'missing .raw file X', 'short .raw file X: N of M bytes', 'bad header: ...', else its last line."""
    short = re.search(r"ideal = (\d+) : actual = (\d+)", printed)
    if short:
        return f"short .raw file {_data_file(path)}: {short.group(2)} of {short.group(1)} bytes"
    if "Cannot open data file" in printed:
        return f"missing .raw file {_data_file(path)}"
    if "Unable to determine ImageIO reader" in error:
        return "bad header: no SimpleITK reader recognises it"
    lines = [line.strip() for line in printed.splitlines() if line.strip()]
    if lines and str(path).lower().endswith(".mhd"):
        return "bad header: " + "; ".join(lines)
    return "; ".join(lines or [error.strip().splitlines()[-1] if error.strip() else "no reason given"])


def _data_file(mhd_path: str) -> str:
    """The data file an .mhd header names (ElementDataFile, beside the header), for messages."""
    try:
        header = Path(mhd_path).read_text(errors="replace")
    except OSError:
        return "(unnamed)"
    named = re.search(r"^\s*ElementDataFile\s*=\s*(.+?)\s*$", header, flags=re.MULTILINE)
    return str(Path(mhd_path).parent / named.group(1)) if named else "(ElementDataFile not in the header)"


def open_volume(files: pd.DataFrame, stored_values_are_hu: bool) -> CTVolume:
    """The CT volume of one series from its image index rows (``IMAGE_INDEX_COLUMNS``).

    Raises:
        SeriesError: the series is found twice (DICOM and a file, or two files), is not axial / axis
            aligned, has two different slices at one position, or cannot be read (SimpleITK's own
            reason: missing / short .raw, bad header); the message names the series or the file.
    """
    series_uid = str(files["series_instance_uid"].iloc[0])
    kinds = files["kind"].value_counts()
    if kinds.get("volume", 0) > 1 or (kinds.get("volume", 0) and kinds.get("dicom", 0)):
        paths = list(files[files["kind"] == "volume"]["path"]) + list(files[files["kind"] == "dicom"]["path"][:1])
        raise SeriesError(f"series {series_uid} is found more than once under images_root ({', '.join(paths)}); keep one")
    if kinds.get("volume", 0):
        return _file_volume(files["path"].iloc[0])
    return _dicom_volume(files, stored_values_are_hu)
