"""The coordinates route on the whole real series LIDC-IDRI-0001 with its LUNA16 row: the patch sits on
the nodule the LIDC route finds from the readers' XML, and the same series as DICOM, .mhd or a flipped
NIfTI gives the same patch."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from lidcvae.extract import extract_cohort
from lidcvae.extract.coordinates import extract_coordinates_cohort
from lidcvae.extract.settings import ExtractSettings

SERIES_UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def lidc_whole(shared_data: Path) -> Path:
    """The whole 133-slice series of LIDC-IDRI-0001 (DICOM + XML) and its LUNA16 annotations.csv row."""
    root = shared_data / "lidc-whole"
    if not (root / "luna16_annotations.csv").is_file():
        pytest.skip(f"whole LIDC-IDRI-0001 series not found at {root}")
    return root


@pytest.fixture(scope="module")
def routes(lidc_whole: Path, tmp_path_factory) -> dict:
    """Both routes on the same series: the LUNA16 point (coordinates) and the readers' consensus (LIDC)."""
    out = tmp_path_factory.mktemp("routes")
    coordinates, coordinate_failures = extract_coordinates_cohort(
        lidc_whole / "luna16_annotations.csv", lidc_whole, out / "coordinates", ExtractSettings.from_mapping({"sphere_mask": True}), progress=False)
    lidc, _ = extract_cohort(lidc_whole, out / "lidc", progress=False)
    return {"out": out, "coordinates": coordinates, "failures": coordinate_failures, "lidc": lidc}


def _patch_centre_lps(image: nib.Nifti1Image) -> np.ndarray:
    """The patch's geometric centre in LPS mm, from its NIfTI affine alone."""
    centre_voxel = (np.array(image.shape) - 1) / 2
    return RAS_TO_LPS @ (image.affine[:3, :3] @ centre_voxel + image.affine[:3, 3])


def _image(out_dir: Path, row: pd.Series) -> nib.Nifti1Image:
    return nib.load(out_dir / row.image_path)


def test_luna16_row_gives_one_nodule_with_table_columns(routes, lidc_whole):
    manifest, failures = routes["coordinates"], routes["failures"]
    table = pd.read_csv(lidc_whole / "luna16_annotations.csv")
    assert failures.empty
    assert len(manifest) == len(table) == 1
    row = manifest.iloc[0]
    assert row.series_instance_uid == SERIES_UID
    assert row.patient_id == "LIDC-IDRI-0001"  # from the DICOM header
    assert row.nodule_index == 1 and row.nodule_id == "LIDC-IDRI-0001_row00001"
    assert row.diameter_mm == pytest.approx(table.diameter_mm[0])
    assert pd.isna(row.label) and pd.isna(row.malignancy) and pd.isna(row.readers)
    assert not row.edge and row.coverage == 1.0
    assert (row.patch_size, row.spacing_mm) == (64, 1.0)


def test_patch_centre_is_within_1mm_of_lidc_consensus_centroid(routes):
    row = routes["coordinates"].iloc[0]
    centre = _patch_centre_lps(_image(routes["out"] / "coordinates", row))
    table_point = np.array([56.20840547, 86.34341278, -115.8675792])
    np.testing.assert_allclose(centre, table_point, atol=1e-3)  # the affine places the patch on the point
    lidc = routes["lidc"].iloc[0]
    consensus = lidc[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
    distance_mm = np.linalg.norm(centre - consensus)
    assert distance_mm < 1.0, f"patch centre {centre} is {distance_mm:.2f} mm from the consensus centroid {consensus}"


def test_centre_voxels_are_nodule_tissue(routes):
    out = routes["out"]
    patch_hu = np.asarray(_image(out / "coordinates", routes["coordinates"].iloc[0]).dataobj)
    consensus_mask = np.asarray(nib.load(out / "lidc" / routes["lidc"].iloc[0].mask_path).dataobj)
    centre = (slice(31, 33),) * 3  # the 2×2×2 voxels around the patch centre (64 is even)
    assert (patch_hu[centre] > -100).all(), patch_hu[centre]  # soft tissue, not lung (≈ -850 HU)
    assert consensus_mask[centre].all()  # and inside the readers' consensus, 0.2 mm away
    assert np.median(patch_hu[consensus_mask > 0]) > -100
    assert np.median(patch_hu[:8]) < -500  # the patch's far face is mostly lung / air


def test_sphere_mask_is_a_ball_of_the_table_diameter(routes):
    row = routes["coordinates"].iloc[0]
    mask = np.asarray(nib.load(routes["out"] / "coordinates" / row.mask_path).dataobj)
    ball_mm3 = np.pi / 6 * row.diameter_mm**3
    assert mask.sum() == pytest.approx(ball_mm3, rel=0.02)
    assert np.argwhere(mask).mean(axis=0) == pytest.approx([31.5] * 3, abs=0.01)
    assert row.mask_coverage == 1.0


@pytest.fixture(scope="module")
def series_image(lidc_whole: Path) -> sitk.Image:
    folder = next(p for p in lidc_whole.rglob(SERIES_UID) if p.is_dir())
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def test_mhd_of_the_same_series_gives_the_same_patch_voxel_for_voxel(routes, series_image, lidc_whole, tmp_path):
    (tmp_path / "images").mkdir()
    sitk.WriteImage(series_image, str(tmp_path / "images" / f"{SERIES_UID}.mhd"))
    manifest, failures = extract_coordinates_cohort(lidc_whole / "luna16_annotations.csv", tmp_path / "images",
                                                    tmp_path / "out", progress=False)
    assert failures.empty and len(manifest) == 1
    assert manifest.patient_id[0] == SERIES_UID  # a volume file has no PatientID: one patient per series
    dicom = _image(routes["out"] / "coordinates", routes["coordinates"].iloc[0])
    mhd = _image(tmp_path / "out", manifest.iloc[0])
    np.testing.assert_array_equal(np.asarray(mhd.dataobj), np.asarray(dicom.dataobj))
    np.testing.assert_allclose(mhd.affine, dicom.affine, atol=1e-5)


def test_flipped_nifti_of_the_same_series_gives_the_same_patch(routes, series_image, lidc_whole, tmp_path):
    # Stored right-to-left and anterior-to-posterior (as a RAS-oriented NIfTI writer would): the route
    # reorients by the file's direction. Tolerance 1 HU: the flipped origin is stored as float32, which
    # moves the interpolation weights by ~1e-5 and can turn one rounding the other way.
    (tmp_path / "images").mkdir()
    sitk.WriteImage(sitk.Flip(series_image, [True, True, False]), str(tmp_path / "images" / f"{SERIES_UID}.nii.gz"))
    manifest, failures = extract_coordinates_cohort(lidc_whole / "luna16_annotations.csv", tmp_path / "images",
                                                    tmp_path / "out", progress=False)
    assert failures.empty and len(manifest) == 1
    dicom = np.asarray(_image(routes["out"] / "coordinates", routes["coordinates"].iloc[0]).dataobj).astype(int)
    nifti = np.asarray(_image(tmp_path / "out", manifest.iloc[0]).dataobj).astype(int)
    assert np.abs(nifti - dicom).max() <= 1
    assert (nifti != dicom).mean() < 1e-4
