"""Embedding: one row per manifest row, 256 mean + 256 log-variance columns, frozen batch norm, new nodules."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from test_evaluate_standins import TinyLinearVAE, stand_in_trained, synthetic_table

import lidcvae.embed as embed
from lidcvae.data import PatchSource
from lidcvae.intensity import HUWindow
from lidcvae.models import ModelConfig


def test_embeddings_have_one_row_per_manifest_row_and_256_latent_columns():
    table = synthetic_table(9, patients=3)
    model = TinyLinearVAE((1, 4, 4, 4), latent_size=256)
    embeddings = embed.embed_images(model, torch.rand(9, 1, 4, 4, 4), table, batch_size=4, device="cpu")
    means, logvars = embed.posterior_arrays(embeddings)
    assert len(embeddings) == len(table) and means.shape == logvars.shape == (9, 256)
    assert embeddings.columns[len(table.columns)] == "z000"
    assert "z255" in embeddings.columns and "logvar255" in embeddings.columns and "z256" not in embeddings.columns
    pd.testing.assert_frame_equal(embeddings[table.columns], table)


def test_embedding_uses_frozen_batch_norm_so_batch_composition_does_not_matter():
    model = TinyLinearVAE(latent_size=4, batch_norm=True).train()
    model(torch.rand(16, 1, 4, 4, 4) * 3)  # move the running statistics away from (0, 1)
    images = torch.rand(7, 1, 4, 4, 4)
    alone = embed.encode_batches(model, images, batch_size=1, device="cpu")[0]
    together = embed.encode_batches(model, images, batch_size=7, device="cpu")[0]
    np.testing.assert_allclose(alone, together, atol=1e-6)
    assert not model.training


def test_embedding_twice_gives_the_same_codes():
    model, images = TinyLinearVAE(), torch.rand(5, 1, 4, 4, 4)
    np.testing.assert_array_equal(embed.encode_batches(model, images, batch_size=8, device="cpu")[0], embed.encode_batches(model, images, batch_size=8, device="cpu")[0])


def test_mismatched_images_and_table_are_refused():
    with pytest.raises(ValueError, match="one to one"):
        embed.embed_images(TinyLinearVAE(), torch.rand(3, 1, 4, 4, 4), synthetic_table(4, 2), batch_size=8, device="cpu")


@pytest.mark.parametrize("window, expected", [([-1200, 600], HUWindow(-1200, 600)),
                                              ([-900, 300], HUWindow(-900, 300)), (None, HUWindow(-1000, 400))])
def test_hu_window_is_read_from_the_model_config(window, expected):
    model = ModelConfig.from_mapping({} if window is None else {"hu_window": window})  # None: the schema's default
    assert HUWindow.from_bounds(model.hu_window) == expected


def _write_manifest(folder, patches_zyx):
    rows = []
    for index, patch in enumerate(patches_zyx):
        name = f"patches/P/n{index}_image.nii.gz"
        (folder / "patches" / "P").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(patch.transpose(2, 1, 0).astype(np.int16), np.eye(4)), folder / name)
        rows.append({"nodule_id": f"n{index}", "patient_id": "P", "label": 1, "split": "test", "image_path": name})
    pd.DataFrame(rows).to_parquet(folder / "manifest.parquet")
    return folder / "manifest.parquet"


def test_manifest_images_come_back_in_zyx_order_and_model_scale(tmp_path):
    patch = np.full((4, 5, 6), -1000, np.int16)
    patch[3, 0, 0] = 400  # last z, first y, first x
    manifest_path = _write_manifest(tmp_path, [patch])
    from lidcvae.extract.manifest import read_manifest

    from lidcvae.data.lidc import images_from_table

    source = PatchSource(manifest_path, input_size=6, hu_window=(-1000, 400), patch_fit="crop", mask_channel=False,
                         context_voxels=None, fill_hu=-860.0)
    with pytest.raises(ValueError, match="patch edge 6 < model.input_size"):
        images_from_table(read_manifest(manifest_path), PatchSource(manifest_path, 7, (-1000, 400), "crop", False, None, -860.0))
    images = images_from_table(read_manifest(manifest_path), source)
    assert images.shape == (1, 1, 4, 5, 6) and images.dtype == torch.float32  # input_size = edge: nothing cropped
    assert images[0, 0, 3, 0, 0] == 1.0 and images.sum() == 1.0


def test_embed_manifest_embeds_unseen_nodules_with_a_trained_model(tmp_path, monkeypatch):
    model = TinyLinearVAE((1, 4, 5, 6), latent_size=8)
    monkeypatch.setattr(embed.cohort, "load_model", lambda checkpoint: stand_in_trained(model, 6))
    patches = [np.random.default_rng(i).integers(-1000, 400, (4, 5, 6)) for i in range(3)]
    out = tmp_path / "embed" / "embeddings.parquet"
    embed.embed_manifest("unused.pt", _write_manifest(tmp_path, patches), out, embed.EmbedConfig.from_mapping({"batch_size": 2, "average_orientations": False}))
    table = pd.read_parquet(out)
    assert list(table["nodule_id"]) == ["n0", "n1", "n2"]
    assert embed.posterior_arrays(table)[0].shape == (3, 8)
