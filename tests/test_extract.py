"""Extraction on the real LIDC-IDRI sample: values, geometry, and the 1 mm NIfTI patches."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from lidcvae.extract import extract_cohort, read_manifest
from lidcvae.lidc import pylidc

SERIES_0001 = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"


@pytest.fixture(scope="module")
def sample_extraction(lidc_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("extract")
    manifest, failures = extract_cohort(lidc_sample, out, progress=False)
    return out, read_manifest(out / "manifest.parquet"), failures


def _row(manifest, patient_id):
    rows = manifest[manifest["patient_id"] == patient_id]
    assert len(rows) == 1, f"{patient_id}: expected one nodule, got {len(rows)}"
    return rows.iloc[0]


def test_whole_nodule_has_four_readers_and_malignant_label(sample_extraction):
    _, manifest, failures = sample_extraction
    row = _row(manifest, "LIDC-IDRI-0001")
    assert (row.readers, row.malignancy, row.label) == (4, 5.0, 1)
    assert row.split in {"train", "val", "test"}
    assert not row.edge
    assert len(failures) == 0


def test_mask_patch_is_centred_on_consensus_centroid(sample_extraction):
    _, manifest, _ = sample_extraction
    row = _row(manifest, "LIDC-IDRI-0001")
    mask = np.asarray(nib.load(row.mask_path).dataobj)
    assert mask.shape == (64, 64, 64) and mask.dtype == np.uint8
    centroid = np.argwhere(mask).mean(axis=0)
    assert np.linalg.norm(centroid - 31.5) < 1.5


def test_mask_volume_matches_pylidc_consensus_volume(sample_extraction):
    _, manifest, _ = sample_extraction
    row = _row(manifest, "LIDC-IDRI-0001")
    pl = pylidc()
    from pylidc.utils import consensus

    scan = pl.query(pl.Scan).filter(pl.Scan.series_instance_uid == SERIES_0001).first()
    consensus_mask, _, _ = consensus(scan.cluster_annotations(verbose=False)[0], clevel=0.5)
    pylidc_volume_mm3 = consensus_mask.sum() * scan.pixel_spacing**2 * scan.slice_spacing
    patch_volume_mm3 = np.asarray(nib.load(row.mask_path).dataobj).sum() * 1.0
    assert patch_volume_mm3 == pytest.approx(pylidc_volume_mm3, rel=0.10)
    assert row.consensus_volume_mm3 == pytest.approx(pylidc_volume_mm3, rel=1e-6)


def test_nodule_is_dense_and_surrounding_lung_is_air(sample_extraction):
    _, manifest, _ = sample_extraction
    row = _row(manifest, "LIDC-IDRI-0001")
    patch_hu = np.asarray(nib.load(row.image_path).dataobj)
    mask = np.asarray(nib.load(row.mask_path).dataobj).astype(bool)
    assert patch_hu.dtype == np.int16
    lung_shell = ndimage.binary_dilation(mask, iterations=6) & ~ndimage.binary_dilation(mask, iterations=3)
    assert patch_hu[mask].mean() > -300
    assert np.median(patch_hu[lung_shell]) < -600


def test_patch_affine_places_patch_in_patient_coordinates(sample_extraction):
    _, manifest, _ = sample_extraction
    row = _row(manifest, "LIDC-IDRI-0001")
    image = nib.load(row.image_path)
    assert np.allclose(np.abs(np.diag(image.affine)[:3]), 1.0)
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
    # Geometric centre of the patch = consensus centroid, in RAS for nibabel and LPS for SimpleITK.
    centre_ras = image.affine @ np.array([31.5, 31.5, 31.5, 1.0])
    centroid_lps = np.array([row.centroid_x_mm, row.centroid_y_mm, row.centroid_z_mm])
    assert np.allclose(centre_ras[:3], centroid_lps * [-1, -1, 1], atol=1e-3)
    itk_image = sitk.ReadImage(row.image_path)
    assert np.allclose(itk_image.TransformContinuousIndexToPhysicalPoint([31.5, 31.5, 31.5]), centroid_lps, atol=1e-3)
    assert np.allclose(itk_image.GetSpacing(), 1.0)
    # The whole affine, not only the centre: every corner lands on the same point in both libraries.
    for corner in [(0, 0, 0), (63, 0, 0), (0, 63, 0), (0, 0, 63), (63, 63, 63)]:
        ras = (image.affine @ np.array([*corner, 1.0]))[:3]
        lps = itk_image.TransformIndexToPhysicalPoint(corner)
        assert np.allclose(ras * [-1, -1, 1], lps, atol=1e-4), corner
    assert np.array_equal(sitk.GetArrayFromImage(itk_image).transpose(2, 1, 0), np.asarray(image.dataobj))


def test_centroid_mm_follows_dicom_geometry(sample_extraction, lidc_sample):
    import pydicom

    _, manifest, _ = sample_extraction
    row = _row(manifest, "LIDC-IDRI-0001")
    header = pydicom.dcmread(next(lidc_sample.glob("LIDC-IDRI-0001/*/*/*.dcm")), stop_before_pixels=True)
    x0, y0, _ = (float(v) for v in header.ImagePositionPatient)
    spacing = float(header.PixelSpacing[0])
    assert row.centroid_x_mm == pytest.approx(x0 + row.centroid_col * spacing)
    assert row.centroid_y_mm == pytest.approx(y0 + row.centroid_row * spacing)
    assert row.centroid_z_mm == pytest.approx(-340.0 + row.centroid_k * 2.5)  # the series' z grid


def test_cut_nodule_reports_partial_coverage(sample_extraction):
    _, manifest, _ = sample_extraction
    whole, cut = _row(manifest, "LIDC-IDRI-0001"), _row(manifest, "LIDC-IDRI-0002")
    assert 0 < cut.coverage < whole.coverage < 1  # both samples are partial series
    assert 0 < cut.mask_coverage < 1 and whole.mask_coverage == 1.0
    patch_hu = np.asarray(nib.load(cut.image_path).dataobj)
    assert (patch_hu == -1000).mean() >= 1 - cut.coverage - 1e-9  # padding where no slice exists


def test_no_temporary_files_are_left(sample_extraction):
    out, _, _ = sample_extraction
    assert not list(out.rglob(".tmp-*"))
