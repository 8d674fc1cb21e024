"""Embeddings averaged over a patch's 16 orientations: the orientations training shows, and codes that
do not change when a nodule is flipped or turned."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_embed import _write_manifest
from test_evaluate_standins import TinyLinearVAE

import lidcvae
import lidcvae.embed as embed
from lidcvae.data.augment import N_ORIENTATIONS, augment_batch, orientations


def _key(patch: torch.Tensor) -> bytes:
    return patch.contiguous().numpy().tobytes()


def test_the_orientations_are_16_distinct_the_identity_first():
    patches = torch.rand(2, 1, 4, 4, 4)
    views = list(orientations(patches))
    assert len(views) == N_ORIENTATIONS == 16
    assert torch.equal(views[0], patches)
    assert len({_key(view) for view in views}) == 16


def test_every_training_augmentation_is_one_of_the_orientations():
    patch = torch.rand(1, 1, 4, 4, 4)
    reachable = {_key(view) for view in orientations(patch)}
    generator = torch.Generator().manual_seed(0)
    drawn = {_key(augment_batch(patch, generator)) for _ in range(400)}
    assert drawn == reachable  # each of the 16 drawn, and nothing else


def test_averaged_code_does_not_change_when_the_patch_is_flipped_or_turned():
    model = TinyLinearVAE((1, 4, 4, 4), latent_size=6)  # a linear encoder: no invariance of its own
    images = torch.rand(3, 1, 4, 4, 4)
    turned = torch.rot90(images.flip(2), 1, (3, 4))
    plain, _ = embed.encode_batches(model, images)
    plain_turned, _ = embed.encode_batches(model, turned)
    assert np.abs(plain - plain_turned).max() > 1e-2  # the encoder alone sees the difference
    averaged, averaged_logvar = embed.encode_batches(model, images, batch_size=2, average_orientations=True)
    averaged_turned, averaged_turned_logvar = embed.encode_batches(model, turned, average_orientations=True)
    np.testing.assert_allclose(averaged, averaged_turned, atol=1e-5)
    np.testing.assert_allclose(averaged_logvar, averaged_turned_logvar, atol=1e-5)


def test_averaged_code_is_the_mean_posterior_mean_and_the_log_mean_variance():
    model = TinyLinearVAE((1, 4, 4, 4), latent_size=5)
    images = torch.rand(4, 1, 4, 4, 4)
    each = [embed.encode_batches(model, view) for view in orientations(images)]
    means, logvars = embed.encode_batches(model, images, batch_size=3, average_orientations=True)
    np.testing.assert_allclose(means, np.mean([m for m, _ in each], axis=0), atol=1e-6)
    np.testing.assert_allclose(logvars, np.log(np.mean([np.exp(v) for _, v in each], axis=0)), atol=1e-5)


def test_flat_images_are_encoded_as_they_are():
    model = TinyLinearVAE((1, 6, 6), latent_size=4)  # an MNIST-like 2D input
    images = torch.rand(5, 1, 6, 6)
    np.testing.assert_array_equal(embed.encode_batches(model, images, average_orientations=True)[0],
                                  embed.encode_batches(model, images)[0])


def test_a_non_square_axial_plane_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="embed.average_orientations"):
        embed.encode_batches(TinyLinearVAE((1, 4, 5, 6)), torch.rand(2, 1, 4, 5, 6), average_orientations=True)


def test_embed_manifest_averages_by_default(tmp_path, monkeypatch):
    model = TinyLinearVAE((1, 4, 4, 4), latent_size=8)
    describes = {"dataset": "lidc", "patch_size": 64, "spacing_mm": 1.0, "lidcvae_version": lidcvae.__version__}
    trained = {"model": {"hu_window": [-1000, 400], "input_size": 4, "mask_channel": False}, "train": {"patch_fit": "crop"}}
    monkeypatch.setattr(embed, "_load_model", lambda checkpoint: (model, trained, describes))
    patch = np.random.default_rng(0).integers(-1000, 400, (4, 4, 4))
    manifest = _write_manifest(tmp_path, [patch, np.rot90(patch[::-1], 1, (1, 2))])  # the same nodule, turned
    settings = embed.EmbedConfig.from_mapping({})
    assert settings.average_orientations
    codes = embed.posterior_arrays(embed.embed_manifest("unused.pt", manifest, tmp_path / "a.parquet", settings))[0]
    np.testing.assert_allclose(codes[0], codes[1], atol=1e-4)
    plain = embed.EmbedConfig.from_mapping({"average_orientations": False})
    plain_codes = embed.posterior_arrays(embed.embed_manifest("unused.pt", manifest, tmp_path / "b.parquet", plain))[0]
    assert np.abs(plain_codes[0] - plain_codes[1]).max() > 1e-2
    assert pd.read_parquet(tmp_path / "a.parquet")["nodule_id"].tolist() == ["n0", "n1"]
