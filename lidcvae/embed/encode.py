"""Posterior means and log-variances of images, in eval mode, and the table columns that hold them.

The encoder runs in eval mode, so batch-norm layers use their frozen running statistics and a
nodule's code does not depend on which other nodules share its batch.
"""

from __future__ import annotations

import logging
import math
import os
import time

import numpy as np
import pandas as pd
import torch

from lidcvae.data.augment import orientations
from lidcvae.io import read_parquet
from lidcvae.models.base import VAE

__all__ = ["MEAN_PREFIX", "LOGVAR_PREFIX", "latent_column_names", "posterior_arrays", "encode_batches", "embed_images", "with_latents",
           "read_embeddings"]

MEAN_PREFIX = "z"
LOGVAR_PREFIX = "logvar"
logger = logging.getLogger("lidcvae.embed")


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
    model: VAE, images: torch.Tensor, batch_size: int, device: str | torch.device,
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
    model: VAE, images: torch.Tensor, table: pd.DataFrame, batch_size: int, device: str | torch.device,
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
    return with_latents(table, means, logvars)


def with_latents(table: pd.DataFrame, means: np.ndarray, logvars: np.ndarray) -> pd.DataFrame:
    """``table`` (N rows) with the (N, D) posterior means as ``z000…`` and log-variances as ``logvar000…``."""
    latents = pd.DataFrame(
        np.concatenate([means, logvars], axis=1),
        columns=latent_column_names(means.shape[1]) + latent_column_names(means.shape[1], LOGVAR_PREFIX),
        index=table.index,
    )
    return pd.concat([table, latents], axis=1).reset_index(drop=True)


def read_embeddings(path: str | os.PathLike) -> pd.DataFrame:
    """An embeddings table as written by ``embed_manifest``."""
    return read_parquet(path)
