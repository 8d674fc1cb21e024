"""Synthetic chest anatomy on a series grid, in Hounsfield units.

Each axial slice is drawn from shapes in field-of-view units (u, v) ∈ [-1, 1] (u along columns,
towards the patient's left; v along rows, towards the back), because the LIDC reconstruction field
of view is fitted to the patient: a nodule at a real (row, col) then falls where a real lung was.
The height fraction t (0 lowest slice, 1 highest) shapes the lungs (diaphragm domes below, apices
above) and the heart. Then, in mm on the real grid: pulmonary vessels and bronchi as branching
tubes from each hilum, the trachea down to the carina, partial-volume smoothing, and correlated noise.

Values (HU): air -1000, lung -860 (anterior) to -800 (dependent, posterior), fat -100, soft tissue
and blood +40, muscle +50, liver +60, cancellous bone +250, cortical bone +800, table shell +150.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lidcvae.phantom.geometry import PhantomGrid
from lidcvae.phantom.tubes import Segment, branching_tree, rasterize_segments

__all__ = ["HU", "lung_masks", "chest_background", "add_airways_and_vessels", "finish_scan"]

HU = {
    "air": -1000.0, "lung": -860.0, "fat": -100.0, "soft": 40.0, "muscle": 50.0, "liver": 60.0,
    "cancellous": 250.0, "cortical": 800.0, "table": 150.0, "foam": -950.0, "vessel": 40.0, "airway_wall": -50.0,
}  # fmt: skip

BODY_CENTRE_V = 0.02
LUNG_CENTRE = (0.40, -0.02)  # (|u|, v) of each lung's centre


def _uv(geometry: PhantomGrid) -> tuple[np.ndarray, np.ndarray]:
    """(rows, 1) v and (1, cols) u field-of-view coordinates of the pixel centres."""
    v = (np.arange(geometry.rows, dtype=np.float32) - (geometry.rows - 1) / 2) / (geometry.rows / 2)
    u = (np.arange(geometry.cols, dtype=np.float32) - (geometry.cols - 1) / 2) / (geometry.cols / 2)
    return v[:, None], u[None, :]


def _ellipse(u, v, cu, cv, au, av, power: float = 2.0) -> np.ndarray:
    """Normalised super-ellipse radius (< 1 inside)."""
    return np.abs((u - cu) / au) ** power + np.abs((v - cv) / av) ** power


def _lung_scale(t: float, base_t: float) -> float:
    """Lung cross-section scale at height t: grows above the diaphragm, narrows to the apex."""
    rise = np.clip((t - base_t) / 0.25, 0.0, 1.0)
    apex = np.clip((1.06 - t) / 0.5, 0.0, 1.0)
    return float(np.sqrt(rise) * np.sqrt(apex))


def lung_masks(geometry: PhantomGrid, base_t: float = 0.05) -> np.ndarray:
    """(K, rows, cols) bool, both lungs: super-ellipses over domed diaphragms, minus the heart.

    Args:
        geometry: the grid.
        base_t: height fraction of the lowest lung tissue (the costophrenic recesses); the dome
            tops sit 0.15 higher.
    """
    v, u = _uv(geometry)
    lungs = np.zeros(geometry.shape, bool)
    for k, t in enumerate(geometry.z_fraction()):
        scale = _lung_scale(t, base_t)
        if scale <= 0:
            continue
        heart = _ellipse(u, v, 0.08, -0.18, 0.34, 0.3) < _heart_scale(t) ** 2
        for side in (-1.0, 1.0):
            cu, cv = side * LUNG_CENTRE[0], LUNG_CENTRE[1]
            radius = _ellipse(u, v, cu, cv, 0.3 * scale, 0.44 * scale, 2.2)
            dome = base_t + 0.15 * np.clip(1.0 - radius, 0.0, 1.0)
            lungs[k] |= (radius < 1.0) & (t >= dome) & ~heart & (np.abs(u) > 0.1)
    return lungs


def _heart_scale(t: float) -> float:
    """The heart fills the lower middle chest and is gone above t ≈ 0.6."""
    return float(np.clip((0.6 - t) / 0.25, 0.0, 1.0) ** 0.5 * np.clip(t / 0.1, 0.0, 1.0))


def _body_slice(u, v, t: float, body_scale: float) -> np.ndarray:
    """(rows, cols) HU of one slice without lungs: body wall, mediastinum, spine, ribs, table."""
    image = np.full(np.broadcast_shapes(u.shape, v.shape), HU["air"], np.float32)
    body = _ellipse(u, v, 0.0, BODY_CENTRE_V, 0.88 * body_scale, 0.6 * body_scale)
    image[body < 1.0] = HU["fat"]
    image[body < 0.8] = HU["muscle"]
    cavity = body < 0.68
    image[cavity] = HU["liver"] if t < 0.12 else HU["soft"]
    image[cavity & (_ellipse(u, v, 0.0, -0.42, 0.14, 0.08) < 1.0) & (t > 0.45)] = HU["fat"]  # anterior mediastinum
    vessels = (_ellipse(u, v, 0.1, 0.22, 0.06, 0.06) < 1.0) | (_ellipse(u, v, -0.05, 0.23, 0.03, 0.03) < 1.0)
    image[cavity & vessels] = HU["vessel"] + 10  # descending aorta, azygos
    _draw_spine(image, u, v, t)
    _draw_ribs(image, u, v, t, body_scale)
    table = (v > 0.7 + 0.05 * u**2) & (v < 0.76 + 0.05 * u**2) & (np.abs(u) < 0.8)
    image[table] = HU["foam"]
    image[table & ((v < 0.71 + 0.05 * u**2) | (v > 0.75 + 0.05 * u**2))] = HU["table"]
    return image


def _draw_spine(image: np.ndarray, u, v, t: float) -> None:
    """Vertebral body (cortex, marrow; a disc every 25 % of a vertebra), canal and posterior arch."""
    disc = (t * 12.0) % 1.0 < 0.2
    body = _ellipse(u, v, 0.0, 0.4, 0.1, 0.09)
    arch = _ellipse(u, v, 0.0, 0.55, 0.075, 0.07)
    image[(body < 1.0) | (arch < 1.0) | ((np.abs(u) < 0.02) & (v > 0.55) & (v < 0.66))] = HU["cortical"]
    image[body < 0.8] = HU["soft"] + 40 if disc else HU["cancellous"]
    image[arch < 0.55] = HU["soft"] - 25  # cerebrospinal fluid


def _draw_ribs(image: np.ndarray, u, v, t: float, body_scale: float) -> None:
    """Oval rib sections on the inner body wall; their angles drift with height (ribs slope)."""
    for side in (-1.0, 1.0):
        for angle in np.linspace(-2.4, 2.0, 8) + 0.35 * np.sin(6.0 * t):
            cu = side * 0.78 * body_scale * 0.88 * np.cos(angle) * 0.98
            cv = BODY_CENTRE_V + 0.78 * body_scale * 0.6 * np.sin(angle)
            rib = _ellipse(u, v, cu, cv, 0.03, 0.02)
            image[rib < 1.0] = HU["cortical"]
            image[rib < 0.45] = HU["cancellous"]


def chest_background(geometry: PhantomGrid, lungs: np.ndarray, body_scale: float) -> np.ndarray:
    """(K, rows, cols) float32 HU: body, mediastinum, bones, table, and lungs with a gravity gradient."""
    v, u = _uv(geometry)
    volume = np.empty(geometry.shape, np.float32)
    lung_hu = (HU["lung"] + 30.0 * np.clip((v - LUNG_CENTRE[1]) / 0.44 + 1.0, 0.0, 2.0)).astype(np.float32)
    lung_hu = np.broadcast_to(lung_hu, (geometry.rows, geometry.cols))
    for k, t in enumerate(geometry.z_fraction()):
        volume[k] = _body_slice(u, v, float(t), body_scale)
        volume[k][lungs[k]] = lung_hu[lungs[k]]
    return volume


def _mm(geometry: PhantomGrid, u: float, v: float, t: float) -> np.ndarray:
    """(z, y, x) mm on the series grid of a field-of-view point at height fraction t."""
    z = geometry.slice_z_mm[0] + t * (geometry.slice_z_mm[-1] - geometry.slice_z_mm[0])
    half = geometry.pixel_spacing_mm * geometry.cols / 2
    return np.array([z, (v + 1.0) * half, (u + 1.0) * half])


def _vessel_trees(geometry: PhantomGrid, rng: np.random.Generator) -> list[Segment]:
    """Pulmonary vessels: per lung, six trees from the hilum (up, down, out, front, back, down-back)."""
    lung_height = min(250.0, float(geometry.slice_z_mm[-1] - geometry.slice_z_mm[0]))
    segments = []
    for side in (-1.0, 1.0):
        hilum = _mm(geometry, side * 0.2, -0.02, 0.55)
        for heading in ((1, 0, 0.3), (-1, 0, 0.3), (0, 0, 1), (0.2, -1, 0.6), (0.2, 1, 0.6), (-0.7, 0.7, 0.5)):
            direction = np.array([heading[0], heading[1], side * heading[2]], float)
            segments += branching_tree(hilum, direction, 0.12 * lung_height + 15, 4.0, 8, rng)
    return segments


def _airway_tree(geometry: PhantomGrid, rng: np.random.Generator) -> list[Segment]:
    """Trachea from the top of the scan to the carina, main bronchi to each hilum, four generations."""
    top, carina = _mm(geometry, 0.0, 0.12, 1.05), _mm(geometry, 0.0, 0.12, 0.6)
    segments = [Segment(top, carina, 8.0)]
    for side in (-1.0, 1.0):
        hilum = _mm(geometry, side * 0.22, 0.02, 0.55)
        segments.append(Segment(carina, hilum, 5.5))
        for heading in ((1, 0.2, 0.5), (-1, 0.3, 0.5), (-0.2, -0.6, 1)):
            direction = np.array([heading[0], heading[1], side * heading[2]], float)
            segments += branching_tree(hilum, direction, 35.0, 3.5, 4, rng, radius_ratio=0.7)
    return segments


def add_airways_and_vessels(
    volume: np.ndarray, geometry: PhantomGrid, lungs: np.ndarray, keep_clear: np.ndarray, rng: np.random.Generator
) -> None:
    """Paint vessels (inside the lungs) and airways (lungs and mediastinum) into ``volume`` in place.

    Args:
        volume: (K, rows, cols) float32 HU.
        lungs: (K, rows, cols) bool lung mask; vessels stay inside it.
        keep_clear: (K, rows, cols) bool, voxels no tube may touch (around nodules).
        rng: the random source.
    """
    vessels = rasterize_segments(_vessel_trees(geometry, rng), geometry)
    vessels *= lungs & ~keep_clear
    volume += vessels * (HU["vessel"] - volume)
    airways = _airway_tree(geometry, rng)
    inside = (volume > -990) & ~keep_clear  # the airways stay inside the body
    wall = rasterize_segments(airways, geometry, radius_offset_mm=1.2) * inside
    volume += wall * (HU["airway_wall"] - volume)
    lumen = rasterize_segments(airways, geometry) * inside
    volume += lumen * (HU["air"] - volume)


def finish_scan(volume: np.ndarray, geometry: PhantomGrid, noise_hu: float, rng: np.random.Generator) -> np.ndarray:
    """Partial-volume smoothing, then correlated noise of standard deviation ``noise_hu``.

    Returns:
        (K, rows, cols) int16 HU, clipped to [-1024, 3071] (the 12-bit stored range).
    """
    sigma_px = (0.3, 0.7, 0.7)
    smoothed = ndimage.gaussian_filter(volume, sigma_px, mode="nearest")
    noise = rng.standard_normal(volume.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, (0.0, 0.6, 0.6))
    noise *= noise_hu / max(float(noise.std()), 1e-6)
    smoothed += noise
    return np.clip(np.rint(smoothed), -1024, 3071).astype(np.int16)
