"""The phantom cohort, checked by the clients a real download meets: pylidc, dcm2niix, dciodvfy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, RLELossless
from scipy import ndimage

from lidcvae import lidc
from lidcvae.config import ConfigError
from lidcvae.phantom import PhantomConfig, phantom_scan, select_series, series_folder, write_phantom_cohort
from lidcvae.phantom.anatomy import HU
from lidcvae.phantom.dicom_writer import write_ct_series
from lidcvae.run_config import load_config

SMALLEST = "LIDC-IDRI-0957"  # 65 slices, two nodules each marked by 3 readers
SMALLEST_SERIES = "1.3.6.1.4.1.14519.5.2.1.6279.6001.314917368146772872954571551463"


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    """A one-scan phantom cohort (the database's smallest qualifying scan), written once."""
    root = tmp_path_factory.mktemp("phantom") / "dicom"
    write_phantom_cohort(root, PhantomConfig.from_mapping({"n_scans": 1, "workers": 1}), root.parent / "cohort.json")
    return root


@pytest.fixture(scope="session")
def phantom(phantom_root):
    """The in-memory scan that was written (rebuilt: the generator is deterministic)."""
    return phantom_scan(SMALLEST_SERIES, PhantomConfig.from_mapping({}))


@pytest.fixture(scope="session")
def series_dir(phantom_root, phantom) -> Path:
    return series_folder(phantom_root, phantom.identity)


def test_default_choice_is_fewest_slices_with_a_three_reader_nodule():
    chosen = select_series(2, None, 3)
    assert chosen[0] == SMALLEST_SERIES
    counts = {uid: n for uid, _, n in lidc.series_by_slice_count()}
    assert counts[chosen[0]] <= counts[chosen[1]]
    for uid in chosen:
        assert max(len(readers) for readers in lidc.reader_annotations(uid, None)) >= 3


def test_explicit_patients_take_every_scan_of_each():
    chosen = select_series(1, ["LIDC-IDRI-0365"], 3)
    assert len(chosen) == 2  # this patient has two CT scans in the database
    with pytest.raises(KeyError, match="LIDC-IDRI-9999"):
        select_series(1, ["LIDC-IDRI-9999"], 3)


def test_one_file_per_database_z_position_with_real_ct_tags(series_dir, phantom):
    record = lidc.scan_record(SMALLEST_SERIES)
    files = sorted(series_dir.glob("*.dcm"))
    assert len(files) == len(np.unique(record.slice_z_mm)) == 65
    headers = sorted((pydicom.dcmread(f) for f in files), key=lambda ds: float(ds.ImagePositionPatient[2]))
    np.testing.assert_allclose([float(ds.ImagePositionPatient[2]) for ds in headers], record.slice_z_mm, atol=1e-5)
    first = headers[0]
    assert first.file_meta.TransferSyntaxUID == RLELossless
    assert first.SOPClassUID == first.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert (first.Modality, first.PatientID) == ("CT", SMALLEST)
    assert (first.StudyInstanceUID, first.SeriesInstanceUID) == (record.study_instance_uid, SMALLEST_SERIES)
    assert float(first.PixelSpacing[0]) == pytest.approx(record.pixel_spacing_mm)
    assert (float(first.RescaleIntercept), float(first.RescaleSlope)) == (-1024.0, 1.0)
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert len({ds.SOPInstanceUID for ds in headers}) == 65
    assert all(ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID for ds in headers)
    assert len({ds.FrameOfReferenceUID for ds in headers}) == 1
    assert [int(ds.InstanceNumber) for ds in headers] == list(range(1, 66))


def test_pylidc_loads_the_series_and_to_volume_equals_what_was_written(phantom_root, phantom):
    lidc.use_dicom_root(phantom_root)
    volume_rcs = lidc.scan_by_series(SMALLEST_SERIES).to_volume(verbose=False)
    np.testing.assert_array_equal(np.transpose(volume_rcs, (2, 0, 1)), phantom.volume_hu)


def test_phantom_is_deterministic_per_seed_and_changes_with_it(phantom):
    again = phantom_scan(SMALLEST_SERIES, PhantomConfig.from_mapping({}))
    np.testing.assert_array_equal(again.volume_hu, phantom.volume_hu)
    other = phantom_scan(SMALLEST_SERIES, PhantomConfig.from_mapping({"seed": 1}))
    assert np.abs(other.volume_hu.astype(int) - phantom.volume_hu).mean() > 5


def test_rewriting_gives_identical_files(tmp_path, series_dir, phantom):
    first_slice = slice(0, 2)
    write_ct_series(tmp_path, phantom.volume_hu[first_slice], phantom.identity, phantom.geometry)
    for path in sorted(series_folder(tmp_path, phantom.identity).glob("*.dcm")):
        assert path.read_bytes() == (series_dir / path.name).read_bytes()


def test_anatomy_has_chest_ct_values_and_the_requested_noise(phantom):
    quiet = phantom_scan(SMALLEST_SERIES, PhantomConfig.from_mapping({"noise_hu": 0.0})).volume_hu.astype(np.float32)
    noise = phantom.volume_hu - quiet
    assert 13.5 < noise.std() < 16.5
    middle = quiet[len(quiet) // 2]
    assert middle[:20, :20].mean() == pytest.approx(HU["air"], abs=5)  # corner: air outside the body
    lung_fraction = ((middle > -900) & (middle < -780)).mean()
    assert 0.1 < lung_fraction < 0.45
    assert (middle > 600).sum() > 200  # cortical bone: spine and ribs
    assert ((middle > -150) & (middle < -50)).sum() > 5000  # subcutaneous fat
    assert ((middle > 20) & (middle < 70)).sum() > 20000  # soft tissue


def test_every_nodule_sits_in_lung_and_stands_out(phantom):
    volume = phantom.volume_hu.astype(np.float32)
    for nodule in phantom.nodules:
        box = nodule.box()
        core = nodule.occupancy >= 0.5
        inside = volume[box][core].mean()
        surround = ndimage.binary_dilation(nodule.occupancy > 0, iterations=2) & ~ndimage.binary_dilation(nodule.occupancy > 0)
        ring = volume[nodule.box(pad=0)][surround]
        assert np.median(ring) < -700, "nodule not surrounded by lung"
        assert inside - np.median(ring) > 250, "nodule without contrast to lung"


def test_dcm2niix_converts_the_series(series_dir, tmp_path):
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix not installed (Debian package dcm2niix)")
    result = subprocess.run(["dcm2niix", "-z", "y", "-f", "phantom", "-o", str(tmp_path), str(series_dir)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()
    image = nib.load(tmp_path / "phantom.nii.gz")
    assert image.shape == (512, 512, 65)
    assert image.header.get_zooms()[2] == pytest.approx(5.0, abs=1e-3)


def test_dciodvfy_finds_no_error_in_the_ct_image_iod(series_dir):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools)")
    for path in sorted(series_dir.glob("*.dcm"))[::16]:
        result = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True, timeout=60)
        report = result.stdout + result.stderr
        assert "CTImage" in report
        assert not [line for line in report.splitlines() if line.startswith("Error")], report


def test_cohort_record_marks_completion(phantom_root):
    import json

    record = json.loads((phantom_root.parent / "cohort.json").read_text())
    assert record["config"]["n_scans"] == 1
    assert [row["patient_id"] for row in record["series"]] == [SMALLEST]
    assert record["series"][0]["slices"] == 65


@pytest.mark.parametrize("key, value", [("phantom.n_scans", 0), ("phantom.nscans", 3), ("phantom.patients", ["0001"])])
def test_schema_rejects_bad_phantom_keys(key, value):
    with pytest.raises(ConfigError, match="phantom"):
        load_config(None, {key: value})


def test_schema_defaults_give_a_small_default_cohort():
    section = load_config(None).phantom
    assert section.n_scans == 4 and section.patients is None and section.seed == 0
