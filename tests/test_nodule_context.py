"""model.context: the model sees the image only around the consensus mask (``nodule``) or the whole patch."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from lidcvae.data import PatchSource
from lidcvae.data.model_input import ModelInput
from lidcvae.data.lidc import images_from_table, load_patch_mask, nodule_context
from lidcvae.extract.manifest import read_manifest
from lidcvae.intensity import HUWindow
from lidcvae.run_config import RunConfig
from test_train_data import TINY_MODEL, sample_manifest  # noqa: F401  (fixture)


def _source(manifest: Path, **context: object) -> PatchSource:
    model = copy.deepcopy(TINY_MODEL)
    model["context"], model["input_size"] = context, 32
    config = RunConfig.from_mapping({"dataset": "lidc", "model": model})
    return PatchSource.for_input(manifest, ModelInput.for_training("lidc", config.model, config.train.patch_fit, manifest))


def test_nodule_context_keeps_a_cube_of_edge_2r_plus_1_around_the_mask_and_fills_the_rest():
    images = torch.rand(1, 1, 11, 11, 11) * 0.5 + 0.5
    masks = torch.zeros(1, 1, 11, 11, 11)
    masks[0, 0, 5, 5, 5] = 1.0
    kept = nodule_context(images, masks, dilate_voxels=2, fill=0.1)
    inside = kept[0, 0, 3:8, 3:8, 3:8]
    assert torch.equal(inside, images[0, 0, 3:8, 3:8, 3:8])  # Chebyshev distance ≤ 2: untouched
    assert (kept == 0.1).sum() == 11**3 - 5**3  # everything else is the fill
    assert kept[0, 0, 8, 5, 5] == 0.1 and kept[0, 0, 7, 7, 7] == images[0, 0, 7, 7, 7]


def test_the_default_context_keeps_the_real_nodule_and_sets_the_chest_around_it_to_lung(sample_manifest: Path):
    table = read_manifest(sample_manifest).iloc[:1]
    full = images_from_table(table, _source(sample_manifest, kind="full"))
    nodule = images_from_table(table, _source(sample_manifest))  # schema default: nodule, 1 voxel, -860 HU
    mask = torch.from_numpy(load_patch_mask(table["mask_path"].iloc[0])[16:48, 16:48, 16:48]).bool()
    assert 1000 < mask.sum() < 32**3 / 4  # LIDC-IDRI-0001's ~23 mm nodule, in the centre of the 32³ crop
    assert torch.equal(nodule[0, 0][mask], full[0, 0][mask])
    lung = float(HUWindow(-1000.0, 400.0).to_unit(torch.tensor(-860.0)))
    region = torch.nn.functional.max_pool3d(mask[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    assert (~region).sum() > 32**3 / 4
    assert torch.allclose(nodule[0, 0][~region], torch.tensor(lung))
    assert not torch.allclose(full[0, 0][~region], torch.tensor(lung))  # the real patch has chest there
    assert torch.equal(nodule[0, 0][region], full[0, 0][region])


def test_a_nodule_context_without_masks_names_the_key(sample_manifest: Path):
    table = read_manifest(sample_manifest).iloc[:1].assign(mask_path=[None])
    with pytest.raises(ValueError, match=r"model.context.kind nodule\) but 1 of the cohort's nodule\(s\) have no mask_path.*context.kind: full"):
        images_from_table(table, _source(sample_manifest, kind="nodule"))

