"""The report's generative pictures: interpolation, attribute vectors (White 2016) and samples.

Every code to draw is chosen first (two nodules' interpolation paths, one traversal per attribute the
table defines, samples from the prior or the aggregate posterior); the model then decodes them all in
one pass, and the grids are drawn last, in memory (``figures.Drawn``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lidcvae.embed import posterior_arrays
from lidcvae.evaluate import figures
from lidcvae.evaluate.claims import SIZE_COSINE_LIMIT, cosine
from lidcvae.evaluate.figures import Drawn
from lidcvae.evaluate.latent_views import ATTRIBUTES, attribute_vector, retrieval_caption, traversal_codes
from lidcvae.evaluate.sampling import latent_samples
from lidcvae.evaluate.settings import EvaluateSettings
from lidcvae.evaluate.visualise import row_name
from lidcvae.intensity import HUWindow
from lidcvae.models.base import VAE

__all__ = ["SAMPLE_CAPTIONS", "sample_source", "interpolation_pair", "legible_zoom", "generative_pictures"]

SAMPLE_CAPTIONS = {
    "prior": "Samples from the prior z ~ N(0, I), decoder means: what the model generates from scratch. Where the "
             "posterior means sit far from N(0, I) these look unlike any input.",
    "aggregate_posterior": "Samples from a full-covariance Gaussian fitted to the training split's posteriors "
                           "(the aggregate posterior; lidcvae.evaluate.sampling), decoder means: new codes where the "
                           "decoder was trained, rather than from N(0, I), where nothing was encoded.",
}


def legible_zoom(zoom: int, edge: int, min_pixels: int = 96) -> int:
    """The configured zoom, raised so that a view of ``edge`` voxels spans at least ``min_pixels`` pixels."""
    return max(zoom, -(-min_pixels // max(edge, 1)))


def interpolation_pair(table: pd.DataFrame, label_column: str) -> tuple[int, int]:
    """Two rows to interpolate between: the first of the lowest and of the highest label, else the first two."""
    if label_column in table.columns:
        labels = pd.to_numeric(table[label_column], errors="coerce").astype("float64").to_numpy()
        known = labels[np.isfinite(labels)]
        if len(np.unique(known)) >= 2:
            return int(np.flatnonzero(labels == known.min())[0]), int(np.flatnonzero(labels == known.max())[0])
    return 0, min(1, len(table) - 1)


def sample_source(settings: EvaluateSettings, embeddings: pd.DataFrame | None) -> tuple[str, tuple]:
    """``evaluate.sample_from`` and the train split's (posterior means, log-variances) to fit it to.

    Falls back to ``prior`` when fewer than two training codes are embedded.
    """
    if settings.sample_from == "prior" or embeddings is None or embeddings.empty:
        return "prior", (None, None)
    rows = embeddings[embeddings["split"] == "train"] if "split" in embeddings.columns else embeddings
    means, logvars = posterior_arrays(rows)
    if len(means) < 2 or not means.shape[1]:
        return "prior", (None, None)
    return settings.sample_from, (means, logvars)


@dataclass
class _Traversals:
    """Attribute-vector traversals: codes (one (steps, D) row per attribute), their names and numbers."""

    rows: list[np.ndarray]
    names: list[str]
    section: dict
    notes: list[str]


def _attribute_vectors(codes: np.ndarray, table: pd.DataFrame, found: _Traversals) -> list[tuple]:
    """(attribute, has, has_not, vector) for each attribute the table defines with both groups (one ``size``)."""
    vectors, named = [], set()
    for attribute in ATTRIBUTES:
        if attribute.name in named or not attribute.applies(table):
            continue
        has, has_not = attribute.groups(table)
        vector = attribute_vector(codes, has, has_not)
        if vector is None:
            if has.any() or has_not.any():
                found.notes.append(f"attribute vector '{attribute.name}' not drawn: {int(has.sum())} {attribute.high} and "
                                   f"{int(has_not.sum())} {attribute.low} nodules (needs both)")
            continue
        named.add(attribute.name)
        vectors.append((attribute, has, has_not, vector))
    return vectors


def _attribute_traversals(codes: np.ndarray, table: pd.DataFrame, scales: np.ndarray) -> _Traversals:
    """White 2016 attribute vectors as code traversals, one per attribute the table can define; an attribute
    whose vector's |cosine| with the size vector is ≥ ``SIZE_COSINE_LIMIT`` is mostly the diameter direction
    and is not drawn (a note says so; its cosine is in the numbers)."""
    found = _Traversals([], [], {}, [])
    vectors = _attribute_vectors(codes, table, found)
    size = next((v for a, _, _, v in vectors if a.name == "size"), None)
    for attribute, has, has_not, vector in vectors:
        with_size = None if size is None or attribute.name == "size" else cosine(vector, size)
        found.section[attribute.name] = {"has": int(has.sum()), "has_not": int(has_not.sum()),
                                         "vector_norm": float(np.linalg.norm(vector)), "cosine_with_size": with_size,
                                         "column": attribute.column}
        if with_size is not None and abs(with_size) >= SIZE_COSINE_LIMIT:
            found.section[attribute.name]["drawn"] = False
            found.notes.append(f"attribute vector '{attribute.name}' not drawn: its cosine with the size vector is "
                               f"{with_size:.2f} (|cosine| ≥ {SIZE_COSINE_LIMIT:g}), so it is mostly the diameter direction")
            continue
        found.section[attribute.name]["drawn"] = True
        base = np.asarray(codes, np.float64)[has_not].mean(axis=0)
        found.rows.append(traversal_codes(base, vector, scales))
        found.names.append(f"{attribute.name} ({attribute.high} − {attribute.low})" + (
            "; the size control" if attribute.name == "size" else "" if with_size is None else f"; cosine with size {with_size:.2f}"))
    return found


@torch.no_grad()
def _decode_rows(model: VAE, rows: list[np.ndarray]) -> list[np.ndarray]:
    """Rows of codes (each (M, D)) → decoder means (each (M, *event_shape), model scale), one model pass for all."""
    stacked = torch.as_tensor(np.concatenate([np.asarray(r, np.float32) for r in rows]), dtype=torch.float32)
    decoded = model.mean_image(model.decode(stacked)).numpy()
    return np.split(decoded, np.cumsum([len(r) for r in rows])[:-1])


def generative_pictures(model: VAE, codes: np.ndarray, table: pd.DataFrame, settings: EvaluateSettings,
                        hu_window: HUWindow | None) -> tuple[dict, list[Drawn], list[str], str]:
    """Interpolation, attribute traversals and samples, decoded and drawn.

    Args:
        model: the trained VAE in eval mode.
        codes: (N, D) posterior means of ``table``'s rows.
        table: the embeddings table (labels and characteristics define the attributes).

    Returns:
        (attribute numbers, figures, notes, the samples' source: ``prior`` or ``aggregate_posterior``).
    """
    steps, zoom = settings.interpolation_steps, legible_zoom(settings.image_zoom, model.event_shape[-1])
    scales = np.linspace(-0.5, 1.5, steps)
    first, second = interpolation_pair(table, settings.probe.label_column)
    paths = figures.interpolation_codes(codes[first], codes[second], steps)
    traversals = _attribute_traversals(codes, table, scales)
    source, fitted = sample_source(settings, table)
    samples = latent_samples(source, settings.prior_samples, codes.shape[1], np.random.default_rng(settings.seed), *fitted)
    decoded = _decode_rows(model, [*paths, *traversals.rows, samples])
    name = lambda i: f"{row_name(table, i)} ({retrieval_caption(table.iloc[i]).replace(chr(10), ', ')})"  # noqa: E731
    captions = [f"Interpolation from {name(first)} to {name(second)}: linear (upper block), spherical / slerp (lower "
                "block, White 2016: keeps the code's norm where the prior's mass lies)."]
    if traversals.rows:
        scale_text = ", ".join(f"{t:.2g}" for t in scales)
        captions.append(f"Attribute vectors (White 2016): per row, mean code of the second group + t × (mean of the first "
                        f"− mean of the second), t = {scale_text} left to right (t = 0: the second group's mean, t = 1: "
                        f"the first's); decoded, centre slices stacked axial/coronal/sagittal. Rows: {'; '.join(traversals.names)}. "
                        f"Only attributes whose vector's |cosine| with the size vector is below {SIZE_COSINE_LIMIT:g} are drawn.")
    captions.append(SAMPLE_CAPTIONS[source])
    names = ["interpolation.png", *(["attribute_traversals.png"] if traversals.rows else []), "prior_samples.png"]
    grids = figures.grey_grids(_blocks(decoded, len(paths), traversals), hu_window, zoom)
    drawn = [Drawn(name, caption, png) for name, caption, png in zip(names, captions, grids)]
    return traversals.section, drawn, traversals.notes, source


def _blocks(decoded: list[np.ndarray], n_paths: int, traversals: _Traversals) -> list[list[np.ndarray]]:
    """The decoded rows grouped into the interpolation, the traversals (when any) and the samples, in that order."""
    return [decoded[:n_paths], *([decoded[n_paths:-1]] if traversals.rows else []), decoded[-1:]]
