"""The report's reconstructions: each nodule decoded from its posterior mean, the error inside and outside its
mask, and the montages (drawn in memory, ``figures.Drawn``; the evaluation writes them when it is done)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from lidcvae.evaluate import figures
from lidcvae.evaluate.figures import Drawn
from lidcvae.evaluate.nodule_views import masked_squared_error, outlined_montage
from lidcvae.intensity import HUWindow
from lidcvae.models.base import VAE

__all__ = ["reconstruct", "row_name", "nodule_reconstruction"]


@torch.no_grad()
def reconstruct(model: VAE, images: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means (N, D) and decoder means at them (N, *event_shape), model scale."""
    codes, decoded = [], []
    for batch in images.split(batch_size):
        mean, _ = model.encode(batch.float())
        codes.append(mean.numpy())
        decoded.append(model.mean_image(model.decode(mean)).numpy())
    return np.concatenate(codes), np.concatenate(decoded)


def _spread_by_size(masks: np.ndarray | None, count: int, wanted: int) -> np.ndarray:
    """``wanted`` indices evenly spaced from the smallest to the largest mask (the first ones without masks)."""
    if masks is None:
        return np.arange(min(count, wanted))
    order = np.argsort(masks.reshape(count, -1).sum(axis=1), kind="stable")
    return order[np.unique(np.linspace(0, count - 1, min(count, wanted)).round().astype(int))]


def nodule_reconstruction(model: VAE, splits: Mapping, batch_size: int, montage_samples: int, zoom: int,
                          hu_window: HUWindow | None, mask: str = "consensus (50 %) mask",
                          words: str = "nodules") -> tuple[dict, list[Drawn]]:
    """Per split: error inside vs outside the mask (``mask`` names what it is, e.g. ``provenance.mask_name``),
    and an outlined 3-plane montage (volumes) or an input-above-reconstruction grid (images)."""
    section, made = {}, []
    for name, data in splits.items():
        if len(data.images) == 0:
            continue
        inputs = data.images.numpy()
        _, decoded = reconstruct(model, data.images, batch_size)
        masks = None if getattr(data, "masks", None) is None else data.masks.numpy().astype(bool)
        if masks is not None:  # channel 0 is the image; a mask channel (1) is not the nodule's error
            inside, outside = masked_squared_error(inputs[:, :1], decoded[:, :1], masks)
            scale = hu_window.width_hu**2 if hu_window is not None else 1.0
            unit = "hu" if hu_window is not None else "model_scale"
            inside_mse, outside_mse = float(np.nanmean(inside) * scale), float(np.nanmean(outside) * scale)
            section[name] = {"nodules": len(inputs), f"mse_inside_{unit}2": inside_mse, f"mse_outside_{unit}2": outside_mse,
                             f"rmse_inside_{unit}": inside_mse**0.5, f"rmse_outside_{unit}": outside_mse**0.5,
                             "mask_fraction": float(masks.mean())}
        chosen = _spread_by_size(masks, len(inputs), montage_samples)
        if inputs.ndim == 5:
            montage = outlined_montage(figures.to_display(inputs[chosen], hu_window), figures.to_display(decoded[chosen], hu_window),
                                       None if masks is None else masks[chosen], columns=4, zoom=zoom)
            png = figures.rgb_png(montage)
        else:
            montage = figures.reconstruction_montage(figures.to_display(inputs[chosen], hu_window),
                                                     figures.to_display(decoded[chosen], hu_window), columns=8)
            png = figures.grey_png(montage, zoom)
        ids = ", ".join(row_name(data.table, i) for i in chosen)
        how = f"evenly spaced from the smallest to the largest {mask}" if masks is not None else "the first"
        outline = f"; red: the {mask}'s outline" if masks is not None else ""
        views = "its axial, coronal and sagittal centre slices" if inputs.ndim == 5 else "the image"
        made.append(Drawn(f"reconstruction_{name}.png", f"{name}: {len(chosen)} of {len(inputs)} {words} ({how}); per "
                          f"{words.rstrip('s')} {views}, input (top) above reconstruction (bottom){outline}. "
                          f"{words.capitalize()}: {ids}", png))
    return section, made


def row_name(table: pd.DataFrame, row: int) -> str:
    """A table row's nodule (or digit) id, else ``row N``."""
    for column in ("nodule_id", "id"):
        if column in table.columns:
            return str(table[column].iloc[row])
    return f"row {row}"
