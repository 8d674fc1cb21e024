"""Branching tubes (pulmonary vessels, bronchi) and their partial-volume rasterisation.

A tube is a chain of straight segments, each a capsule of radius ``r`` around the line from ``start``
to ``end``. Points are (z, y, x) in mm on the series grid (y = row · spacing, x = col · spacing,
z = the slice position), so the coarse, possibly uneven slice spacing is respected exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lidcvae.phantom.geometry import PhantomGrid

__all__ = ["Segment", "branching_tree", "rasterize_segments"]


@dataclass(frozen=True)
class Segment:
    """One straight piece of tube: a capsule from ``start`` to ``end`` (mm, (z, y, x)), radius mm."""

    start: np.ndarray
    end: np.ndarray
    radius_mm: float


def _turn(direction: np.ndarray, angle_rad: float, rng: np.random.Generator) -> np.ndarray:
    """``direction`` rotated by ``angle_rad`` about a random axis perpendicular to it."""
    axis = np.cross(direction, rng.normal(size=3))
    axis /= np.linalg.norm(axis) + 1e-12
    turned = direction * np.cos(angle_rad) + np.cross(axis, direction) * np.sin(angle_rad)
    return turned / np.linalg.norm(turned)


def branching_tree(
    root: np.ndarray,
    direction: np.ndarray,
    length_mm: float,
    radius_mm: float,
    generations: int,
    rng: np.random.Generator,
    length_ratio: float = 0.72,
    radius_ratio: float = 0.74,
) -> list[Segment]:
    """A dichotomous tree: each segment splits into two children turned 20–40° away from it.

    Args:
        root: (3,) start point (mm, (z, y, x)).
        direction: (3,) initial direction (normalised here).
        length_mm, radius_mm: size of the first segment; children shrink by the ratios.
        generations: number of segment levels (1 = the root segment only).
        rng: the random source (the tree is a function of its state).

    Returns:
        ``2**generations - 1`` segments, parents before children.
    """
    segments: list[Segment] = []
    tips = [(np.asarray(root, float), np.asarray(direction, float) / np.linalg.norm(direction), length_mm, radius_mm)]
    for _ in range(generations):
        next_tips = []
        for start, heading, length, radius in tips:
            bent = _turn(heading, rng.uniform(0.0, 0.25), rng)
            end = start + bent * length * rng.uniform(0.8, 1.2)
            segments.append(Segment(start, end, radius))
            for _child in range(2):
                child = _turn(bent, rng.uniform(0.35, 0.7), rng)
                next_tips.append((end, child, length * length_ratio, radius * radius_ratio))
        tips = next_tips
    return segments


def _index_range(lo: float, hi: float, axis_mm: np.ndarray) -> slice:
    """Indices of the grid positions ``axis_mm`` (sorted) that lie in [lo, hi]."""
    return slice(int(np.searchsorted(axis_mm, lo, "left")), int(np.searchsorted(axis_mm, hi, "right")))


def _segment_occupancy(
    segment: Segment, z: np.ndarray, y: np.ndarray, x: np.ndarray, edge_mm: float, thickness_mm: float
) -> np.ndarray:
    """Fraction (0–1) of each voxel inside the capsule.

    In-plane the edge is a linear ramp ``edge_mm`` wide. Along z each voxel is a slab
    ``thickness_mm`` thick: a tube within half a slab of a slice shows in it, at the fraction
    of the slab it fills (a thin tube lying flat fills ~2r/T of it; one running along z fills all).
    """
    axis = segment.end - segment.start
    length2 = float(axis @ axis) + 1e-12
    dz, dy, dx = z[:, None, None] - segment.start[0], y[None, :, None] - segment.start[1], x[None, None, :] - segment.start[2]
    along = np.clip((dz * axis[0] + dy * axis[1] + dx * axis[2]) / length2, 0.0, 1.0)
    off_z = np.maximum(np.abs(dz - along * axis[0]) - thickness_mm / 2, 0.0)
    distance2 = off_z**2 + (dy - along * axis[1]) ** 2 + (dx - along * axis[2]) ** 2
    flatness = np.sqrt(max(0.0, 1.0 - axis[0] ** 2 / length2))
    slab_fill = min(1.0, 2.0 * segment.radius_mm / (thickness_mm * flatness + 1e-6))
    return slab_fill * np.clip((segment.radius_mm - np.sqrt(distance2)) / edge_mm + 0.5, 0.0, 1.0)


def rasterize_segments(
    segments: list[Segment], geometry: PhantomGrid, occupancy: np.ndarray | None = None, radius_offset_mm: float = 0.0
) -> np.ndarray:
    """Partial-volume occupancy of a set of tubes on the series grid.

    Args:
        segments: the tubes.
        geometry: the grid.
        occupancy: (K, rows, cols) float32 to update in place (maximum), or None for a new one.
        radius_offset_mm: added to every radius (a wall around a lumen).

    Returns:
        (K, rows, cols) float32 occupancy in [0, 1].
    """
    if occupancy is None:
        occupancy = np.zeros(geometry.shape, np.float32)
    z_mm = geometry.slice_z_mm
    row_mm = np.arange(geometry.rows) * geometry.pixel_spacing_mm
    col_mm = np.arange(geometry.cols) * geometry.pixel_spacing_mm
    edge_mm = geometry.pixel_spacing_mm
    for segment in segments:
        grown = Segment(segment.start, segment.end, segment.radius_mm + radius_offset_mm)
        reach = grown.radius_mm + edge_mm
        lo, hi = np.minimum(grown.start, grown.end) - reach, np.maximum(grown.start, grown.end) + reach
        lo[0] -= geometry.slice_thickness_mm / 2
        hi[0] += geometry.slice_thickness_mm / 2
        box = (_index_range(lo[0], hi[0], z_mm), _index_range(lo[1], hi[1], row_mm), _index_range(lo[2], hi[2], col_mm))
        if any(s.stop <= s.start for s in box):
            continue
        local = _segment_occupancy(
            grown, z_mm[box[0]], row_mm[box[1]], col_mm[box[2]], edge_mm, geometry.slice_thickness_mm
        ).astype(np.float32)
        np.maximum(occupancy[box], local, out=occupancy[box])
    return occupancy
