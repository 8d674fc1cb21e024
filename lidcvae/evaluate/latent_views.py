"""Does the latent space group similar nodules, and what does it think makes one look malignant?

- Nearest-neighbour retrieval: a query nodule and its k nearest others by Euclidean distance between
  posterior means, shown with their characteristics.
- Attribute vectors (White 2016, "Sampling Generative Networks", arXiv 1609.04468, §3): the mean latent
  of the nodules that have an attribute minus the mean of those that do not (malignant − benign,
  spiculated − smooth, large − small), decoded along ``base + t·vector`` as a traversal.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lidcvae.evaluate.figures import figure_png

__all__ = ["Attribute", "ATTRIBUTES", "nearest_neighbours", "attribute_vector", "traversal_codes",
           "retrieval_caption", "plot_retrieval_gallery"]


@dataclass(frozen=True)
class Attribute:
    """A binary split of the nodules: ``column > threshold`` has it, ``column < low`` does not.

    ``threshold`` None means the column's median (with ties on neither side).
    """

    name: str
    column: str
    high: str
    low: str
    threshold: float | None = None
    low_threshold: float | None = None
    binary: bool = False

    def applies(self, table: pd.DataFrame) -> bool:
        """The column exists and, for a binary attribute, holds only 0/1 (not MNIST's digits in ``label``)."""
        if self.column not in table.columns:
            return False
        values = set(pd.to_numeric(table[self.column], errors="coerce").dropna().unique())
        return not self.binary or values <= {0, 1}

    def groups(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Boolean row masks (has, has not) over ``table``; both empty when the column is absent."""
        if not self.applies(table):
            empty = np.zeros(len(table), bool)
            return empty, empty
        values = pd.to_numeric(table[self.column], errors="coerce").astype("float64").to_numpy()
        if self.threshold is None and not np.isfinite(values).any():  # e.g. coordinates without diameters
            empty = np.zeros(len(table), bool)
            return empty, empty
        upper = np.nanmedian(values) if self.threshold is None else self.threshold
        lower = upper if self.low_threshold is None else self.low_threshold
        with np.errstate(invalid="ignore"):
            return values > upper, values < lower


# LIDC ratings: malignancy label 1/0 (median rating > 3 / < 3); spiculation 1 = none … 5 = marked.
ATTRIBUTES = (
    Attribute("malignancy", "label", "malignant (label 1)", "benign (label 0)", threshold=0.5, low_threshold=0.5,
              binary=True),
    Attribute("spiculation", "spiculation", "spiculated (rating ≥ 3)", "smooth (rating 1)", threshold=2.5, low_threshold=1.5),
    Attribute("size", "consensus_diameter_mm", "large (> median diameter)", "small (< median diameter)"),
    Attribute("size", "diameter_mm", "large (> median diameter)", "small (< median diameter)"),  # coordinates route
)


def nearest_neighbours(codes: np.ndarray, queries: np.ndarray, k: int, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """For each query row index, the ``k`` nearest other rows of ``codes`` (N, D) by Euclidean distance.

    Queries are processed ``chunk`` at a time, so memory is (chunk, N), never (Q, N, D).

    Returns:
        (Q, k) indices into ``codes``, nearest first, and their (Q, k) distances (latent units).
    """
    codes, queries = np.asarray(codes, np.float64), np.asarray(queries)
    k = min(k, len(codes) - 1)
    squared_norms = (codes**2).sum(axis=1)
    orders, nearest = [], []
    for start in range(0, len(queries), chunk):
        rows = queries[start : start + chunk]
        squared = squared_norms[rows][:, None] + squared_norms[None, :] - 2.0 * codes[rows] @ codes.T
        distances = np.sqrt(np.maximum(squared, 0.0))
        distances[np.arange(len(rows)), rows] = np.inf
        nearest_k = np.argpartition(distances, k - 1, axis=1)[:, :k] if k < len(codes) - 1 else np.argsort(distances, axis=1)[:, :k]
        part = np.take_along_axis(distances, nearest_k, axis=1)
        order = np.take_along_axis(nearest_k, np.lexsort((nearest_k, part), axis=1), axis=1)  # by distance, then index
        orders.append(order)
        nearest.append(np.take_along_axis(distances, order, axis=1))
    return np.concatenate(orders), np.concatenate(nearest)


def attribute_vector(codes: np.ndarray, has: np.ndarray, has_not: np.ndarray) -> np.ndarray | None:
    """Mean code of the ``has`` rows minus that of the ``has_not`` rows: (D,), None when a side is empty."""
    if not has.any() or not has_not.any():
        return None
    codes = np.asarray(codes, np.float64)
    return codes[has].mean(axis=0) - codes[has_not].mean(axis=0)


def traversal_codes(base: np.ndarray, vector: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``base + t·vector`` for each t in ``scales``: (T, D). t = 0 is the base, t = 1 adds the whole vector."""
    return np.asarray(base)[None, :] + np.asarray(scales)[:, None] * np.asarray(vector)[None, :]


def retrieval_caption(row: pd.Series) -> str:
    """Short characteristics of one nodule for the gallery: split, diameter, malignancy, spiculation."""
    parts = [str(row.get("split", ""))]
    for column in ("consensus_diameter_mm", "diameter_mm"):
        if pd.notna(row.get(column, np.nan)):
            parts.append(f"⌀ {row[column]:.1f} mm")
            break
    for column, short in (("malignancy", "mal"), ("spiculation", "spic"), ("texture", "tex")):
        if column in row.index and pd.notna(row[column]):
            parts.append(f"{short} {float(row[column]):g}")
    if "label" in row.index and pd.notna(row["label"]) and "malignancy" not in row.index:
        parts.append(f"label {row['label']}")
    return "\n".join(line for line in (" ".join(parts[:2]), " ".join(parts[2:])) if line)  # no empty second line (MNIST)


def plot_retrieval_gallery(thumbnails: list[list[np.ndarray]], captions: list[list[str]], distances: np.ndarray) -> bytes:
    """Rows of [query, neighbour 1 … k] grey thumbnails in [0, 1], each titled with its characteristics; PNG bytes."""
    rows, columns = len(thumbnails), max(len(r) for r in thumbnails)
    figure, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 1.9 * rows), squeeze=False)
    for r in range(rows):
        for c in range(columns):
            axis = axes[r][c]
            axis.set_xticks([]), axis.set_yticks([])
            if c >= len(thumbnails[r]):
                axis.axis("off")
                continue
            axis.imshow(thumbnails[r][c], cmap="gray", vmin=0, vmax=1)
            head = "query" if c == 0 else f"#{c}  d={distances[r][c - 1]:.2g}"
            axis.set_title(f"{head}\n{captions[r][c]}", fontsize=6.5)
            if c == 0:
                for spine in axis.spines.values():
                    spine.set_edgecolor("tab:red"), spine.set_linewidth(2)
    figure.tight_layout()
    return figure_png(figure, dpi=100, tight=False)
