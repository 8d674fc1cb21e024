"""A checkpoint records what its model sees, read from the manifest it trained on; a cohort cut otherwise
is refused, naming both values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pandas as pd
import pytest
from test_train_data import make_tiny_config, sample_manifest  # noqa: F401  (fixture)

import lidcvae
from lidcvae.data.model_input import ModelInput, cohort_differences, manifest_geometry
from lidcvae.train import load_model, train
from lidcvae.train.checkpoint import CheckpointError, CheckpointMismatch, check_cohort, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _cropped_extraction(manifest: Path, out: Path, edge: int) -> Path:
    """The same nodules as ``manifest``, their patches centre-cropped to ``edge``³ (another extraction)."""
    table = pd.read_parquet(manifest)
    for column in ("image_path", "mask_path"):
        for relative in set(table[column]):
            image = nib.load(manifest.parent / relative)
            start = (image.shape[0] - edge) // 2
            crop = image.slicer[start:start + edge, start:start + edge, start:start + edge]
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            nib.save(crop, out / relative)
    table.assign(patch_size=edge).to_parquet(out / "manifest.parquet")
    return out / "manifest.parquet"


@pytest.fixture(scope="module")
def trained_on_48(sample_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A tiny model trained on a 48³ extraction while its config's extract section says 64."""
    out = tmp_path_factory.mktemp("extract48")
    run = make_tiny_config(epochs=1)
    assert run.extract.patch_size == 64
    return train(run, out / "run", manifest=_cropped_extraction(sample_manifest, out, 48))


def test_the_record_holds_the_trained_manifests_geometry_not_the_configs(trained_on_48):
    """The defect of issue 29: describes.patch_size came from the config's extract section (64)."""
    trained = load_model(trained_on_48)
    assert (trained.input.patch_size, trained.input.spacing_mm, trained.input.mask_kind) == (48, 1.0, "consensus")
    assert trained.input.event_shape == (1, 16, 16, 16) and trained.input.hu_window == (-1000.0, 400.0)
    assert trained.input.lidcvae_version == lidcvae.__version__


def test_embedding_another_extraction_is_refused_naming_both_values(trained_on_48, sample_manifest, tmp_path):  # noqa: F811
    script = REPO / "pipelines" / "embed_latents.py"
    result = subprocess.run([sys.executable, str(script), "--checkpoint", str(trained_on_48), "--manifest",
                             str(sample_manifest), "--out", str(tmp_path / "embeddings.parquet")],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "patch_size: checkpoint 48 voxels, cohort [64]" in result.stderr
    assert not (tmp_path / "embeddings.parquet").exists()
    check_cohort(load_model(trained_on_48), pd.read_parquet(trained_on_48.parents[2] / "manifest.parquet"), "own")


RECORD = ModelInput("lidc", (2, 24, 24, 24), lidcvae.__version__, 48, 0.8, "consensus", 24, "crop", (-1200.0, 600.0),
                    True, 1, -860.0)
MISMATCHES = [
    ({"patch_size": [64]}, "patch_size: checkpoint 48 voxels, cohort [64]"),
    ({"patch_size": [48, 64]}, "patch_size: checkpoint 48 voxels, cohort [48, 64]"),
    ({"spacing_mm": [1.0]}, "spacing_mm: checkpoint 0.8 mm, cohort [1.0]"),
    ({"mask_path": [None]}, "trained on consensus masks) but 1 of 1 cohort rows have no mask_path (on the coordinates "
                            'route, with a diameter_mm column, add --config "extract={sphere_mask: true}"'),
]


@pytest.mark.parametrize("change, message", MISMATCHES)
def test_every_difference_is_named(change, message):
    rows = max(len(v) for v in change.values())
    cohort = pd.DataFrame({"patch_size": [48] * rows, "spacing_mm": [0.8] * rows, "mask_path": ["m.nii.gz"] * rows, **change})
    differences = cohort_differences(RECORD, cohort)
    assert len(differences) == 1 and message in differences[0]


def test_matching_or_unrecorded_cohorts_pass_and_other_models_are_named():
    assert cohort_differences(RECORD, pd.DataFrame({"patch_size": [48], "spacing_mm": [0.8], "mask_path": ["m"]})) == []
    assert cohort_differences(RECORD, pd.DataFrame({"nodule_id": ["hand-made"]})) == []  # nothing recorded: nothing checked
    mnist = ModelInput("mnist", (1, 28, 28), lidcvae.__version__, None, None, None, None, None, None, False, None, None)
    assert cohort_differences(mnist, pd.DataFrame({"patch_size": [48]})) == [
        "the model was trained on dataset 'mnist', not CT nodule patches"]
    major, minor, _ = lidcvae.__version__.split(".")
    patch_release = ModelInput(**{**RECORD.__dict__, "lidcvae_version": f"{major}.{minor}.99"})
    assert cohort_differences(patch_release, pd.DataFrame({"patch_size": [48]})) == []
    other = ModelInput(**{**RECORD.__dict__, "lidcvae_version": "9.4.0"})
    assert cohort_differences(other, pd.DataFrame({"patch_size": [48]})) == [
        f"lidcvae version: checkpoint 9.4.0, installed {lidcvae.__version__}"]


def test_the_record_round_trips_and_reads_mask_kinds_of_older_manifests():
    assert ModelInput.from_dict(RECORD.to_dict()) == RECORD
    assert manifest_geometry(pd.DataFrame({"patch_size": [64, 64], "spacing_mm": [1.0, 1.0], "mask_path": ["a", None]})) == (
        64, 1.0, "mixed")
    assert manifest_geometry(pd.DataFrame({"mask_kind": ["sphere"], "mask_path": ["a"]})) == (None, None, "sphere")
    with pytest.raises(ValueError, match=r"mixes patch sizes \[48, 64\]"):
        manifest_geometry(pd.DataFrame({"patch_size": [48, 64]}))


def test_a_checkpoint_without_the_record_is_refused_by_name(trained_on_48, tmp_path):
    import torch

    old = torch.load(trained_on_48, weights_only=True)
    del old["input"]
    save_checkpoint(tmp_path / "old.pt", old)
    with pytest.raises(CheckpointError, match=r"old\.pt: written by lidcvae < 0\.2"):
        load_model(tmp_path / "old.pt")
    assert issubclass(CheckpointMismatch, ValueError)
