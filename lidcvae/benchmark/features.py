"""The benchmark's rows as feature tables: one row per nodule (``nodule_id`` + numeric columns).

A model row is a checkpoint's posterior means, averaged over the orientations it trained on (as the embed
stage does); the control is the reference variant's architecture at its train seed's random weights, never
trained, embedded the same way; the baselines need no network: consensus diameter, raw-voxel PCA (fitted
on the train and val nodules only) and pyradiomics features of the same masks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lidcvae.data import PatchSource
from lidcvae.data.lidc import images_from_table
from lidcvae.data.model_input import ModelInput
from lidcvae.embed.cohort import embed_cohort
from lidcvae.embed.config import EmbedConfig
from lidcvae.extract.manifest import read_manifest
from lidcvae.models import build_model

__all__ = ["latent_features", "untrained_features", "diameter_features", "raw_pca_features",
           "radiomics_features", "FIT_SPLITS"]

#: The splits a row may be fitted on (PCA here, the probes in ``score``); test is only ever scored.
FIT_SPLITS = ("train", "val")


def _means_table(embeddings: pd.DataFrame) -> pd.DataFrame:
    """``nodule_id`` + ``z000…`` of an ``embed_cohort`` table."""
    means = [c for c in embeddings.columns if c.startswith("z") and c[1:].isdigit()]
    return embeddings[["nodule_id", *means]]


def latent_features(checkpoint: str | os.PathLike, manifest_path: str | os.PathLike, settings: EmbedConfig) -> pd.DataFrame:
    """A trained checkpoint's row (refuses a cohort cut otherwise than its training data)."""
    from lidcvae.train.checkpoint import load_model

    return _means_table(embed_cohort(load_model(checkpoint), manifest_path, settings, False))


def untrained_features(variant, manifest_path: str | os.PathLike, settings: EmbedConfig) -> pd.DataFrame:
    """The control row: ``variant`` (a ``RunConfig``) built at ``train.seed``'s random weights, never trained,
    embedded exactly as a trained checkpoint is."""
    from lidcvae.train.checkpoint import TrainedModel

    torch.manual_seed(variant.train.seed)
    record = ModelInput.for_training(variant.dataset, variant.model, variant.train.patch_fit, manifest_path)
    untrained = TrainedModel(build_model(variant.model).eval(), record, variant.model, variant.train, variant.to_dict(),
                             0, 0, Path(f"untrained {variant.model.name}"))
    return _means_table(embed_cohort(untrained, manifest_path, settings, False))


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
