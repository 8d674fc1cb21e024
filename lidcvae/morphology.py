"""Cubic dilation and erosion of 3D masks as three 1D max pools.

A cube of edge 2r + 1 is the product of three 1D windows, so one pass per axis gives exactly what one
``max_pool3d`` with a cubic kernel gives, at 3·(2r + 1) comparisons per voxel instead of (2r + 1)³:
the mask pooling runs it on every encoder pass, the reconstruction weight on every training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dilate_cube", "erode_cube"]


def dilate_cube(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over the cube of edge 2·radius + 1 around each voxel (out-of-grid voxels count as absent).

    Args:
        mask: (B, C, Z, Y, X), any real values (0/1 masks and soft masks alike).
        radius: r ≥ 0, voxels.

    Returns:
        (B, C, Z, Y, X), equal to ``max_pool3d(mask, 2r + 1, stride=1, padding=r)``.
    """
    if radius == 0:
        return mask
    size = 2 * radius + 1
    for kernel in ((size, 1, 1), (1, size, 1), (1, 1, size)):
        padding = tuple(k // 2 for k in kernel)
        mask = F.max_pool3d(mask, kernel, stride=1, padding=padding)
    return mask


def erode_cube(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Min over the same cube: ``−dilate_cube(−mask, radius)`` (out-of-grid voxels count as present)."""
    return -dilate_cube(-mask, radius)
