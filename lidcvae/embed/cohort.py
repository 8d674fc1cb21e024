"""Embed a cohort with a trained checkpoint: every nodule of a manifest, or every split of a data source.

By default (``embed.average_orientations``) a 3D patch's code is the mean of its posterior means over
the orientations the checkpoint's training augmentation showed the model (``train.augment``: 16 with
flips and axial quarter turns, see ``lidcvae.data.augment.orientation_moves``): a nodule's
calcification or margin does not depend on how it lies, and averaging removes the part of the code
that does (what it buys: the representation table of benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lidcvae.embed.config import EmbedConfig
from lidcvae.embed.encode import embed_images, encode_batches, with_latents
from lidcvae.io import write_parquet
from lidcvae.train.checkpoint import TrainedModel, check_cohort, load_model

__all__ = ["embed_cohort", "embed_manifest", "embed_dataset"]


def embed_cohort(trained: TrainedModel, manifest_path: str | os.PathLike, settings: EmbedConfig,
                 progress: bool) -> pd.DataFrame:
    """Every nodule of a manifest with the posterior means ``z…`` and log-variances ``logvar…`` of a loaded
    checkpoint, its patches read ``settings.batch_size`` at a time (a tqdm bar with ``progress``).

    The checkpoint's input record (``lidcvae.data.model_input.ModelInput``: input edge, HU window, mask
    channel, context, patch fit) prepares the patches, and a cohort cut at another patch size or spacing, or
    without the masks the model takes, is refused.

    Raises:
        CheckpointMismatch: the manifest's patches differ from the model's training data (names both values).
    """
    from lidcvae.data import PatchSource
    from lidcvae.data.lidc import images_from_table
    from lidcvae.extract.manifest import read_manifest

    manifest = read_manifest(manifest_path)
    check_cohort(trained, manifest, manifest_path)
    source = PatchSource.for_input(manifest_path, trained.input)
    augment = trained.train_config.augment
    average_over = (augment.flips, augment.rot90) if settings.average_orientations else None
    means, logvars = [np.zeros((0, trained.model.latent_size), np.float32)] * 2
    for start in tqdm(range(0, len(manifest), settings.batch_size), desc="embed", unit="batch", disable=not progress):
        batch = manifest.iloc[start:start + settings.batch_size]
        mean, logvar = encode_batches(trained.model, images_from_table(batch, source), settings.batch_size,
                                      settings.device, average_over)
        means, logvars = np.concatenate([means, mean]), np.concatenate([logvars, logvar])
    return with_latents(manifest, means, logvars)


def embed_manifest(checkpoint: str | os.PathLike, manifest_path: str | os.PathLike, out_path: str | os.PathLike,
                   settings: EmbedConfig) -> pd.DataFrame:
    """Embed every nodule of a manifest (extract format) with a trained checkpoint (``embed_cohort``);
    write Parquet atomically. The checkpoint may come from another cohort (``embed.checkpoint``).

    Raises:
        CheckpointMismatch: the manifest's patches differ from the model's training data (names both values).
    """
    embeddings = embed_cohort(load_model(checkpoint), manifest_path, settings, False)
    write_parquet(embeddings, out_path)
    return embeddings


def embed_dataset(checkpoint: str | os.PathLike, source: Any, out_path: str | os.PathLike,
                  settings: EmbedConfig) -> pd.DataFrame:
    """Embed every split of a data source (e.g. the ``MnistConfig`` digits); write Parquet atomically."""
    from lidcvae.data import load_split

    model = load_model(checkpoint).model
    parts = []
    for split in ("train", "val", "test"):
        data = load_split(source, split)
        parts.append(embed_images(model, data.images, data.table.reset_index(drop=True), settings.batch_size, settings.device))
    embeddings = pd.concat(parts, ignore_index=True)
    write_parquet(embeddings, out_path)
    return embeddings
