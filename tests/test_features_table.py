"""FMCIB's table convention (``image_path, coordX, coordY, coordZ``) on the real whole series LIDC-IDRI-0001,
and ``lidcvae.features``: a table's rows with their latent columns from a checkpoint, in one call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from test_train_data import make_tiny_config, sample_manifest  # noqa: F401  (fixture)

import lidcvae
from lidcvae.embed import EmbedConfig, embed_manifest
from lidcvae.embed.encode import latent_column_names
from lidcvae.extract.candidates import CandidatesError, check_candidates, table_names_images
from lidcvae.extract.coordinates import extract_coordinates_cohort
from lidcvae.extract.table_images import volume_keys
from lidcvae.train import train
from lidcvae.train.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
SERIES_UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"


@pytest.fixture(scope="module")
def whole_series(shared_data: Path) -> tuple[Path, pd.DataFrame]:
    """The whole 133-slice series folder of LIDC-IDRI-0001 and its LUNA16 row."""
    root = shared_data / "lidc-whole"
    if not (root / "luna16_annotations.csv").is_file():
        pytest.skip(f"whole LIDC-IDRI-0001 series not found at {root}")
    folder = next(p for p in root.glob("LIDC-IDRI-0001/*/*") if p.name == SERIES_UID)
    return folder, pd.read_csv(root / "luna16_annotations.csv")


def _fmcib_table(folder: Path, luna: pd.DataFrame, table_dir: Path) -> Path:
    """LUNA16's row as FMCIB writes it: the series folder, relative to the table's own folder."""
    table_dir.mkdir(parents=True, exist_ok=True)
    table = luna.drop(columns="seriesuid").assign(image_path=os.path.relpath(folder, table_dir))
    table[["image_path", "coordX", "coordY", "coordZ", "diameter_mm"]].to_csv(table_dir / "nodules.csv", index=False)
    return table_dir / "nodules.csv"


def _patch_hu(out_dir: Path, manifest: pd.DataFrame) -> np.ndarray:
    return np.asarray(nib.load(out_dir / manifest["image_path"].iloc[0]).dataobj)


def test_an_image_path_table_gives_the_luna16_patch_voxel_for_voxel(whole_series, tmp_path):
    folder, luna = whole_series
    luna.to_csv(tmp_path / "annotations.csv", index=False)
    by_uid, uid_failures = extract_coordinates_cohort(tmp_path / "annotations.csv", folder.parents[1], tmp_path / "luna16",
                                                      progress=False)
    table = _fmcib_table(folder, luna, tmp_path / "elsewhere")
    assert table_names_images(table) and not table_names_images(tmp_path / "annotations.csv")
    by_path, path_failures = extract_coordinates_cohort(table, None, tmp_path / "fmcib", progress=False)  # no images_root
    assert uid_failures.empty and path_failures.empty and len(by_uid) == len(by_path) == 1
    np.testing.assert_array_equal(_patch_hu(tmp_path / "fmcib", by_path), _patch_hu(tmp_path / "luna16", by_uid))
    row = by_path.iloc[0]
    assert (row.series_instance_uid, row.patient_id, row.nodule_id) == (SERIES_UID, "LIDC-IDRI-0001", "LIDC-IDRI-0001_row00001")
    assert row.table_image_path == str(folder)  # the relative path, taken from the table's folder


def test_a_missing_image_is_a_failure_row_naming_the_row_and_the_path(tmp_path):
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "empty").mkdir()
    table = pd.DataFrame({"image_path": ["scans/absent.nii.gz", "scans/empty", ""], "coordX": [1.0, 2.0, 3.0],
                          "coordY": [0.0, 0.0, 0.0], "coordZ": [0.0, 0.0, 0.0]})
    table.to_csv(tmp_path / "nodules.csv", index=False)
    manifest, failures = extract_coordinates_cohort(tmp_path / "nodules.csv", None, tmp_path / "out", progress=False)
    assert manifest.empty
    reasons = dict(zip(failures["nodule_index"], failures["reason"]))
    assert reasons == {
        1: f"nodules.csv row 1: image_path {tmp_path / 'scans' / 'absent.nii.gz'}: not found",
        2: f"nodules.csv row 2: image_path {tmp_path / 'scans' / 'empty'}: the folder holds no DICOM (.dcm) file",
        3: "nodules.csv row 3: image_path is empty",
    }
    assert failures.set_index("nodule_index").loc[1, "path"] == str(tmp_path / "scans" / "absent.nii.gz")


TABLE_ERRORS = [
    (pd.DataFrame({"image_path": ["a.nrrd"], "coordX": [0.0], "coordY": [0.0]}), "missing column(s) coordZ"),
    (pd.DataFrame({"image_path": ["a.nrrd"], "seriesuid": ["1.2"], "coordX": [0.0], "coordY": [0.0], "coordZ": [0.0]}),
     "has both seriesuid and image_path columns"),
]


@pytest.mark.parametrize("table, message", TABLE_ERRORS)
def test_a_table_that_cannot_be_used_is_refused_naming_why(table, message, tmp_path):
    with pytest.raises(CandidatesError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_candidates(table, "nodules.csv", tmp_path)


def test_a_luna16_table_without_images_root_names_both_ways_out(tmp_path):
    pd.DataFrame({"seriesuid": ["1.2"], "coordX": [0.0], "coordY": [0.0], "coordZ": [0.0]}).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(CandidatesError, match="set images_root .* or give the table an image_path column"):
        extract_coordinates_cohort(tmp_path / "a.csv", None, tmp_path / "out", progress=False)


def test_volume_files_of_the_same_name_get_distinct_series_names():
    keys = volume_keys(["/d/LUNG1-001/CT.nrrd", "/d/LUNG1-002/CT.nrrd", "/d/1.2.3.mhd", "/e/LUNG1-001/CT.nrrd"])
    assert keys["/d/1.2.3.mhd"] == "1.2.3"
    assert keys["/d/LUNG1-002/CT.nrrd"] == "LUNG1-002_CT"
    assert keys["/d/LUNG1-001/CT.nrrd"].startswith("LUNG1-001_CT-") and len(set(keys.values())) == 4


@pytest.fixture(scope="module")
def tiny_checkpoint(sample_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A tiny model (16³ crops of 64³ @ 1 mm patches, latent 8, no mask) trained for one epoch on the real sample."""
    return train(make_tiny_config(epochs=1), tmp_path_factory.mktemp("features") / "run", manifest=sample_manifest)


def test_features_gives_every_row_its_latents_or_nan_and_the_reason(tiny_checkpoint, whole_series, tmp_path):
    folder, luna = whole_series
    table = pd.DataFrame({"image_path": [str(folder), str(tmp_path / "gone.nii.gz")], "coordX": [luna.coordX[0]] * 2,
                          "coordY": [luna.coordY[0]] * 2, "coordZ": [luna.coordZ[0]] * 2, "label": [1, 0]}, index=[10, 11])
    features = lidcvae.features(table, tiny_checkpoint, out_dir=tmp_path / "out", progress=False)
    names = latent_column_names(8)
    assert list(features.columns) == [*table.columns, "failure", *names] and list(features.index) == [10, 11]
    assert pd.isna(features.loc[10, "failure"]) and np.isfinite(features.loc[10, names].to_numpy(float)).all()
    assert features.loc[11, names].isna().all()
    assert features.loc[11, "failure"] == f"table row 2: image_path {tmp_path / 'gone.nii.gz'}: not found"
    # the workflow's embed rule on the same extraction gives the same code
    embedded = embed_manifest(tiny_checkpoint, tmp_path / "out" / "manifest.parquet", tmp_path / "embeddings.parquet",
                              EmbedConfig.from_mapping({}))
    np.testing.assert_allclose(features.loc[10, names].to_numpy(float), embedded[names].to_numpy(float)[0], rtol=1e-6)


def test_features_without_out_dir_leaves_no_patches_behind(tiny_checkpoint, whole_series, tmp_path, monkeypatch):
    folder, luna = whole_series
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    features = lidcvae.features(_fmcib_table(folder, luna, tmp_path / "tables"), tiny_checkpoint, progress=False)
    assert len(features) == 1 and features["failure"].isna().all() and features["coordX"].dtype == float
    assert [p.name for p in tmp_path.iterdir()] == ["tables"]


def test_a_model_that_takes_masks_needs_diameter_mm(tiny_checkpoint, whole_series, tmp_path):
    stored = torch.load(tiny_checkpoint, weights_only=True)
    stored["input"]["mask_channel"] = True
    masked = save_checkpoint(tmp_path / "masked.pt", stored)
    folder, luna = whole_series
    table = pd.DataFrame({"image_path": [str(folder)], "coordX": luna.coordX, "coordY": luna.coordY, "coordZ": luna.coordZ})
    with pytest.raises(CandidatesError, match="no diameter_mm column"):
        lidcvae.features(table, masked, out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # refused before any extraction


def test_the_index_step_accepts_an_image_path_table_without_images_root(whole_series, tmp_path):
    folder, luna = whole_series
    table = _fmcib_table(folder, luna, tmp_path)
    outputs = [tmp_path / f"{name}.parquet" for name in ("index", "candidates", "row_failures", "unreadable")]
    result = subprocess.run([sys.executable, str(REPO / "pipelines" / "extract_coordinates_index.py"), "--table", str(table),
                             "--index", str(outputs[0]), "--candidates", str(outputs[1]), "--row-failures", str(outputs[2]),
                             "--unreadable", str(outputs[3])], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(pd.read_parquet(outputs[0])["series_instance_uid"]) == {SERIES_UID}
    assert list(pd.read_parquet(outputs[1])["series_instance_uid"]) == [SERIES_UID]
