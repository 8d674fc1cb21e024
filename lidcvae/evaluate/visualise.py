"""The report's model-driven pictures and the numbers behind them, each returning (metrics, figures).

Every function takes the trained model in eval mode and returns its figures drawn in memory
(``figures.Drawn``; the evaluation writes them when it is done). Reconstructions decode the posterior
mean; codes are posterior means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from lidcvae.evaluate import figures
from lidcvae.evaluate.claims import label_agreement
from lidcvae.evaluate.latent_views import (
    nearest_neighbours, plot_retrieval_gallery, retrieval_caption,
)
from lidcvae.evaluate.figures import Drawn
from lidcvae.evaluate.nodule_views import masked_squared_error, outlined_montage
from lidcvae.intensity import HUWindow
from lidcvae.models.base import VAE

__all__ = ["reconstruct", "row_name", "nodule_reconstruction", "retrieval"]


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


def _thumbnail(image: np.ndarray, hu_window: HUWindow | None) -> np.ndarray:
    return figures.to_display(figures.centre_views(image)[0], hu_window)


def _gallery_caption(k: int, volumes: bool, size: str | None, words: str) -> str:
    what = "axial centre slices" if volumes else "the images"
    facts = ["split"] + ([f"diameter ({size})"] if size else []) + (
        ["the readers' median ratings (mal = malignancy 1–5, spic = spiculation 1–5, tex = texture 1–5)"] if volumes else ["label"])
    return (f"Nearest neighbours in latent space: each row a query (red frame) and its {k} nearest other {words} by "
            f"Euclidean distance d between posterior means; {what} with {', '.join(facts)}.")


def retrieval(codes: np.ndarray, table: pd.DataFrame, images: np.ndarray, hu_window: HUWindow | None,
              retrieval_queries: int, retrieval_neighbours: int, label_column: str,
              size: str | None = None, words: str = "nodules") -> tuple[dict, list[Drawn]]:
    """Gallery of ``retrieval_queries`` samples (spread over the table) with their ``retrieval_neighbours``
    nearest neighbours in latent space (the ``evaluate`` keys of those names).

    Also measures how often a neighbour shares its query's label, over the labelled samples (those with a
    diameter too when ``size`` names its column), against the rate expected from the label frequencies
    alone and, as the size-only control, against the same queries' neighbours by diameter alone
    (``lidcvae.evaluate.claims``).
    """
    if len(codes) < 2:
        return {"skipped": "fewer than 2 embedded samples"}, []
    query_rows = np.unique(np.linspace(0, len(codes) - 1, min(retrieval_queries, len(codes))).round().astype(int))
    neighbours, distances = nearest_neighbours(codes, query_rows, retrieval_neighbours)
    thumbs = [[_thumbnail(images[q], hu_window)] + [_thumbnail(images[n], hu_window) for n in row] for q, row in zip(query_rows, neighbours)]
    captions = [[retrieval_caption(table.iloc[q])] + [retrieval_caption(table.iloc[n]) for n in row] for q, row in zip(query_rows, neighbours)]
    section: dict[str, Any] = {"k": int(neighbours.shape[1]), "distance": "Euclidean between posterior means",
                               "queries": [row_name(table, q) for q in query_rows]}
    if label_column in table.columns:
        section.update(_agreement(codes, table, label_column, size, retrieval_neighbours))
    caption = _gallery_caption(neighbours.shape[1], images.ndim == 5, size, words)
    return section, [Drawn("retrieval.png", caption, plot_retrieval_gallery(thumbs, captions, distances))]


def _agreement(codes: np.ndarray, table: pd.DataFrame, label_column: str, size: str | None, k: int) -> dict:
    """Neighbour label agreement in latent space, by chance and by diameter alone, over the same queries."""
    usable = table[label_column].notna().to_numpy()
    diameters = pd.to_numeric(table[size], errors="coerce").to_numpy(np.float64) if size else None
    if diameters is not None:
        usable = usable & np.isfinite(diameters)
    labelled = np.flatnonzero(usable)
    if len(labelled) <= k:
        return {}
    values = table[label_column].iloc[labelled].astype("int64").to_numpy()
    # at most 2,000 queries (seeded): the agreement rate is a mean, and N² distances grow fast (MNIST: 10,000)
    asked = np.sort(np.random.default_rng(0).permutation(len(labelled))[:2000])
    frequencies = np.bincount(values) / len(values)
    found = {"label_agreement": label_agreement(codes[labelled], values, asked, k), "label_agreement_queries": int(len(asked)),
             "label_agreement_patients": int(table["patient_id"].iloc[labelled].nunique()) if "patient_id" in table.columns else None,
             "label_agreement_by_chance": float((frequencies**2).sum())}
    if diameters is not None:
        found["label_agreement_by_diameter"] = label_agreement(diameters[labelled], values, asked, k)
        found["size_column"] = size
    return found
