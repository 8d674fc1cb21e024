"""The voxel grid of one phantom series: the database's slice positions on a 512×512 axial matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PhantomGrid"]


@dataclass(frozen=True)
class PhantomGrid:
    """Where every voxel of a series sits in patient coordinates (LPS, mm).

    The database holds each scan's slice z positions and pixel spacing but not its in-plane origin,
    so the phantom centres the 512×512 field of view on x = y = 0, as a scanner centred on the
    table does. Volumes on this grid are indexed (z, y, x) = (slice k, row, col).

    Attributes:
        slice_z_mm: (K,) sorted z positions (mm), one per slice.
        pixel_spacing_mm: in-plane spacing (mm), rows and columns alike.
        slice_thickness_mm: nominal slice thickness (mm).
        rows, cols: matrix size.
    """

    slice_z_mm: np.ndarray
    pixel_spacing_mm: float
    slice_thickness_mm: float
    rows: int = 512
    cols: int = 512

    @property
    def shape(self) -> tuple[int, int, int]:
        """(K, rows, cols)."""
        return (len(self.slice_z_mm), self.rows, self.cols)

    @property
    def origin_xy_mm(self) -> tuple[float, float]:
        """(x, y) of the centre of pixel (row 0, col 0), mm."""
        return (-self.pixel_spacing_mm * self.cols / 2.0, -self.pixel_spacing_mm * self.rows / 2.0)

    @property
    def fov_mm(self) -> float:
        """Edge of the square field of view, mm."""
        return self.pixel_spacing_mm * self.cols

    def z_fraction(self) -> np.ndarray:
        """(K,) each slice's height in the scan, 0 at the lowest slice and 1 at the highest."""
        z = self.slice_z_mm
        span = max(float(z[-1] - z[0]), 1e-6)
        return (z - z[0]) / span
