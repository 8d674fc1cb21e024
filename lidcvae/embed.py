"""Embed nodules: posterior means and log-variances of a trained VAE, one table row per nodule.

The encoder runs in eval mode, so batch-norm layers use their frozen running statistics and a
nodule's code does not depend on which other nodules share its batch. Any manifest in the extract
format can be embedded, including nodules the model never saw.

By default (``embed.average_orientations``) a 3D patch's code is the mean of its posterior means over
the orientations the checkpoint's training augmentation showed the model (``train.augment``: 16 with
flips and axial quarter turns, see ``lidcvae.data.augment.orientation_moves``): a nodule's
calcification or margin does not depend on how it lies, and averaging removes the part of the code
that does (what it buys: the representation table of benchmarks/RESULTS.md).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from lidcvae.config import Section
from lidcvae.data.augment import orientations
from lidcvae.io import read_parquet, write_parquet
from lidcvae.models.base import VAE

__all__ = [
    "EmbedConfig",
    "MEAN_PREFIX",
    "LOGVAR_PREFIX",
    "latent_column_names",
    "posterior_arrays",
    "encode_batches",
    "embed_images",
    "trained_orientations",
    "embed_manifest",
    "embed_dataset",
    "read_embeddings",
]

MEAN_PREFIX = "z"
LOGVAR_PREFIX = "logvar"
logger = logging.getLogger(__name__)


def latent_column_names(latent_size: int, prefix: str = MEAN_PREFIX) -> list[str]:
    """``z000`` … ``z255`` for 256 latent dimensions (at least three digits, zero-padded)."""
    width = max(3, len(str(latent_size - 1)))
    return [f"{prefix}{index:0{width}d}" for index in range(latent_size)]


def posterior_arrays(embeddings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The (N, D) posterior means and log-variances stored in an embeddings table."""
    means = [c for c in embeddings.columns if c.startswith(MEAN_PREFIX) and c[len(MEAN_PREFIX) :].isdigit()]
    logvars = [c for c in embeddings.columns if c.startswith(LOGVAR_PREFIX) and c[len(LOGVAR_PREFIX) :].isdigit()]
    return embeddings[means].to_numpy(np.float64), embeddings[logvars].to_numpy(np.float64)


@torch.no_grad()
def encode_batches(
    model: VAE, images: torch.Tensor, batch_size: int = 32, device: str | torch.device = "cpu",
    average_over: tuple[bool, bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and log-variance of every image, in eval mode.

    Args:
        images: (N, *event_shape) float32 in model input scale.
        average_over: ``(flips, rot90)`` of a training augmentation: for 3D patches (N, C, S, S, S), the
            mean of the posterior means over every orientation it draws (``orientation_moves``; 16 with
            both) and the log of the mean posterior variance, one encoder pass per orientation. None,
            or 2D images: each image encoded as it is.

    Returns:
        Two float32 arrays (N, D).
    """
    if average_over and average_over[1] and images.dim() == 5 and images.shape[3] != images.shape[4]:
        raise ValueError(f"embed.average_orientations needs patches with a square axial plane, got "
                         f"{tuple(images.shape[1:])}; set it to false to encode them as they are")
    model.eval().to(device)
    means, logvars = [], []
    for batch in images.split(batch_size):
        batch = batch.to(device)
        if average_over and batch.dim() == 5:
            posteriors = [model.encode(view) for view in orientations(batch, *average_over)]
            mean = torch.stack([m.float() for m, _ in posteriors]).mean(0)
            logvar = torch.stack([v.float() for _, v in posteriors]).logsumexp(0) - math.log(len(posteriors))
        else:
            mean, logvar = model.encode(batch)
        means.append(mean.float().cpu())
        logvars.append(logvar.float().cpu())
    if not means:
        empty = np.zeros((0, model.latent_size), np.float32)
        return empty, empty.copy()
    return torch.cat(means).numpy(), torch.cat(logvars).numpy()


def embed_images(
    model: VAE, images: torch.Tensor, table: pd.DataFrame, batch_size: int = 32, device: str | torch.device = "cpu",
    average_over: tuple[bool, bool] | None = None,
) -> pd.DataFrame:
    """``table`` (one row per image) with columns ``z000…`` (posterior mean) and ``logvar000…`` appended
    (``average_over``: see ``encode_batches``)."""
    if len(images) != len(table):
        raise ValueError(f"{len(images)} images but {len(table)} table rows; they must correspond one to one")
    start = time.perf_counter()
    means, logvars = encode_batches(model, images, batch_size, device, average_over)
    seconds = time.perf_counter() - start
    logger.info("embedded %d samples in %.1f s (%.1f samples/s)", len(images), seconds, len(images) / max(seconds, 1e-9))
    latents = pd.DataFrame(
        np.concatenate([means, logvars], axis=1),
        columns=latent_column_names(means.shape[1]) + latent_column_names(means.shape[1], LOGVAR_PREFIX),
        index=table.index,
    )
    return pd.concat([table, latents], axis=1).reset_index(drop=True)




@dataclass(frozen=True)
class EmbedConfig(Section):
    """The ``embed`` config section (lidcvae/schemas/embed.yaml): encoder batch size, torch device, whether
    a 3D patch's code averages its trained orientations, and an optional checkpoint trained elsewhere (set:
    training is skipped)."""

    SECTION: ClassVar[str] = "embed"
    batch_size: int
    device: str
    average_orientations: bool
    checkpoint: str | None


def _load_model(checkpoint: str | os.PathLike) -> tuple[VAE, dict[str, Any], dict[str, Any]]:
    """(model in eval mode, the config it was trained with, what it expects of its input)."""
    from lidcvae.train.checkpoint import checkpoint_description, model_from_checkpoint, read_checkpoint

    state = read_checkpoint(checkpoint)
    return model_from_checkpoint(state, path=checkpoint), state["config"], checkpoint_description(state, checkpoint)


def trained_orientations(config: Mapping[str, Any]) -> tuple[bool, bool]:
    """``(flips, rot90)`` of a checkpoint's ``train.augment`` (the schema's defaults where it has none)."""
    from lidcvae.train.config import Augment

    augment = Augment.from_mapping((config.get("train") or {}).get("augment") or {})
    return augment.flips, augment.rot90


def embed_manifest(checkpoint: str | os.PathLike, manifest_path: str | os.PathLike, out_path: str | os.PathLike,
                   settings: EmbedConfig | None = None) -> pd.DataFrame:
    """Embed every nodule of a manifest (extract format) with a trained checkpoint; write Parquet atomically.

    ``settings``: the typed ``embed`` section (batch size, device); None takes the schema's defaults.

    The checkpoint may come from another cohort (``embed.checkpoint``): its own ``model.input_size``,
    ``model.hu_window``, mask channel and ``train.patch_fit`` prepare the patches, and a cohort cut at
    another patch size or spacing is refused.

    Raises:
        CheckpointMismatch: the manifest's patches were cut differently from the model's training data.
    """
    from lidcvae.data import PatchSource
    from lidcvae.data.lidc import images_from_table
    from lidcvae.extract.manifest import read_manifest
    from lidcvae.train.checkpoint import check_cohort_fits

    settings = settings or EmbedConfig.from_mapping({})
    model, config, description = _load_model(checkpoint)
    manifest = read_manifest(manifest_path)
    sizes = {int(v) for v in manifest["patch_size"].dropna()} if "patch_size" in manifest.columns else set()
    spacings = {float(v) for v in manifest["spacing_mm"].dropna()} if "spacing_mm" in manifest.columns else set()
    check_cohort_fits(description, sizes, spacings, checkpoint, manifest_path)
    images = images_from_table(manifest, PatchSource.for_checkpoint(manifest_path, config))
    average_over = trained_orientations(config) if settings.average_orientations else None
    embeddings = embed_images(model, images, manifest, settings.batch_size, settings.device, average_over)
    write_parquet(embeddings, out_path)
    return embeddings


def embed_dataset(checkpoint: str | os.PathLike, source: Any, out_path: str | os.PathLike,
                  settings: EmbedConfig) -> pd.DataFrame:
    """Embed every split of a data source (e.g. the ``MnistConfig`` digits); write Parquet atomically."""
    from lidcvae.data import load_split

    model, *_ = _load_model(checkpoint)
    parts = []
    for split in ("train", "val", "test"):
        data = load_split(source, split)
        parts.append(embed_images(model, data.images, data.table.reset_index(drop=True), settings.batch_size, settings.device))
    embeddings = pd.concat(parts, ignore_index=True)
    write_parquet(embeddings, out_path)
    return embeddings


def read_embeddings(path: str | os.PathLike) -> pd.DataFrame:
    """An embeddings table as written by ``embed_manifest``."""
    return read_parquet(path)
