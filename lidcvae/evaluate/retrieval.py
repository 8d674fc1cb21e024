"""Nearest neighbours in latent space: the report's retrieval gallery, and how often a neighbour shares its
query's label against chance and against neighbours by diameter alone (``lidcvae.evaluate.claims``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lidcvae.evaluate import figures
from lidcvae.evaluate.claims import label_agreement
from lidcvae.evaluate.figures import Drawn
from lidcvae.evaluate.latent_views import nearest_neighbours, plot_retrieval_gallery, retrieval_caption
from lidcvae.evaluate.visualise import row_name
from lidcvae.intensity import HUWindow

__all__ = ["retrieval"]


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
