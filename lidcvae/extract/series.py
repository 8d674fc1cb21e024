"""One CT series as HU on disk: check its slices against the database, then read only what is needed.

Orientation everywhere: arrays are (z, y, x) = (slice, row, column); positions are DICOM patient
coordinates (LPS) in mm. Only axial series (orientation 1\\0\\0\\0\\1\\0, as in all of LIDC-IDRI) are
accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pydicom
from pydicom.pixels import apply_modality_lut

from lidcvae.io import raise_if_environment

__all__ = ["SeriesError", "SeriesSlices", "SliceStack", "SlabReader", "series_geometry"]

AXIAL = "1\\0\\0\\0\\1\\0"
#: Stored HU are clipped to the CT range; values below (e.g. the -2000/-3024 outside the scanner's
#: field of view) would otherwise read as something denser-than-nothing after resampling.
HU_RANGE = (-1024, 3071)
_Z_TOLERANCE_MM = 0.01


class SeriesError(ValueError):
    """A series that cannot be used: unknown slice positions, gaps, mixed geometry, unreadable pixels."""


@dataclass(frozen=True)
class SeriesSlices:
    """Where a series' slices lie.

    Attributes:
        files: (Z,) file paths of the slices on disk, sorted by z.
        slice_z_mm: (Z,) their z positions, increasing.
        database_k: (Z,) index of each slice in the database's full list of z positions.
        origin_xy_mm: (x, y) of pixel (row 0, col 0), patient coordinates.
        spacing_yx_mm: (row spacing, column spacing).
        shape_yx: (rows, cols).
    """

    files: tuple[str, ...]
    slice_z_mm: np.ndarray
    database_k: np.ndarray
    origin_xy_mm: np.ndarray
    spacing_yx_mm: np.ndarray
    shape_yx: tuple[int, int]


@dataclass(frozen=True)
class SliceStack:
    """Consecutive slices read from disk: ``hu`` (Z, Y, X) int16 at ``slice_z_mm`` (Z,)."""

    hu: np.ndarray
    slice_z_mm: np.ndarray


def _single(files: pd.DataFrame, column: str, series_uid: str):
    values = files[column].unique()
    if len(values) != 1:
        raise SeriesError(f"series {series_uid}: slices disagree on {column}: {list(values)[:4]}")
    return values[0]


def series_geometry(files: pd.DataFrame, database_z_mm: np.ndarray) -> SeriesSlices:
    """Check a series' index rows against the database's z positions.

    The slices on disk may be a contiguous part of the series (a partial download): that is kept.
    A slice whose z is not in the database, or a gap between slices on disk, is an error.

    Args:
        files: index rows of one series (``dicom_index.INDEX_COLUMNS``).
        database_z_mm: (K,) sorted z positions of the full series from the annotation database.

    Raises:
        SeriesError: naming the series and the offending z or file.
    """
    series_uid = files["series_instance_uid"].iloc[0]
    orientation = _single(files, "orientation", series_uid)
    if orientation != AXIAL:
        raise SeriesError(f"series {series_uid}: not an axial series (ImageOrientationPatient {orientation})")
    # Several files at one z: keep the lowest InstanceNumber, as pylidc does.
    files = files.sort_values(["z_mm", "instance_number"]).drop_duplicates("z_mm", keep="first")
    z_mm = files["z_mm"].to_numpy(float)
    database_k = np.abs(z_mm[:, None] - database_z_mm[None, :]).argmin(axis=1)
    off_grid = np.abs(database_z_mm[database_k] - z_mm) > _Z_TOLERANCE_MM
    if off_grid.any():
        bad = files[off_grid].iloc[0]
        raise SeriesError(
            f"series {series_uid}: slice z={bad.z_mm:.3f} mm ({bad.path}) is not among the database's z positions"
        )
    gaps = np.flatnonzero(np.diff(database_k) != 1)
    if gaps.size:
        g = gaps[0]
        missing = int(database_k[g + 1] - database_k[g] - 1)
        raise SeriesError(
            f"series {series_uid}: {missing} slice(s) missing between z={z_mm[g]:.3f} and z={z_mm[g + 1]:.3f} mm"
        )
    return SeriesSlices(
        files=tuple(files["path"]),
        slice_z_mm=z_mm,
        database_k=database_k,
        origin_xy_mm=np.array([_single(files, "x0_mm", series_uid), _single(files, "y0_mm", series_uid)]),
        spacing_yx_mm=np.array(
            [_single(files, "row_spacing_mm", series_uid), _single(files, "col_spacing_mm", series_uid)]
        ),
        shape_yx=(int(_single(files, "rows", series_uid)), int(_single(files, "cols", series_uid))),
    )


def _read_hu(path: str, shape_yx: tuple[int, int]) -> np.ndarray:
    """One slice as HU, (Y, X) int16 clipped to ``HU_RANGE``; errors name the file."""
    try:
        dataset = pydicom.dcmread(path)
        stored = dataset.pixel_array
        if stored.shape != shape_yx:
            raise SeriesError(f"{path}: pixel array {stored.shape} does not match Rows/Columns {shape_yx}")
        return _stored_to_hu(stored, dataset)
    except SeriesError:
        raise
    except Exception as error:  # pydicom raises many types for damaged pixel data
        raise_if_environment(error, path, "reading")
        raise SeriesError(f"{path}: cannot decode pixel data ({type(error).__name__}: {error})") from error


def _stored_to_hu(stored: np.ndarray, dataset: pydicom.Dataset) -> np.ndarray:
    """Stored values (Y, X) to HU, (Y, X) int16 clipped to ``HU_RANGE``, as ``apply_modality_lut`` + rint.

    CT slices almost always carry RescaleSlope 1 and an integer intercept: then the HU are the stored
    integers plus the intercept, added in int32: exact, and it skips pydicom's float64 route, which cost
    about as much as decoding the slice (benchmarks/RESULTS.md). Anything else takes the float route.
    """
    has_rescale = "ModalityLUTSequence" not in dataset and "RescaleSlope" in dataset and "RescaleIntercept" in dataset
    if has_rescale and float(dataset.RescaleSlope) == 1.0 and float(dataset.RescaleIntercept).is_integer():
        hu = stored.astype(np.int32) + int(float(dataset.RescaleIntercept))
    else:
        hu = np.rint(apply_modality_lut(stored, dataset))
    return np.clip(hu, *HU_RANGE).astype(np.int16)


class SlabReader:
    """Reads a series slab by slab, keeping in memory only the slices of the latest slab.

    Moving through nodules in z order re-uses the slices two neighbouring slabs share, so each file is
    decoded about once while memory stays at one slab, not one scan.
    """

    def __init__(self, geometry: SeriesSlices) -> None:
        self.geometry = geometry
        self._slices: dict[int, np.ndarray] = {}

    def slab(self, z_min_mm: float, z_max_mm: float) -> SliceStack:
        """The slices with z in [z_min_mm, z_max_mm]: (Z, Y, X) int16 HU and their z (mm)."""
        z_mm = self.geometry.slice_z_mm
        keep = np.flatnonzero((z_mm >= z_min_mm) & (z_mm <= z_max_mm))
        self._slices = {i: self._slices.get(i) for i in keep}
        for i in keep:
            if self._slices[i] is None:
                self._slices[i] = _read_hu(self.geometry.files[i], self.geometry.shape_yx)
        hu = np.stack([self._slices[i] for i in keep]) if keep.size else np.empty((0, *self.geometry.shape_yx), np.int16)
        return SliceStack(hu=hu, slice_z_mm=z_mm[keep])
