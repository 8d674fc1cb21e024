"""The benchmark's rows as feature tables: one row per nodule (``nodule_id`` + numeric columns).

A model row is a checkpoint's posterior means, averaged over the orientations it trained on (as the embed
stage does); the control is the reference variant's architecture at its train seed's random weights, never
trained, embedded the same way; the baselines need no network: consensus diameter, raw-voxel PCA (fitted
on the train and val nodules only) and pyradiomics features of the same masks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from lidcvae.data import PatchSource
from lidcvae.data.lidc import images_from_table
from lidcvae.data.model_input import ModelInput
from lidcvae.embed import encode_batches
from lidcvae.embed.config import EmbedConfig
from lidcvae.extract.manifest import read_manifest
from lidcvae.models import build_model
from lidcvae.models.base import VAE

__all__ = ["posterior_features", "latent_features", "untrained_features", "diameter_features", "raw_pca_features",
           "radiomics_features", "FIT_SPLITS"]

#: The splits a row may be fitted on (PCA here, the probes in ``score``); test is only ever scored.
FIT_SPLITS = ("train", "val")


def posterior_features(model: VAE, record: ModelInput, manifest_path: str | os.PathLike, orientations: tuple[bool, bool],
                       settings: EmbedConfig) -> pd.DataFrame:
    """``nodule_id`` + ``z000…``: posterior means of every manifest nodule, averaged over ``orientations``
    (``(flips, rot90)`` of the training augmentation) when ``settings.average_orientations``."""
    manifest = read_manifest(manifest_path)
    images = images_from_table(manifest, PatchSource.for_input(manifest_path, record))
    average_over = orientations if settings.average_orientations else None
    means, _ = encode_batches(model, images, settings.batch_size, settings.device, average_over)
    columns = [f"z{i:03d}" for i in range(means.shape[1])]
    return pd.concat([manifest[["nodule_id"]].reset_index(drop=True), pd.DataFrame(means, columns=columns)], axis=1)


def latent_features(checkpoint: str | os.PathLike, manifest_path: str | os.PathLike, settings: EmbedConfig) -> pd.DataFrame:
    """A trained checkpoint's row (refuses a cohort cut otherwise than its training data)."""
    from lidcvae.train.checkpoint import check_cohort, load_model

    trained = load_model(checkpoint)
    check_cohort(trained, read_manifest(manifest_path), manifest_path)
    augment = trained.train_config.augment
    return posterior_features(trained.model, trained.input, manifest_path, (augment.flips, augment.rot90), settings)


def untrained_features(variant, manifest_path: str | os.PathLike, settings: EmbedConfig) -> pd.DataFrame:
    """The control row: ``variant`` (a ``RunConfig``) built at ``train.seed``'s random weights, never trained."""
    torch.manual_seed(variant.train.seed)
    model = build_model(variant.model).eval()
    record = ModelInput.for_training(variant.dataset, variant.model, variant.train.patch_fit, manifest_path)
    augment = variant.train.augment
    return posterior_features(model, record, manifest_path, (augment.flips, augment.rot90), settings)


def diameter_features(manifest: pd.DataFrame) -> pd.DataFrame:
    """log consensus diameter (mm), the size-only row every claim is held against."""
    return pd.DataFrame({"nodule_id": manifest["nodule_id"],
                         "log_consensus_diameter_mm": np.log(manifest["consensus_diameter_mm"].astype(float))})


def raw_pca_features(manifest_path: str | os.PathLike, crop: int, components: int, hu_window: Sequence[float],
                     fill_hu: float) -> pd.DataFrame:
    """PCA of the central ``crop``³ voxels (HU windowed to [0, 1]), fitted on the train and val nodules only."""
    from sklearn.decomposition import PCA

    manifest = read_manifest(manifest_path)
    source = PatchSource(manifest_path, crop, (float(hu_window[0]), float(hu_window[1])), "crop", False, None, fill_hu)
    voxels = images_from_table(manifest, source).flatten(1).numpy().astype(np.float64)
    fit = manifest["split"].isin(FIT_SPLITS).to_numpy()
    pca = PCA(n_components=min(components, int(fit.sum()), voxels.shape[1]), random_state=0).fit(voxels[fit])
    scores = pca.transform(voxels)
    return pd.concat([manifest[["nodule_id"]].reset_index(drop=True),
                      pd.DataFrame(scores, columns=[f"pc{i:03d}" for i in range(scores.shape[1])])], axis=1)


def radiomics_features(manifest: pd.DataFrame, feature_classes: Sequence[str], workers: int) -> pd.DataFrame:
    """pyradiomics ``feature_classes`` (e.g. ``("shape",)``) of every nodule's image and mask; a nodule whose
    mask patch is empty (1 of the 2,651 rendered: a one-reader outline that the 1 mm resampling thins out)
    gets NaN, which leaves it out of this row's fit and score."""
    from lidcvae.evaluate.radiomics import radiomics_table

    values = radiomics_table(manifest, workers, tuple(feature_classes), empty_as_nan=True).reset_index(drop=True)
    return pd.concat([manifest[["nodule_id"]].reset_index(drop=True), values], axis=1)
