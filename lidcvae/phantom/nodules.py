"""Nodules painted from the radiologists' own outlines, their look following the characteristics.

Each nodule's occupancy is the fraction of its readers whose outline holds a voxel (so the 50 %
consensus that the extraction builds is exactly where the occupancy reaches ½). The median over
readers of each LIDC characteristic then sets how it looks:

============== ================================ ==========================================================
characteristic LIDC scale                       phantom
============== ================================ ==========================================================
texture        1 non-solid (GGO) … 5 solid      1: -550 HU, 2: -450 HU (ground glass); 3: part-solid, a
                                                -500 HU rim round a +20 HU core (inner 60 % of depth);
                                                4: 0 HU, 5: +30 HU (solid)
subtlety       1 extremely subtle … 5 obvious   solid density lowered 15 HU per step below 5
internalStr.   1 soft tissue, 2 fluid, 3 fat,   2: density 10 HU; 3: -90 HU core; 4: an air bubble
               4 air                            (-950 HU) in the core
calcification  1 popcorn, 2 laminated, 3 solid, 1: bright blobs (+600 HU); 2: concentric bright rings;
               4 non-central, 5 central,        3: whole nodule +350 HU; 4: one eccentric +600 HU blob;
               6 absent                         5: a central +600 HU core; 6: none
margin         1 poorly defined … 5 sharp       in-plane Gaussian blur of the occupancy, σ = 0.3 · (6 − margin) mm
                                                (at most a sixth of the nodule's diameter)
lobulation     1 none … 5 marked                lobulation − 1 half-buried lobes, radius ¼ of the nodule's
spiculation    1 none … 5 marked                3 · (spiculation − 1) spicules from the surface outwards,
                                                0.5 mm thick, 2 + 1.5 · spiculation mm long
============== ================================ ==========================================================

The lung (-860 HU) stays at least ``clearance_mm`` around every nodule, so each is seen against
lung parenchyma, with no vessel touching it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lidcvae.annotations import CHARACTERISTICS, ReaderAnnotation
from lidcvae.phantom.geometry import PhantomGrid
from lidcvae.phantom.tubes import Segment, rasterize_segments

__all__ = ["PaintedNodule", "reader_occupancy", "nodule_density", "nodule_clearance", "paint_nodule"]

TEXTURE_HU = {1: -550.0, 2: -450.0, 3: -500.0, 4: 0.0, 5: 30.0}
BRIGHT_HU = 600.0


@dataclass(frozen=True)
class PaintedNodule:
    """One nodule's readers' outlines merged on the series grid.

    Attributes:
        occupancy: (Z, Y, X) float32, fraction of readers whose outline holds each voxel.
        bbox_start: (3,) int, (k, row, col) of ``occupancy[0, 0, 0]`` in the full series.
        characteristics: median over readers of the nine characteristics.
    """

    occupancy: np.ndarray
    bbox_start: np.ndarray
    characteristics: dict[str, float]

    def box(self, pad: int = 0, shape: tuple[int, ...] | None = None) -> tuple[slice, ...]:
        """Index of the occupancy box in the full series, grown by ``pad`` voxels, clipped to ``shape``."""
        stop = self.bbox_start + np.array(self.occupancy.shape)
        limits = shape or (np.iinfo(np.int64).max,) * 3
        return tuple(slice(max(0, a - pad), min(n, b + pad)) for a, b, n in zip(self.bbox_start, stop, limits))


def reader_occupancy(readers: list[ReaderAnnotation]) -> PaintedNodule:
    """Merge one nodule's reader masks into the fraction-of-readers occupancy on their joint box."""
    start = np.min([r.bbox_start for r in readers], axis=0)
    stop = np.max([r.bbox_start + np.array(r.reader_mask.shape) for r in readers], axis=0)
    occupancy = np.zeros(tuple(stop - start), np.float32)
    for reader in readers:
        offset = reader.bbox_start - start
        index = tuple(slice(o, o + n) for o, n in zip(offset, reader.reader_mask.shape))
        occupancy[index] += reader.reader_mask
    occupancy /= len(readers)
    medians = {name: float(np.median([r.characteristics[name] for r in readers])) for name in CHARACTERISTICS}
    return PaintedNodule(occupancy, start, medians)


def nodule_clearance(nodules: list[PaintedNodule], geometry: PhantomGrid, clearance_mm: float) -> np.ndarray:
    """(K, rows, cols) bool: every voxel within ``clearance_mm`` (ellipsoidal, per axis) of a nodule."""
    clear = np.zeros(geometry.shape, bool)
    slice_mm = float(np.median(np.diff(geometry.slice_z_mm))) if len(geometry.slice_z_mm) > 1 else 1.0
    pad = np.ceil(clearance_mm / np.array([slice_mm, geometry.pixel_spacing_mm, geometry.pixel_spacing_mm])).astype(int)
    for nodule in nodules:
        grown = np.pad(nodule.occupancy > 0, [(p, p) for p in pad])
        zz, yy, xx = np.ogrid[tuple(slice(-p, p + 1) for p in pad)]
        ball = (zz / max(pad[0], 1)) ** 2 + (yy / pad[1]) ** 2 + (xx / pad[2]) ** 2 <= 1.0
        grown = ndimage.binary_dilation(grown, ball)
        start = nodule.bbox_start - pad
        index = tuple(slice(max(0, a), min(n, a + s)) for a, s, n in zip(start, grown.shape, geometry.shape))
        crop = tuple(slice(i.start - a, i.stop - a) for i, a in zip(index, start))
        clear[index] |= grown[crop]
    return clear


def nodule_density(characteristics: dict[str, float], depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(Z, Y, X) float32 HU of the nodule material, from its characteristics.

    Args:
        characteristics: median characteristics.
        depth: (Z, Y, X) relative depth inside the nodule, 0 at the outline and 1 at its deepest.
        rng: the random source (calcification blobs).
    """
    texture = int(np.clip(round(characteristics["texture"]), 1, 5))
    density = np.full(depth.shape, TEXTURE_HU[texture], np.float32)
    if texture >= 4:
        density -= 15.0 * (5.0 - np.clip(characteristics["subtlety"], 1, 5))
    core = depth > 0.4
    if texture == 3:
        density[core] = 20.0
    structure = int(round(characteristics["internalStructure"]))
    if structure == 2:
        density[:] = np.maximum(density, 10.0) if texture >= 4 else density
    elif structure == 3:
        density[depth > 0.5] = -90.0
    elif structure == 4:
        density[depth > 0.7] = -950.0
    _calcify(density, int(round(characteristics["calcification"])), depth, rng)
    return density


def _calcify(density: np.ndarray, calcification: int, depth: np.ndarray, rng: np.random.Generator) -> None:
    """Bright calcium in the pattern the readers named (1 popcorn … 5 central, 6 absent)."""
    if calcification == 3:
        density[:] = 350.0
    elif calcification == 5:
        density[depth > 0.5] = BRIGHT_HU
    elif calcification == 2:
        density[(depth * 4.0) % 1.0 > 0.6] = BRIGHT_HU
    elif calcification in (1, 4):
        inside = np.argwhere(depth > 0.2)
        if len(inside) == 0:
            return
        for centre in inside[rng.integers(0, len(inside), 4 if calcification == 1 else 1)]:
            distance = np.linalg.norm(np.indices(depth.shape).T - centre, axis=-1).T
            density[(distance < 1.5) & (depth > 0)] = BRIGHT_HU


def _surface_features(
    core: np.ndarray, characteristics: dict[str, float], geometry: PhantomGrid, rng: np.random.Generator
) -> list[Segment]:
    """Spicules (thin segments pointing out) and lobes (short fat capsules) on the outline of ``core``.

    Args:
        core: (Z, Y, X) bool, the 50 % outline, on ``geometry`` (a box of the series grid).
    """
    outline = np.argwhere(core & ~ndimage.binary_erosion(core))
    if len(outline) == 0:
        return []
    points_mm = _to_mm(outline, geometry)
    centre_mm = _to_mm(np.argwhere(core), geometry).mean(axis=0)
    radius_mm = float(np.linalg.norm(points_mm - centre_mm, axis=1).mean())
    features = []
    for count, length, width in (
        (int(round(3 * (characteristics["spiculation"] - 1))), 2.0 + 1.5 * characteristics["spiculation"], 0.5),
        (int(round(characteristics["lobulation"] - 1)), 0.01, max(radius_mm / 4, 0.5)),
    ):
        for point in points_mm[rng.integers(0, len(points_mm), max(count, 0))]:
            outward = point - centre_mm
            outward /= np.linalg.norm(outward) + 1e-6
            features.append(Segment(point, point + outward * length, width))
    return features


def _to_mm(indices: np.ndarray, geometry: PhantomGrid) -> np.ndarray:
    """(N, 3) voxel indices (k, row, col) → (N, 3) (z, y, x) mm on ``geometry``."""
    return np.column_stack([geometry.slice_z_mm[indices[:, 0]], indices[:, 1:] * geometry.pixel_spacing_mm])


def paint_nodule(volume: np.ndarray, nodule: PaintedNodule, geometry: PhantomGrid, rng: np.random.Generator) -> None:
    """Paint one nodule into ``volume`` ((K, rows, cols) float32 HU) in place."""
    box = nodule.box(pad=6, shape=geometry.shape)
    local = np.zeros(tuple(s.stop - s.start for s in box), np.float32)
    inner = tuple(slice(a - s.start, a - s.start + n) for a, s, n in zip(nodule.bbox_start, box, nodule.occupancy.shape))
    local[inner] = nodule.occupancy
    local_geometry = PhantomGrid(
        geometry.slice_z_mm[box[0]], geometry.pixel_spacing_mm, geometry.slice_thickness_mm, local.shape[1], local.shape[2]
    )
    features = _surface_features(local >= 0.5, nodule.characteristics, local_geometry, rng)
    local = _blurred(local, nodule, local_geometry)
    if features:
        local = np.maximum(local, rasterize_segments(features, local_geometry))
    depth = ndimage.distance_transform_edt(local >= 0.5)
    depth = (depth / max(float(depth.max()), 1.0)).astype(np.float32)
    density = nodule_density(nodule.characteristics, depth, rng)
    region = volume[box]
    region += local * (density - region)


def _blurred(occupancy: np.ndarray, nodule: PaintedNodule, geometry: PhantomGrid) -> np.ndarray:
    """The occupancy blurred in-plane by the margin score, σ = 0.3 · (6 − margin) mm, at most diameter / 6."""
    widest_area = float((nodule.occupancy >= 0.5).sum(axis=(1, 2)).max()) * geometry.pixel_spacing_mm**2
    diameter_mm = 2.0 * np.sqrt(max(widest_area, 1.0) / np.pi)
    sigma_mm = min(0.3 * (6.0 - nodule.characteristics["margin"]), diameter_mm / 6.0)
    # in-plane only: across 1–5 mm slices a blur would erase the thinnest nodules' top and bottom
    sigma_px = sigma_mm / geometry.pixel_spacing_mm
    return ndimage.gaussian_filter(occupancy, (0.0, sigma_px, sigma_px))
