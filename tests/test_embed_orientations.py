"""Embeddings averaged over the orientations training showed the model: which orientations those are,
and codes that do not change when a nodule is flipped or turned."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_embed import _write_manifest
from test_evaluate_standins import TinyLinearVAE, stand_in_trained

import lidcvae.embed as embed
from lidcvae.data.augment import augment_batch, orientations

BOTH = (True, True)


def _key(patch: torch.Tensor) -> bytes:
    return patch.contiguous().numpy().tobytes()


@pytest.mark.parametrize("flips, rot90, count", [(True, True, 16), (True, False, 8), (False, True, 4), (False, False, 1)])
def test_the_orientations_are_exactly_those_the_augmentation_draws(flips, rot90, count):
    patch = torch.rand(1, 1, 4, 4, 4)
    views = list(orientations(patch, flips, rot90))
    assert len(views) == count and torch.equal(views[0], patch)
    reachable = {_key(view) for view in views}
    assert len(reachable) == count  # no orientation twice
    generator = torch.Generator().manual_seed(0)
    drawn = {_key(augment_batch(patch, generator, flips, rot90)) for _ in range(400)}
    assert drawn == reachable  # each drawn, and nothing else


def test_averaged_code_does_not_change_when_the_patch_is_flipped_or_turned():
    model = TinyLinearVAE((1, 4, 4, 4), latent_size=6)  # a linear encoder: no invariance of its own
    images = torch.rand(3, 1, 4, 4, 4)
    turned = torch.rot90(images.flip(2), 1, (3, 4))
    plain, _ = embed.encode_batches(model, images, batch_size=8, device="cpu")
    plain_turned, _ = embed.encode_batches(model, turned, batch_size=8, device="cpu")
    assert np.abs(plain - plain_turned).max() > 1e-2  # the encoder alone sees the difference
    averaged, averaged_logvar = embed.encode_batches(model, images, batch_size=2, device="cpu", average_over=BOTH)
    averaged_turned, averaged_turned_logvar = embed.encode_batches(model, turned, batch_size=8, device="cpu", average_over=BOTH)
    np.testing.assert_allclose(averaged, averaged_turned, atol=1e-5)
    np.testing.assert_allclose(averaged_logvar, averaged_turned_logvar, atol=1e-5)
    turns_only, _ = embed.encode_batches(model, images, batch_size=8, device="cpu", average_over=(False, True))
    turned_only, _ = embed.encode_batches(model, torch.rot90(images, 1, (3, 4)), batch_size=8, device="cpu", average_over=(False, True))
    np.testing.assert_allclose(turns_only, turned_only, atol=1e-5)  # invariant to what was averaged over
    assert np.abs(turns_only - averaged).max() > 1e-3  # and a different average from the 16


def test_averaged_code_is_the_mean_posterior_mean_and_the_log_mean_variance():
    model = TinyLinearVAE((1, 4, 4, 4), latent_size=5)
    images = torch.rand(4, 1, 4, 4, 4)
    each = [embed.encode_batches(model, view, batch_size=8, device="cpu") for view in orientations(images, *BOTH)]
    means, logvars = embed.encode_batches(model, images, batch_size=3, device="cpu", average_over=BOTH)
    np.testing.assert_allclose(means, np.mean([m for m, _ in each], axis=0), atol=1e-6)
    np.testing.assert_allclose(logvars, np.log(np.mean([np.exp(v) for _, v in each], axis=0)), atol=1e-5)


def test_flat_images_are_encoded_as_they_are():
    model = TinyLinearVAE((1, 6, 6), latent_size=4)  # an MNIST-like 2D input
    images = torch.rand(5, 1, 6, 6)
    np.testing.assert_array_equal(embed.encode_batches(model, images, batch_size=8, device="cpu", average_over=BOTH)[0],
                                  embed.encode_batches(model, images, batch_size=8, device="cpu")[0])


def test_a_non_square_axial_plane_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="embed.average_orientations"):
        embed.encode_batches(TinyLinearVAE((1, 4, 5, 6)), torch.rand(2, 1, 4, 5, 6), batch_size=8, device="cpu", average_over=BOTH)


def _embed_turned_twins(tmp_path, monkeypatch, train: dict, settings: dict) -> np.ndarray:
    """Codes of one random patch and of the same patch flipped in z and turned, via embed_manifest."""
    model = TinyLinearVAE((1, 4, 4, 4), latent_size=8)
    monkeypatch.setattr(embed.cohort, "load_model", lambda checkpoint: stand_in_trained(model, 4, train))
    patch = np.random.default_rng(0).integers(-1000, 400, (4, 4, 4))
    folder = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    manifest = _write_manifest(folder, [patch, np.rot90(patch[::-1], 1, (1, 2))])
    out = folder / "embeddings.parquet"
    embed.embed_manifest("unused.pt", manifest, out, embed.EmbedConfig.from_mapping(settings))
    assert pd.read_parquet(out)["nodule_id"].tolist() == ["n0", "n1"]
    return embed.posterior_arrays(pd.read_parquet(out))[0]


def test_embed_manifest_averages_the_trained_orientations_by_default(tmp_path, monkeypatch):
    assert embed.EmbedConfig.from_mapping({}).average_orientations
    codes = _embed_turned_twins(tmp_path, monkeypatch, {}, {})  # train.augment defaults: flips and turns
    np.testing.assert_allclose(codes[0], codes[1], atol=1e-4)
    plain = _embed_turned_twins(tmp_path, monkeypatch, {}, {"average_orientations": False})
    assert np.abs(plain[0] - plain[1]).max() > 1e-2
    unaugmented = _embed_turned_twins(tmp_path, monkeypatch, {"augment": {"flips": False, "rot90": False}}, {})
    np.testing.assert_allclose(unaugmented, plain, atol=1e-6)  # a model trained on one orientation: encoded as is

