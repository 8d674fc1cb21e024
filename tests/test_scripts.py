"""The stage scripts as a user runs them from a shell: flags reach the library, output lands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO / "pipelines" / name), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


def test_extract_patches_restricts_to_the_patients_named(lidc_sample, tmp_path):
    out = tmp_path / "out"
    result = _script("extract_patches.py", "--dicom-root", str(lidc_sample), "--out", str(out),
                     "--patients", "LIDC-IDRI-0002", "--workers", "2")
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0002"]
    assert (out / manifest["image_path"].iloc[0]).is_file() and (out / manifest["mask_path"].iloc[0]).is_file()
    assert not (out / "patches" / "LIDC-IDRI-0001").exists()
    assert result.stdout.startswith("1 nodule(s)")


def test_make_phantom_writes_the_smallest_scan_whole(tmp_path):
    out, record = tmp_path / "dicom", tmp_path / "cohort.json"
    _script("make_phantom.py", "--out", str(out), "--n-scans", "1", "--seed", "3", "--record", str(record))
    written = json.loads(record.read_text())
    assert written["config"]["seed"] == 3 and written["config"]["n_scans"] == 1
    (series,) = written["series"]
    assert series["patient_id"] == "LIDC-IDRI-0957" and series["slices"] == 65
    assert len(list((out / "LIDC-IDRI-0957").rglob("*.dcm"))) == 65
