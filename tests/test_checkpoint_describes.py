"""A checkpoint describes what its model expects of its input; a cohort cut otherwise is refused by name."""

from __future__ import annotations

import pytest

import lidcvae
from lidcvae.run_config import RunConfig
from lidcvae.train.checkpoint import (
    CheckpointError, CheckpointMismatch, check_cohort_fits, checkpoint_description, describe_model,
)


@pytest.fixture()
def description() -> dict:
    run = RunConfig.from_mapping({"model": {"hu_window": [-1200, 600], "input_size": 24},
                                  "extract": {"patch_size": 48, "spacing_mm": 0.8}})
    return describe_model(run)


def test_description_holds_input_window_patch_and_version(description):
    assert description["hu_window"] == [-1200.0, 600.0]
    assert (description["patch_size"], description["spacing_mm"]) == (48, 0.8)
    assert description["event_shape"] == [2, 24, 24, 24] and description["mask_channel"]  # the default: image + mask
    assert description["lidcvae_version"] == lidcvae.__version__ and description["dataset"] == "lidc"


def test_checkpoint_without_block_is_refused_by_name(description):
    assert checkpoint_description({"config": {}, "describes": description}) == description
    with pytest.raises(CheckpointError, match=r"old\.pt: written before checkpoints described"):
        checkpoint_description({"config": {}}, "old.pt")


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


def test_embed_script_refuses_a_cohort_cut_at_another_size(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    from lidcvae.models import build_model
    from lidcvae.train.checkpoint import save_checkpoint

    run = RunConfig.from_mapping({"model": {"input_size": 16, "latent_size": 4, "channels": [4], "strides": [2],
                                                "mask_pooling": {"levels": [0]}},
                                  "extract": {"patch_size": 48}})
    model = build_model(run.model)
    save_checkpoint(tmp_path / "best.pt", {"model": model.state_dict(), "config": run.to_dict(), "describes": describe_model(run)})
    pd.DataFrame({"nodule_id": ["n1"], "image_path": ["patches/n1_image.nii.gz"], "patch_size": [64],
                  "spacing_mm": [1.0]}).to_parquet(tmp_path / "manifest.parquet")
    script = Path(__file__).resolve().parents[1] / "pipelines" / "embed_latents.py"
    result = subprocess.run([sys.executable, str(script), "--checkpoint", str(tmp_path / "best.pt"), "--manifest",
                             str(tmp_path / "manifest.parquet"), "--out", str(tmp_path / "embeddings.parquet")],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "patch_size: checkpoint 48 voxels, cohort [64]" in result.stderr
    assert not (tmp_path / "embeddings.parquet").exists()
