"""A checkpoint describes what its model expects of its input; a cohort cut otherwise is refused by name."""

from __future__ import annotations

import pytest

import lidcvae
from lidcvae.config import validate_config
from lidcvae.train.checkpoint import CheckpointMismatch, check_cohort_fits, checkpoint_description, describe_model


@pytest.fixture()
def description() -> dict:
    config = validate_config({"model": {"hu_window": [-1200, 600]}, "extract": {"patch_size": 48, "spacing_mm": 0.8}})
    return describe_model(config)


def test_description_holds_model_window_patch_and_version(description):
    assert description["hu_window"] == [-1200.0, 600.0]
    assert (description["patch_size"], description["spacing_mm"]) == (48, 0.8)
    assert description["model"]["name"] == "conv_vae3d" and description["model"]["latent_size"] == 256
    assert description["lidcvae_version"] == lidcvae.__version__ and description["dataset"] == "lidc"


def test_old_checkpoint_without_block_is_described_from_its_config(description):
    config = validate_config({"model": {"hu_window": [-1200, 600]}, "extract": {"patch_size": 48, "spacing_mm": 0.8}})
    assert checkpoint_description({"config": config}) == description
    assert checkpoint_description({"config": {}, "describes": {"patch_size": 7}}) == {"patch_size": 7}


def test_matching_cohort_passes(description):
    check_cohort_fits(description, {48}, {0.8}, "best.pt", "manifest.parquet")
    check_cohort_fits(description, set(), set(), "best.pt", "hand-made.parquet")  # nothing recorded: nothing to check


MISMATCHES = [
    ({"patch_size": {64}}, "patch_size: checkpoint 48 voxels, cohort [64]"),
    ({"patch_size": {48, 64}}, "patch_size: checkpoint 48 voxels, cohort [48, 64]"),
    ({"spacing_mm": {1.0}}, "spacing_mm: checkpoint 0.8 mm, cohort [1.0]"),
    ({"dataset": "mnist"}, "trained on dataset 'mnist'"),
    ({"lidcvae_version": "9.4.0"}, f"lidcvae version: checkpoint 9.4.0, installed {lidcvae.__version__}"),
]


@pytest.mark.parametrize("change, message", MISMATCHES)
def test_mismatch_is_refused_naming_what_differs(description, change, message):
    cohort = {"patch_size": change.get("patch_size", {48}), "spacing_mm": change.get("spacing_mm", {0.8})}
    described = {**description, **{k: v for k, v in change.items() if k not in cohort}}
    with pytest.raises(CheckpointMismatch) as error:
        check_cohort_fits(described, cohort["patch_size"], cohort["spacing_mm"], "other/best.pt", "manifest.parquet")
    assert message in str(error.value) and "other/best.pt" in str(error.value)


def test_a_patch_release_of_lidcvae_is_not_a_mismatch(description):
    major, minor, _ = lidcvae.__version__.split(".")
    check_cohort_fits({**description, "lidcvae_version": f"{major}.{minor}.99"}, {48}, {0.8}, "best.pt", "m.parquet")
