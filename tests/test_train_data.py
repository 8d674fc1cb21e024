"""Training data: real sample extraction → in-memory windowed tensors; augmentation; shared tiny configs.

The fixtures and helpers here (``sample_manifest``, ``make_tiny_config``, ``tiny_source``) are imported by the other test_train* files.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from lidcvae.data import PatchSource, load_split
from lidcvae.data.augment import augment_batch
from lidcvae.data.model_input import ModelInput
from lidcvae.data.lidc import fit_patch, load_patch_hu
from lidcvae.extract.manifest import read_manifest
from lidcvae.run_config import RunConfig

# One channel of the whole patch, uniform squared error (the seeds' input and loss): the mask channel, its
# weighting and the nodule-only context have their own tests (test_nodule_options.py, test_nodule_context.py).
TINY_MODEL = {"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2],
              "mask_channel": False, "mask_pooling": {"enabled": False}, "histogram_view": {"enabled": False}, "reconstruction_weight": {"kind": "uniform", "peak": 1.0}, "context": {"kind": "full"}}


@pytest.fixture(scope="session")
def sample_manifest(lidc_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extract stage run on the real LIDC sample (2 nodules), with the split set so both land in train.

    A second copy of each row goes to val and test, so every split is non-empty.
    """
    import pandas as pd

    from lidcvae.extract.cohort import extract_cohort

    out_dir = tmp_path_factory.mktemp("extract")
    manifest, _ = extract_cohort(lidc_sample, out_dir, progress=False)
    assert len(manifest) >= 2, "the LIDC sample should give at least 2 nodules"
    relative = pd.read_parquet(out_dir / "manifest.parquet")
    rows = []
    for split in ("train", "train", "train", "val", "test"):
        part = relative.assign(split=split)
        part["nodule_id"] = part["nodule_id"] + f"_{split}{len(rows)}"
        rows.append(part)
    path = out_dir / "manifest_splits.parquet"
    pd.concat(rows, ignore_index=True).to_parquet(path)
    return path


def make_tiny_config(**train: object) -> RunConfig:
    """A typed config: 16³ crops, channels 4-8, latent 8, CPU, no progress bar (the manifest is passed apart)."""
    settings = {"epochs": 2, "batch_size": 2, "device": "cpu", "progress": False, "threads": 1, **train}
    return RunConfig.from_mapping({"dataset": "lidc", "model": copy.deepcopy(TINY_MODEL), "train": settings})


def tiny_source(manifest: Path) -> PatchSource:
    """The manifest's patches as the tiny model takes them."""
    config = make_tiny_config()
    return PatchSource.for_input(manifest, ModelInput.for_training("lidc", config.model, config.train.patch_fit, manifest))


@pytest.fixture
def tiny_config(sample_manifest: Path) -> PatchSource:
    return tiny_source(sample_manifest)


def test_load_split_windows_and_crops_the_extracted_patches(sample_manifest: Path, tiny_config: PatchSource) -> None:
    train = load_split(tiny_config, "train")
    table = read_manifest(sample_manifest)
    assert train.images.shape == (int((table["split"] == "train").sum()), 1, 16, 16, 16)
    assert train.images.dtype == torch.float32
    assert {"id", "split", "label", "nodule_id", "consensus_diameter_mm"} <= set(train.table.columns)
    assert (train.table["split"] == "train").all()
    patch_hu = load_patch_hu(train.table["image_path"].iloc[0])
    assert patch_hu.shape == (64, 64, 64)
    expected = np.clip((patch_hu[24:40, 24:40, 24:40].astype(np.float32) + 1000.0) / 1400.0, 0.0, 1.0)
    np.testing.assert_allclose(train.images[0, 0].numpy(), expected, atol=1e-6)
    # a nodule sits at the centre: soft tissue (> −500 HU) in the crop's middle
    assert train.images[0, 0, 8, 8, 8] > 0.35


def test_load_split_of_missing_split_is_empty(tiny_config: PatchSource) -> None:
    empty = load_split(tiny_config, "nonexistent")
    assert empty.images.shape == (0, 1, 16, 16, 16) and len(empty.table) == 0


def test_fit_patch_resample_keeps_mean_intensity() -> None:
    patches = torch.rand(2, 1, 32, 32, 32)
    resampled = fit_patch(patches, 16, "resample")
    assert resampled.shape == (2, 1, 16, 16, 16)
    assert torch.allclose(resampled.mean(), patches.mean(), atol=1e-2)
    with pytest.raises(ValueError, match="input_size"):
        fit_patch(patches, 64, "crop")


def test_augment_batch_only_flips_and_rotates() -> None:
    patches = torch.arange(2 * 4**3, dtype=torch.float32).view(2, 1, 4, 4, 4)
    generator = torch.Generator().manual_seed(0)
    augmented = augment_batch(patches, generator, True, True)
    for original, moved in zip(patches, augmented):
        candidates = [original.flip(dims) if dims else original for dims in ((), (1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3))]
        assert any(torch.equal(moved, c.rot90(k, (2, 3))) for c in candidates for k in range(4))
        assert torch.equal(moved.sort().values.flatten().sort().values, original.flatten().sort().values)


def test_augment_batch_is_reproducible_from_the_generator_state() -> None:
    patches = torch.rand(8, 1, 6, 6, 6)
    first = augment_batch(patches, torch.Generator().manual_seed(3), True, True)
    again = augment_batch(patches, torch.Generator().manual_seed(3), True, True)
    assert torch.equal(first, again)
    assert not torch.equal(first, patches)


def test_augment_batch_cpu_path_matches_torch_ops() -> None:
    patches = torch.rand(6, 1, 5, 5, 5)
    augmented = augment_batch(patches, torch.Generator().manual_seed(7), True, True)
    generator = torch.Generator().manual_seed(7)
    flips = torch.rand(6, 3, generator=generator) < 0.5
    turns = torch.randint(0, 4, (6,), generator=generator)
    for index in range(6):
        dims = [d + 1 for d in range(3) if flips[index, d]]
        expected = patches[index].flip(dims).rot90(int(turns[index]), (2, 3))
        assert torch.equal(augmented[index], expected)
