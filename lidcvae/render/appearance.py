"""The render route's look: drawn the same way for every nodule, blind to every rating.

Shape comes only from the readers' outlines: the nodule is the readers' **occupancy** (the fraction of
readers whose outline holds a voxel, resampled to the patch), so its soft edge is where the readers
disagree, and the 50 % consensus mask sits where it crosses ½. Nothing else is taken from the annotations:
no spicules, lobes, calcified cores or margin blur (``lidcvae.phantom.nodules`` paints those from the
ratings; none of it is used here).

Every number below is drawn from ranges in the ``render`` section with a random stream seeded by
``(render.seed, nodule_id)`` only, before the outline is looked at, so the drawn look is independent of
the ratings, the size and the position (the manifest records each draw as ``render_*`` columns):

* **nodule**: a density uniform in ``density_hu`` (ground glass −700 HU to solid +50 HU by default) plus a
  smooth random texture: white noise Gaussian-filtered at a correlation length uniform in
  ``texture_correlation_mm``, scaled to a standard deviation uniform in ``texture_sd_hu``;
* **surroundings**: aerated lung, chosen over the phantom's whole-chest anatomy because the database has no
  in-plane origin or body outline to place a nodule against the pleura or mediastinum honestly: a mean
  uniform in ``lung_hu`` (about −850 HU), a smooth low-frequency variation (``lung_variation_hu`` at
  ``lung_correlation_mm``), and a number of branching vessel trees uniform in ``vessels`` (+40 HU,
  ``phantom.tubes``), placed at random in the patch independently of the nodule: they may touch or cross
  it, and the nodule is drawn over them, as a nodule displaces the vessels it meets;
* **scanner**: the phantom's noise model (``phantom.anatomy.finish_scan``: partial-volume smoothing, then
  spatially correlated noise) with a standard deviation uniform in ``noise_hu``.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy import ndimage

from lidcvae.phantom.anatomy import HU, finish_scan
from lidcvae.phantom.geometry import PhantomGrid
from lidcvae.phantom.tubes import branching_tree, rasterize_segments
from lidcvae.render.settings import RenderConfig

__all__ = ["APPEARANCE_COLUMNS", "nodule_rng", "draw_appearance", "render_patch"]

#: The manifest columns of the drawn look (one per draw), all functions of (render.seed, nodule_id) only.
APPEARANCE_COLUMNS = ("render_density_hu", "render_texture_sd_hu", "render_texture_correlation_mm", "render_lung_hu",
                      "render_vessels", "render_vessel_radius_mm", "render_noise_hu")


def nodule_rng(seed: int, nodule_id: str) -> np.random.Generator:
    """The nodule's own random stream: a function of the seed and its id, not of the cohort or its ratings."""
    words = np.frombuffer(hashlib.sha256(nodule_id.encode()).digest()[:16], dtype=np.uint32)
    return np.random.default_rng([seed, *words.tolist()])


def draw_appearance(config: RenderConfig, rng: np.random.Generator) -> dict[str, float]:
    """Draw one nodule's look from the section's ranges: ``{column: value}`` for ``APPEARANCE_COLUMNS``."""
    return {
        "render_density_hu": rng.uniform(*config.density_hu),
        "render_texture_sd_hu": rng.uniform(*config.texture_sd_hu),
        "render_texture_correlation_mm": rng.uniform(*config.texture_correlation_mm),
        "render_lung_hu": rng.uniform(*config.lung_hu),
        "render_vessels": int(rng.integers(config.vessels[0], config.vessels[1] + 1)),
        "render_vessel_radius_mm": rng.uniform(*config.vessel_radius_mm),
        "render_noise_hu": rng.uniform(*config.noise_hu),
    }


def _smooth_field(shape: tuple[int, ...], sigma_voxels: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise scaled to standard deviation ``sd``: (shape) float32."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma_voxels, mode="wrap")
    return field * (sd / max(float(field.std()), 1e-6))


def _vessels(look: dict[str, float], size: int, spacing_mm: float, rng: np.random.Generator) -> np.ndarray:
    """(S, S, S) float32 partial-volume occupancy of ``render_vessels`` random branching trees."""
    grid = PhantomGrid(np.arange(size) * spacing_mm, spacing_mm, spacing_mm, size, size)
    extent = size * spacing_mm
    segments = []
    for _ in range(look["render_vessels"]):
        root = rng.uniform(-0.25 * extent, 1.25 * extent, 3)  # some trees enter from outside the patch
        direction = rng.normal(size=3)
        segments += branching_tree(root, direction, rng.uniform(0.3, 0.6) * extent, look["render_vessel_radius_mm"], 4, rng)
    return rasterize_segments(segments, grid)


def render_patch(occupancy: np.ndarray, spacing_mm: float, config: RenderConfig, nodule_id: str) -> tuple[np.ndarray, dict[str, float]]:
    """Render one nodule patch from its readers' occupancy.

    Args:
        occupancy: (S, S, S) float, fraction of readers holding each voxel, on the patch (z, y, x).
        spacing_mm: the patch's isotropic voxel spacing, mm.
        config: the ``render`` section (seed and the look's ranges).
        nodule_id: the manifest's ``nodule_id``; with ``config.seed`` it seeds every draw.

    Returns:
        ``(patch_hu, look)``: (S, S, S) int16 HU, and the drawn values (``APPEARANCE_COLUMNS``).
    """
    rng = nodule_rng(config.seed, nodule_id)
    look = draw_appearance(config, rng)  # drawn first: no draw depends on the outline
    shape = occupancy.shape
    volume = look["render_lung_hu"] + _smooth_field(shape, config.lung_correlation_mm / spacing_mm, config.lung_variation_hu, rng)
    vessels = _vessels(look, shape[0], spacing_mm, rng)
    volume += vessels * (HU["vessel"] - volume)
    sigma = look["render_texture_correlation_mm"] / spacing_mm
    nodule_hu = look["render_density_hu"] + _smooth_field(shape, sigma, look["render_texture_sd_hu"], rng)
    volume += np.clip(occupancy, 0.0, 1.0).astype(np.float32) * (nodule_hu - volume)
    grid = PhantomGrid(np.arange(shape[0]) * spacing_mm, spacing_mm, spacing_mm, shape[1], shape[2])
    return finish_scan(volume.astype(np.float32), grid, look["render_noise_hu"], rng), look
