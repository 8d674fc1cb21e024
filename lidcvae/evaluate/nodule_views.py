"""Does the model reconstruct the nodule? Error inside vs outside the consensus mask, outlined montages.

A patch is mostly lung, chest wall and air; a model can score a fine whole-patch MSE while losing the
nodule (under 0.1 % of a 64³ patch for a 5 mm nodule). So the error is split by the consensus mask,
and the montage draws the mask's outline on input and reconstruction alike.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lidcvae.evaluate.figures import GAP, centre_views, tile

__all__ = ["OUTLINE_RGB", "masked_squared_error", "outline", "outlined_montage"]

OUTLINE_RGB = (1.0, 0.15, 0.1)


def masked_squared_error(inputs: np.ndarray, reconstructions: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared error per sample inside and outside its mask: (N, *event_shape) × 3 → two (N,) arrays.

    Model-scale units (multiply by the HU window's width² for HU²); NaN inside for an empty mask.
    """
    squared = (np.asarray(inputs, np.float64) - np.asarray(reconstructions, np.float64)) ** 2
    masks = np.asarray(masks, bool).reshape(squared.shape)
    flat_sq, flat_mask = squared.reshape(len(squared), -1), masks.reshape(len(masks), -1)
    inside_count, outside_count = flat_mask.sum(axis=1), (~flat_mask).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = np.where(inside_count > 0, (flat_sq * flat_mask).sum(axis=1) / inside_count, np.nan)
        outside = np.where(outside_count > 0, (flat_sq * ~flat_mask).sum(axis=1) / outside_count, np.nan)
    return inside, outside


def outline(mask_view: np.ndarray) -> np.ndarray:
    """The boundary pixels of a 2-D mask (inside pixels with an outside 4-neighbour): bool, same shape."""
    mask_view = np.asarray(mask_view, bool)
    return mask_view & ~ndimage.binary_erosion(mask_view, border_value=0)


def _coloured(grey: np.ndarray, edge: np.ndarray | None) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if edge is not None:
        rgb[edge] = OUTLINE_RGB
    return rgb


def _rgb_tile(grid: list[list[np.ndarray]], gap: int) -> np.ndarray:
    channels = [tile([[cell[..., c] for cell in row] for row in grid], gap=gap) for c in range(3)]
    return np.stack(channels, axis=-1)


def outlined_montage(inputs: np.ndarray, reconstructions: np.ndarray, masks: np.ndarray | None,
                     columns: int = 4, *, zoom: int) -> np.ndarray:
    """Display-scale volumes (N, 1, Z, Y, X) → an RGB grid (H, W, 3) in [0, 1].

    Per nodule a block of its three centre slices (axial, coronal, sagittal), input above
    reconstruction, the consensus outline in red on both; ``zoom`` pixels per voxel so the outline
    stays one screen pixel thin. Without masks the grid is the same, unoutlined.
    """
    blocks = []
    for index, (image, reconstruction) in enumerate(zip(inputs, reconstructions)):
        views = [centre_views(image), centre_views(reconstruction)]
        edges = [outline(np.kron(v, np.ones((zoom, zoom))) > 0.5) for v in centre_views(masks[index])] if masks is not None else None
        rows = [[_coloured(np.kron(view, np.ones((zoom, zoom), np.float32)), edges[i] if edges else None)
                 for i, view in enumerate(row)] for row in views]
        blocks.append(_rgb_tile(rows, GAP * zoom))
    per_row = max(1, min(columns, len(blocks)))
    grid = [blocks[i : i + per_row] for i in range(0, len(blocks), per_row)]
    return _rgb_tile(grid, 3 * GAP * zoom)

