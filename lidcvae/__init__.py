"""lidcvae: LIDC-IDRI chest CT DICOM to 64³ nodule patches, a 3D convolutional VAE, latent embeddings.

``lidcvae.features(table, checkpoint)`` embeds a coordinates table without a workflow
(``lidcvae.embed.table.features_from_table``); it is imported on first use, so ``import lidcvae`` stays
free of torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"
__all__ = ["__version__", "features"]


def __getattr__(name: str) -> Any:
    if name == "features":
        from lidcvae.embed.table import features_from_table

        return features_from_table
    raise AttributeError(f"module 'lidcvae' has no attribute {name!r}")
