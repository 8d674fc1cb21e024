"""PNG figures for the report, generic over event shape: 2-D images (C=1, H, W) or volumes (1, Z, Y, X).

Figures are made in memory (``Drawn``: a name, a caption, PNG bytes) and written once, with metrics.json
and the page, when the evaluation is done (``lidcvae.evaluate.outputs``), so a failed evaluation leaves no half set.
Image grids (montage, prior samples, interpolation) are encoded pixel-exact with ``imsave``: every
patch voxel becomes ``zoom``×``zoom`` pixels, so a figure's size is known from its inputs. CT patches
are shown in a lung window (W 1500, L −600 HU); images without an HU window are shown as [0, 1].
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from lidcvae.intensity import HUWindow  # noqa: E402

__all__ = [
    "Drawn",
    "figure_png",
    "grey_png",
    "rgb_png",
    "LUNG_WINDOW_HU",
    "centre_views",
    "to_display",
    "tile",
    "reconstruction_montage",
    "image_rows",
    "grey_grids",
    "slerp",
    "interpolation_codes",
    "plot_roc_curves",
    "plot_latent_pca",
    "plot_kl_per_dimension",
]

LUNG_WINDOW_HU = (-1350.0, 150.0)
GAP = 2


@dataclass(frozen=True)
class Drawn:
    """One figure of the report, made in memory: ``name`` its file under figures/ (``roc.png``), ``caption``
    the words the page shows under it, ``png`` the encoded image."""

    name: str
    caption: str
    png: bytes


def figure_png(figure, dpi: int = 110, tight: bool = True) -> bytes:
    """A matplotlib figure as PNG bytes (``tight``: cropped to its artists); the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    plt.close(figure)
    return buffer.getvalue()


def grey_png(image: np.ndarray, zoom: int) -> bytes:
    """A [0, 1] grey image (H, W) as PNG bytes, each pixel repeated ``zoom``×``zoom`` (exact pixel size)."""
    buffer = io.BytesIO()
    plt.imsave(buffer, np.kron(image, np.ones((zoom, zoom), np.float32)), cmap="gray", vmin=0.0, vmax=1.0, format="png")
    return buffer.getvalue()


def rgb_png(image: np.ndarray) -> bytes:
    """An (H, W, 3) [0, 1] image as PNG bytes, pixel for pixel."""
    buffer = io.BytesIO()
    plt.imsave(buffer, np.clip(image, 0.0, 1.0), format="png")
    return buffer.getvalue()


def to_display(images: np.ndarray, hu_window: HUWindow | None, display_window_hu=LUNG_WINDOW_HU) -> np.ndarray:
    """Model-scale images → [0, 1] grey levels: through HU into the display window, or clipped as is."""
    images = np.asarray(images, np.float32)
    if hu_window is None:
        return np.clip(images, 0.0, 1.0)
    lower, upper = display_window_hu
    return np.clip((hu_window.to_hu(images) - lower) / (upper - lower), 0.0, 1.0)


def centre_views(sample: np.ndarray) -> list[np.ndarray]:
    """One sample (*event_shape) → its 2-D views.

    A volume (C, Z, Y, X) gives the axial (Y, X), coronal (Z, X) and sagittal (Z, Y) centre slices of
    channel 0 (the image; a mask channel is not shown), superior up (z grows towards the head in
    patient coordinates); an image (1, H, W) gives itself.
    """
    spatial = sample[0] if sample.ndim == 4 or (sample.ndim == 3 and sample.shape[0] == 1) else sample
    if spatial.ndim == 2:
        return [spatial]
    z, y, x = (size // 2 for size in spatial.shape)
    return [spatial[z], spatial[::-1, y, :], spatial[::-1, :, x]]


def _pad_to(image: np.ndarray, height: int, width: int, fill: float) -> np.ndarray:
    padded = np.full((height, width), fill, np.float32)
    padded[: image.shape[0], : image.shape[1]] = image
    return padded


def tile(grid: list[list[np.ndarray]], gap: int = GAP, fill: float = 1.0) -> np.ndarray:
    """Lay 2-D arrays out in rows and columns with ``gap``-pixel separators; cells are padded to size."""
    height = max(cell.shape[0] for row in grid for cell in row)
    width = max(cell.shape[1] for row in grid for cell in row)
    columns = max(len(row) for row in grid)
    canvas = np.full((len(grid) * (height + gap) - gap, columns * (width + gap) - gap), fill, np.float32)
    for r, row in enumerate(grid):
        for c, cell in enumerate(row):
            top, left = r * (height + gap), c * (width + gap)
            canvas[top : top + height, left : left + width] = _pad_to(cell, height, width, fill)
    return canvas


def _grid(blocks: list[np.ndarray], columns: int, gap: int) -> np.ndarray:
    rows = [blocks[i : i + columns] for i in range(0, len(blocks), columns)]
    return tile(rows, gap=gap)


def reconstruction_montage(inputs: np.ndarray, reconstructions: np.ndarray, columns: int = 4) -> np.ndarray:
    """Display-scale (N, *event_shape) pairs → one grid: per sample its views, input above reconstruction."""
    blocks = [tile([centre_views(a), centre_views(b)]) for a, b in zip(inputs, reconstructions)]
    return _grid(blocks, min(columns, len(blocks)), gap=3 * GAP)


def image_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of display-scale samples (each (M, *event_shape)) → one grid, views of a sample stacked vertically."""
    return tile([[tile([[view] for view in centre_views(sample)]) for sample in row] for row in rows], gap=3 * GAP)


def grey_grids(blocks: list[list[np.ndarray]], hu_window: HUWindow | None, zoom: int) -> list[bytes]:
    """Each block of model-scale rows (each (M, *event_shape)) as one ``image_rows`` grid, PNG bytes at ``zoom``."""
    return [grey_png(image_rows([to_display(row, hu_window) for row in rows]), zoom) for rows in blocks]


def slerp(start: np.ndarray, end: np.ndarray, fraction: float) -> np.ndarray:
    """Spherical interpolation (Shoemake 1985; White 2016, arXiv 1609.04468); linear for parallel codes."""
    cos_angle = np.dot(start, end) / (np.linalg.norm(start) * np.linalg.norm(end) + 1e-12)
    angle = np.arccos(np.clip(cos_angle, -1.0, 1.0))
    if angle < 1e-6:
        return (1.0 - fraction) * start + fraction * end
    return (np.sin((1.0 - fraction) * angle) * start + np.sin(fraction * angle) * end) / np.sin(angle)


def interpolation_codes(start: np.ndarray, end: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear and spherical paths between two codes (D,): each (steps, D), endpoints included."""
    fractions = np.linspace(0.0, 1.0, steps)
    linear = np.stack([(1.0 - t) * start + t * end for t in fractions])
    return linear, np.stack([slerp(start, end, t) for t in fractions])


def plot_latent_pca(posterior_mean: np.ndarray, labels: pd.Series, label_names: dict | None = None) -> bytes:
    """2-D PCA of the posterior means (N, D), coloured by label (missing labels grey)."""
    varies = len(posterior_mean) > 2 and np.var(posterior_mean, axis=0).sum() > 0
    components = PCA(n_components=2).fit_transform(posterior_mean) if varies else np.zeros((len(posterior_mean), 2))
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    missing = labels.isna().to_numpy()
    if missing.any():
        axis.scatter(*components[missing].T, c="lightgrey", s=14, label="unlabelled")
    for value in sorted(labels.dropna().unique()):
        chosen = (labels == value).fillna(False).to_numpy()
        name = (label_names or {}).get(value, f"{labels.name or 'label'} {value}")
        axis.scatter(*components[chosen].T, s=16, label=name)
    axis.set(title="posterior means, first two principal components", xlabel="PC 1", ylabel="PC 2")
    axis.legend(fontsize=8)
    return figure_png(figure)


def plot_kl_per_dimension(kl: np.ndarray, active: np.ndarray | None) -> bytes:
    """KL per latent dimension (D,) in nats, sorted descending on a log axis; active dimensions (D,) bool
    (``collapse.active_dimensions``; None: not counted) in blue."""
    order = np.argsort(kl)[::-1]
    coloured = np.zeros(len(kl), bool) if active is None else np.asarray(active, bool)[order]
    figure, axis = plt.subplots(figsize=(8, 3.5))
    floor = max(float(kl[kl > 0].min()) / 2, 1e-6) if (kl > 0).any() else 1e-6
    axis.bar(np.arange(len(kl)), np.maximum(kl[order], floor), width=1.0, color=np.where(coloured, "tab:blue", "lightgrey"))
    counted = "active units not counted (too few samples)" if active is None else f"{int(coloured.sum())} of {len(kl)} active (blue)"
    axis.set_yscale("log")
    axis.set(title=f"KL per latent dimension, sorted: {counted}",
             xlabel="latent dimension (rank by KL)", ylabel="mean KL per sample (nats, log axis)")
    return figure_png(figure)


def plot_roc_curves(curves: dict[str, tuple[list[float], list[float], float | None]]) -> bytes:
    """ROC curves {name: (false-positive rates, true-positive rates, mean fold AUC)} with the chance diagonal."""
    figure, axis = plt.subplots(figsize=(5.2, 4.6))
    for name, (fpr, tpr, auc) in curves.items():
        axis.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})" if auc is not None else name, drawstyle="steps-post")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance (AUC 0.5)")
    axis.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1.01),
             title="ROC, pooled out-of-fold predictions")
    axis.legend(fontsize=7, loc="lower right")
    return figure_png(figure)
