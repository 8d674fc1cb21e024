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

__all__ = ["SeriesError", "SliceGap", "SeriesSlices", "SliceStack", "SlabReader", "series_geometry"]

AXIAL = "1\\0\\0\\0\\1\\0"
#: Stored HU are clipped to the CT range; values below (e.g. the -2000/-3024 outside the scanner's
#: field of view) would otherwise read as something denser-than-nothing after resampling.
HU_RANGE = (-1024, 3071)
_Z_TOLERANCE_MM = 0.01


class SeriesError(ValueError):
    """A series (or a patch of it) that cannot be used: unknown slice positions, two different slices at
    one position, a patch over missing slices, mixed geometry, unreadable pixels, no way to HU."""


@dataclass(frozen=True)
class SliceGap:
    """Slices missing between two neighbouring slices on disk, at ``z_before_mm`` < ``z_after_mm``."""

    z_before_mm: float
    z_after_mm: float
    missing: int

    def __str__(self) -> str:
        return f"{self.missing} slice(s) missing between z={self.z_before_mm:.3f} and z={self.z_after_mm:.3f} mm"


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
        gaps: the runs of missing slices between slices on disk; a slab that reaches into one is refused.
    """

    files: tuple[str, ...]
    slice_z_mm: np.ndarray
    database_k: np.ndarray
    origin_xy_mm: np.ndarray
    spacing_yx_mm: np.ndarray
    shape_yx: tuple[int, int]
    gaps: tuple[SliceGap, ...] = ()


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


def series_geometry(files: pd.DataFrame, database_z_mm: np.ndarray, stored_values_are_hu: bool) -> SeriesSlices:
    """Check a series' index rows against the database's z positions.

    The slices on disk may be a contiguous part of the series (a partial download): that is kept. Slices
    missing inside it are recorded as ``gaps``: the patches that do not reach them are still cut, the
    ones that do are refused by ``SlabReader.slab`` (so one lost slice fails only the nodules near it).
    Several files at one z are one slice if their pixels give the same HU (one is kept); if not, the
    series is refused, as nothing tells which one is right.

    Args:
        files: index rows of one series (``dicom_index.INDEX_COLUMNS``).
        database_z_mm: (K,) sorted z positions of the full series from the annotation database.
        stored_values_are_hu: ``extract.stored_values_are_hu``, to compare duplicates lacking rescale tags.

    Raises:
        SeriesError: naming the series and the offending z or file(s).
    """
    series_uid = files["series_instance_uid"].iloc[0]
    orientation = _single(files, "orientation", series_uid)
    if orientation != AXIAL:
        raise SeriesError(f"series {series_uid}: not an axial series (ImageOrientationPatient {orientation})")
    files = _one_file_per_z(files, series_uid, stored_values_are_hu)
    z_mm = files["z_mm"].to_numpy(float)
    database_k = np.abs(z_mm[:, None] - database_z_mm[None, :]).argmin(axis=1)
    off_grid = np.abs(database_z_mm[database_k] - z_mm) > _Z_TOLERANCE_MM
    if off_grid.any():
        bad = files[off_grid].iloc[0]
        raise SeriesError(
            f"series {series_uid}: slice z={bad.z_mm:.3f} mm ({bad.path}) is not among the database's z positions"
        )
    gaps = tuple(SliceGap(z_mm[g], z_mm[g + 1], int(database_k[g + 1] - database_k[g] - 1))
                 for g in np.flatnonzero(np.diff(database_k) != 1))
    return SeriesSlices(
        files=tuple(files["path"]),
        slice_z_mm=z_mm,
        database_k=database_k,
        origin_xy_mm=np.array([_single(files, "x0_mm", series_uid), _single(files, "y0_mm", series_uid)]),
        spacing_yx_mm=np.array(
            [_single(files, "row_spacing_mm", series_uid), _single(files, "col_spacing_mm", series_uid)]
        ),
        shape_yx=(int(_single(files, "rows", series_uid)), int(_single(files, "cols", series_uid))),
        gaps=gaps,
    )


def _one_file_per_z(files: pd.DataFrame, series_uid: str, stored_values_are_hu: bool) -> pd.DataFrame:
    """The index rows sorted by z, one per z: the lowest InstanceNumber (as pylidc), once every other file
    at its z is known to hold the same HU; two different slices at one z raise ``SeriesError`` naming both."""
    files = files.sort_values(["z_mm", "instance_number", "path"])
    shape_yx = (int(files["rows"].iloc[0]), int(files["cols"].iloc[0]))
    for _, same_z in files[files.duplicated("z_mm", keep=False)].groupby("z_mm"):
        kept, *others = same_z["path"]
        kept_hu = _read_hu(kept, shape_yx, stored_values_are_hu)
        for other in others:
            if not np.array_equal(kept_hu, _read_hu(other, shape_yx, stored_values_are_hu)):
                raise SeriesError(f"series {series_uid}: two different slices at z={same_z['z_mm'].iloc[0]:.3f} mm, "
                                  f"{kept} and {other} (same ImagePositionPatient, different pixel data); "
                                  "remove the wrong one")
    return files.drop_duplicates("z_mm", keep="first")


def _read_hu(path: str, shape_yx: tuple[int, int], stored_values_are_hu: bool) -> np.ndarray:
    """One slice as HU, (Y, X) int16 clipped to ``HU_RANGE``; errors name the file (and the tag)."""
    try:
        dataset = pydicom.dcmread(path)
        stored = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for damaged pixel data
        raise_if_environment(error, path, "reading")
        raise SeriesError(f"{path}: cannot decode pixel data ({type(error).__name__}: {error})") from error
    if stored.shape != shape_yx:
        raise SeriesError(f"{path}: pixel array {stored.shape} does not match Rows/Columns {shape_yx}")
    _check_modality_transform(path, dataset, stored_values_are_hu)
    try:
        return _stored_to_hu(stored, dataset)
    except Exception as error:  # a damaged ModalityLUTSequence (KeyError, TypeError, IndexError ...)
        raise SeriesError(f"{path}: its ModalityLUTSequence cannot be applied ({type(error).__name__}: {error})") from error


def _check_modality_transform(path: str, dataset: pydicom.Dataset, stored_values_are_hu: bool) -> None:
    """Refuse a CT slice whose stored values cannot be turned into HU, instead of taking them as HU.

    Without RescaleSlope / RescaleIntercept (and no ModalityLUTSequence) pydicom returns the stored
    values unchanged: on LIDC-IDRI that is every voxel +1,024 HU. ``extract.stored_values_are_hu`` says
    they already are HU. An empty ModalityLUTSequence is skipped by pydicom just as silently.
    """
    if "ModalityLUTSequence" in dataset:
        if not dataset.ModalityLUTSequence:
            raise SeriesError(f"{path}: its ModalityLUTSequence is empty, so its stored values cannot be turned into HU")
        return
    missing = [tag for tag in ("RescaleSlope", "RescaleIntercept") if dataset.get(tag) in (None, "")]
    if missing and str(dataset.get("Modality", "CT")) == "CT" and not stored_values_are_hu:
        raise SeriesError(f"{path}: {' and '.join(missing)} missing, so its stored values cannot be turned into HU; "
                          "if they already are HU, set extract.stored_values_are_hu: true")


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

    Args:
        geometry: the series.
        stored_values_are_hu: ``extract.stored_values_are_hu``: slices without rescale tags hold HU.
    """

    def __init__(self, geometry: SeriesSlices, stored_values_are_hu: bool) -> None:
        self.geometry = geometry
        self.stored_values_are_hu = stored_values_are_hu
        self._slices: dict[int, np.ndarray] = {}

    def slab(self, z_min_mm: float, z_max_mm: float) -> SliceStack:
        """The slices with z in [z_min_mm, z_max_mm]: (Z, Y, X) int16 HU and their z (mm).

        Raises:
            SeriesError: slices are missing inside [z_min_mm, z_max_mm] (interpolating across the gap
                would invent them); the message names the gap.
        """
        for gap in self.geometry.gaps:
            if gap.z_before_mm < z_max_mm and gap.z_after_mm > z_min_mm:
                raise SeriesError(f"{gap}, inside the slab z={z_min_mm:.1f} to {z_max_mm:.1f} mm that this patch needs")
        z_mm = self.geometry.slice_z_mm
        keep = np.flatnonzero((z_mm >= z_min_mm) & (z_mm <= z_max_mm))
        self._slices = {i: self._slices.get(i) for i in keep}
        for i in keep:
            if self._slices[i] is None:
                self._slices[i] = _read_hu(self.geometry.files[i], self.geometry.shape_yx, self.stored_values_are_hu)
        hu = np.stack([self._slices[i] for i in keep]) if keep.size else np.empty((0, *self.geometry.shape_yx), np.int16)
        return SliceStack(hu=hu, slice_z_mm=z_mm[keep])
