"""Cut an isotropic cubic patch around a point, and write it as NIfTI placed in patient coordinates.

A patch is a cube of ``size`` voxels at ``spacing_mm`` whose geometric centre is the nodule's consensus
centroid: voxel (i, j, k) along (x, y, z) sits at ``corner_mm + (i, j, k) * spacing_mm`` in DICOM
patient coordinates (LPS). Only the region under the cube is interpolated, never the whole volume.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from lidcvae.io import atomic_path

__all__ = ["PatchGrid", "fractional_index", "sample", "cut_hu_patch", "nifti_affine", "write_nifti"]

#: NIfTI world space is RAS, DICOM patient space is LPS: x and y change sign.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class PatchGrid:
    """An axis-aligned cube of ``size``³ voxels of ``spacing_mm`` centred on ``centre_mm`` (x, y, z);
    size and spacing are ``extract.patch_size`` and ``extract.spacing_mm``."""

    centre_mm: np.ndarray
    size: int
    spacing_mm: float

    @property
    def corner_mm(self) -> np.ndarray:
        """(x, y, z) of voxel (0, 0, 0), mm."""
        return self.centre_mm - (self.size - 1) / 2 * self.spacing_mm

    def axis_mm(self, axis: int) -> np.ndarray:
        """(size,) positions along patient axis 0=x, 1=y, 2=z, mm."""
        return self.corner_mm[axis] + np.arange(self.size) * self.spacing_mm


def fractional_index(positions_mm: np.ndarray, grid_mm: np.ndarray) -> np.ndarray:
    """Fractional indices of ``positions_mm`` on an increasing (possibly uneven) grid; NaN outside it."""
    index = np.interp(positions_mm, grid_mm, np.arange(grid_mm.size, dtype=float))
    outside = (positions_mm < grid_mm[0] - 1e-6) | (positions_mm > grid_mm[-1] + 1e-6)
    index[outside] = np.nan
    return index


def sample(volume: np.ndarray, z_index: np.ndarray, y_index: np.ndarray, x_index: np.ndarray,
           fill: float, order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate ``volume`` (Z, Y, X) on the tensor grid of fractional indices along each axis.

    Args:
        volume: (Z, Y, X) array.
        z_index, y_index, x_index: (Nz,), (Ny,), (Nx,) fractional indices, NaN where outside.
        fill: value for voxels outside ``volume``.
        order: spline order (1 linear, 3 cubic).

    Returns:
        ``(values, inside)``: (Nz, Ny, Nx) float32 values and the bool mask of voxels with real data.
    """
    inside = (~np.isnan(z_index))[:, None, None] & (~np.isnan(y_index))[None, :, None] & (~np.isnan(x_index))[None, None, :]
    values = np.full(inside.shape, fill, dtype=np.float32)
    if not inside.any():
        return values, inside
    # Crop the volume to the cube's footprint (plus the spline's reach) before interpolating.
    reach = 1 + order // 2
    lows, crops = [], []
    for index, length in zip((z_index, y_index, x_index), volume.shape):
        valid = index[~np.isnan(index)]
        low = max(int(np.floor(valid.min())) - reach, 0)
        high = min(int(np.ceil(valid.max())) + reach + 1, length)
        lows.append(low)
        crops.append(slice(low, high))
    region = volume[tuple(crops)].astype(np.float32)
    # (3, Nz, Ny, Nx) voxel coordinates into the region, written axis by axis (no meshgrid copies).
    coordinates = np.empty((3, *inside.shape))
    coordinates[0] = (z_index - lows[0])[:, None, None]
    coordinates[1] = (y_index - lows[1])[None, :, None]
    coordinates[2] = (x_index - lows[2])[None, None, :]
    interpolate = functools.partial(ndimage.map_coordinates, region, order=order, mode="nearest", prefilter=order > 1)
    if inside.all():  # the usual case: the cube lies within the scan, no per-voxel selection needed
        return interpolate(coordinates), inside
    values[inside] = interpolate(coordinates[:, inside])
    return values, inside


def cut_hu_patch(grid: PatchGrid, slab_hu: np.ndarray, slab_z_mm: np.ndarray, y_mm: np.ndarray, x_mm: np.ndarray,
                 scan_z_mm: np.ndarray, pad_hu: float, order: int = 1) -> tuple[np.ndarray, float, bool]:
    """Resample the slices under a patch onto its grid; both extraction routes cut image patches here.

    Args:
        grid: the patch.
        slab_hu: (Z, Y, X) HU of the slices read around the patch (a slice of margin beyond each face).
        slab_z_mm: (Z,) their z positions, increasing.
        y_mm, x_mm: (Y,), (X,) increasing row and column positions of the slices, mm.
        scan_z_mm: z positions of the whole scan, to tell whether the cube leaves it.
        pad_hu: value of voxels outside the scan.
        order: spline order (1 linear, 3 cubic).

    Returns:
        ``(patch_hu, coverage, edge)``: (S, S, S) int16 HU (z, y, x); the fraction of patch voxels with
        real image data; whether the cube leaves the scan.
    """
    y_index, x_index = fractional_index(grid.axis_mm(1), y_mm), fractional_index(grid.axis_mm(0), x_mm)
    z_index = fractional_index(grid.axis_mm(2), slab_z_mm) if slab_hu.shape[0] else np.full(grid.size, np.nan)
    patch_hu, inside = sample(slab_hu, z_index, y_index, x_index, fill=pad_hu, order=order)
    scan_z = fractional_index(grid.axis_mm(2), scan_z_mm)
    edge = bool(np.isnan(scan_z).any() or np.isnan(y_index).any() or np.isnan(x_index).any())
    return np.rint(patch_hu).astype(np.int16), float(inside.mean()), edge


def nifti_affine(grid: PatchGrid) -> np.ndarray:
    """(4, 4) voxel (i, j, k) = (x, y, z) → RAS mm affine of the patch."""
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS * grid.spacing_mm
    affine[:3, 3] = _LPS_TO_RAS @ grid.corner_mm
    return affine


def write_nifti(patch_zyx: np.ndarray, grid: PatchGrid, path: str | os.PathLike) -> None:
    """Write a (Z, Y, X) patch as NIfTI (array axes x, y, z; qform and sform = scanner), atomically."""
    image = nib.Nifti1Image(np.ascontiguousarray(patch_zyx.transpose(2, 1, 0)), nifti_affine(grid))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    image.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
