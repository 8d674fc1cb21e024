"""The embeddings in TensorBoard's projector: every nodule a point, coloured by any manifest characteristic.

``tensorboard --logdir <evaluate>/projector`` → PROJECTOR shows the posterior means in PCA / t-SNE /
UMAP, with the characteristics as metadata columns (colour or label by malignancy, spiculation ...)
and each sample's axial centre slice as its thumbnail.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lidcvae.evaluate.figures import centre_views, to_display
from lidcvae.intensity import HUWindow

__all__ = ["METADATA_COLUMNS", "metadata_table", "write_projector"]

METADATA_COLUMNS = (
    "nodule_id", "id", "patient_id", "split", "label", "malignancy", "spiculation", "lobulation", "margin", "texture", "sphericity",
    "calcification", "internalStructure", "subtlety", "consensus_diameter_mm",
)


def metadata_table(table: pd.DataFrame) -> tuple[list[list[str]], list[str]]:
    """Rows of text metadata and their header: the ``METADATA_COLUMNS`` the table has, missing values as 'NA'."""
    columns = [c for c in METADATA_COLUMNS if c in table.columns]
    def text(value) -> str:
        if pd.isna(value):
            return "NA"
        return f"{value:.3g}" if isinstance(value, float) else str(value).replace("\t", " ")
    return [[text(v) for v in row] for row in table[columns].itertuples(index=False)], columns


def write_projector(codes: np.ndarray, table: pd.DataFrame, images: np.ndarray, log_dir: str | os.PathLike,
                    hu_window: HUWindow | None, thumbnail_size: int = 32) -> Path:
    """Write posterior means (N, D), their metadata and (N, 1, T, T) thumbnails for the projector.

    Args:
        images: (N, *event_shape) model-scale inputs; the axial centre slice of each becomes its thumbnail,
            resized to ``thumbnail_size`` pixels (the projector tiles every thumbnail into one sprite).
        hu_window: the model's HU window for CT thumbnails in the lung window; None for other images.
    """
    from torch.utils.tensorboard import SummaryWriter

    slices = np.stack([to_display(centre_views(image)[0], hu_window) for image in images])
    thumbnails = torch.nn.functional.interpolate(torch.from_numpy(slices).float()[:, None], size=(thumbnail_size,) * 2,
                                                 mode="bilinear", align_corners=False).clamp(0, 1)
    metadata, header = metadata_table(table)
    log_dir = Path(log_dir)
    partial = log_dir.with_name(f".{log_dir.name}.partial")  # the folder appears whole or not at all
    shutil.rmtree(partial, ignore_errors=True)
    with SummaryWriter(str(partial)) as writer:
        writer.add_embedding(torch.tensor(np.asarray(codes), dtype=torch.float32), metadata=metadata,
                             metadata_header=header, label_img=thumbnails, tag="posterior_means")
    shutil.rmtree(log_dir, ignore_errors=True)
    os.replace(partial, log_dir)
    return log_dir
