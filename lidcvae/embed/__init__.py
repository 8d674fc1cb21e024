"""Stage 3, embed: posterior means and log-variances of a trained VAE, one table row per nodule.

Any manifest in the extract format can be embedded, including nodules the model never saw
(``embed_manifest``); ``encode_batches`` and ``embed_images`` work on tensors already in the model's
input scale. The typed ``embed`` section is ``EmbedConfig``.
"""

from __future__ import annotations

from lidcvae.embed.cohort import embed_dataset, embed_manifest
from lidcvae.embed.config import EmbedConfig
from lidcvae.embed.encode import (
    LOGVAR_PREFIX, MEAN_PREFIX, embed_images, encode_batches, latent_column_names, posterior_arrays, read_embeddings,
)

__all__ = ["EmbedConfig", "MEAN_PREFIX", "LOGVAR_PREFIX", "latent_column_names", "posterior_arrays", "encode_batches",
           "embed_images", "embed_manifest", "embed_dataset", "read_embeddings"]

