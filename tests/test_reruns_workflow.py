"""A changed data folder reruns what it changes under Snakemake (issue 30, fail 3): a scan added or a
truncated slice replaced under the same `dicom_root`, an edited coordinates table or a replaced volume under
`images_root` re-indexes and re-extracts those series only; an unchanged folder is "Nothing to be done".
Each run stops at the manifest (no training)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
NOTHING = "Nothing to be done"


def _snakemake(workdir: Path, config: Path, target: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "snakefile"), "--directory", str(workdir),
               str(target), "--cores", "2", *args, "--configfile", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)


def _jobs(result: subprocess.CompletedProcess) -> dict[str, list[str]]:
    """{rule: [series wildcard or '', ...]} of the jobs Snakemake ran (or, with -n, would run)."""
    assert result.returncode == 0, result.stderr[-3000:]
    jobs: dict[str, list[str]] = {}
    for rule, body in re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n)*)", result.stdout + result.stderr, re.M):
        series = re.search(r"wildcards: series=(\S+)", body)
        jobs.setdefault(rule, []).append(series.group(1) if series else "")
    return jobs


def _is_nothing_to_do(workdir: Path, config: Path, target: Path) -> bool:
    plan = _snakemake(workdir, config, target, "-n")
    return plan.returncode == 0 and NOTHING in plan.stdout + plan.stderr


# --- the readings route: LIDC-IDRI DICOM under dicom_root ------------------------------------------------------


def _series_folder(root: Path, patient: str) -> Path:
    """The sample's series folder of ``patient`` (its name is the Series Instance UID)."""
    return next(root.glob(f"{patient}/*/*"))


@pytest.fixture
def dicom_run(lidc_sample, tmp_path):
    """A copy of the sample DICOM (files are replaced in place, so no links), its config and the manifest target."""
    root = tmp_path / "dicom"
    shutil.copytree(lidc_sample, root, ignore=shutil.ignore_patterns("*.txt"))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "reruns", "results_dir": str(tmp_path / "results"), "dicom_root": str(root)}))
    return root, config, tmp_path / "results" / "reruns" / "extract"


@pytest.mark.slow
def test_a_scan_added_under_the_same_dicom_root_is_extracted_alone_and_joins_the_manifest(dicom_run, lidc_sample, tmp_path):
    root, config, extract = dicom_run
    shutil.rmtree(root / "LIDC-IDRI-0002")
    first = _jobs(_snakemake(tmp_path, config, extract / "manifest.parquet"))
    assert first["extract_scan"] == [_series_folder(root, "LIDC-IDRI-0001").name]
    kept = {p: p.stat().st_mtime_ns for p in (extract / "scans").iterdir()}

    shutil.copytree(lidc_sample / "LIDC-IDRI-0002", root / "LIDC-IDRI-0002")
    second = _jobs(_snakemake(tmp_path, config, extract / "manifest.parquet"))

    assert second["extract_index"] == [""] and second["extract_gather"] == [""]
    assert second["extract_scan"] == [_series_folder(root, "LIDC-IDRI-0002").name]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert sorted(pd.read_parquet(extract / "manifest.parquet")["patient_id"]) == ["LIDC-IDRI-0001", "LIDC-IDRI-0002"]
    assert _is_nothing_to_do(tmp_path, config, extract / "manifest.parquet")


@pytest.mark.slow
def test_a_truncated_slice_replaced_by_its_good_copy_reruns_that_series_and_leaves_the_failures(dicom_run, tmp_path):
    root, config, extract = dicom_run
    victim = sorted(_series_folder(root, "LIDC-IDRI-0002").glob("*.dcm"))[5]
    good = victim.read_bytes()
    victim.write_bytes(good[:-4000])  # inside the pixel data: the header indexes, the pixels do not decode
    _jobs(_snakemake(tmp_path, config, extract / "manifest.parquet"))
    failures = pd.read_parquet(extract / "failures.parquet")
    assert list(failures["patient_id"]) == ["LIDC-IDRI-0002"] and victim.name in failures["reason"].iloc[0]
    series_1 = _series_folder(root, "LIDC-IDRI-0001").name
    kept = {p: p.stat().st_mtime_ns for p in [*(extract / "scans").glob(f"{series_1}.*"), *(extract / "patches").rglob("*")]}

    victim.write_bytes(good)
    rerun = _jobs(_snakemake(tmp_path, config, extract / "manifest.parquet"))

    assert rerun["extract_scan"] == [_series_folder(root, "LIDC-IDRI-0002").name]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # LIDC-IDRI-0001's part tables and patches untouched
    assert pd.read_parquet(extract / "failures.parquet").empty
    assert sorted(pd.read_parquet(extract / "manifest.parquet")["patient_id"]) == ["LIDC-IDRI-0001", "LIDC-IDRI-0002"]
    assert _is_nothing_to_do(tmp_path, config, extract / "manifest.parquet")


@pytest.mark.slow
def test_an_unchanged_dicom_root_is_nothing_to_do_and_a_file_no_series_holds_reruns_the_index_alone(dicom_run, tmp_path):
    root, config, extract = dicom_run
    _jobs(_snakemake(tmp_path, config, extract / "manifest.parquet"))
    assert _is_nothing_to_do(tmp_path, config, extract / "manifest.parquet")
    parts = {p: p.stat().st_mtime_ns for p in (extract / "scans").iterdir()}

    # A file the index reads but no series holds: indexed again and named in the failures, no series re-extracted.
    notes = _series_folder(root, "LIDC-IDRI-0002").parent / "notes.dcm"
    notes.write_text("this is not DICOM")
    reindexed = _jobs(_snakemake(tmp_path, config, extract / "manifest.parquet"))

    assert reindexed["extract_index"] == [""] and "extract_scan" not in reindexed
    assert {p: p.stat().st_mtime_ns for p in parts} == parts
    assert list(pd.read_parquet(extract / "failures.parquet")["path"]) == [str(notes)]
    assert _is_nothing_to_do(tmp_path, config, extract / "manifest.parquet")
    # The index read again (forced) finds the same files, sizes and times: no series is extracted again.
    forced = _jobs(_snakemake(tmp_path, config, extract / "manifest.parquet", "--forcerun", "extract_index"))
    assert forced["extract_index"] == [""] and "extract_scan" not in forced
    assert {p: p.stat().st_mtime_ns for p in parts} == parts


# --- the coordinates route: a table and volumes under images_root -------------------------------------------------

SERIES = [f"1.2.826.0.1.3680043.8.498.{i}" for i in range(1, 4)]


def _coordinates_run(tmp_path: Path) -> tuple[Path, Path, Path, pd.DataFrame]:
    from test_scripts import TINY_MODEL
    from test_workflow_coordinates import _write_volume

    images = tmp_path / "images"
    rows = []
    for i, uid in enumerate(SERIES):
        _write_volume(images / f"subset{i % 2}" / f"{uid}.mhd", np.array([-10.0 + i, 5.0, 0.0]), seed=i)
        rows.append((uid, -10.0 + i, 5.0, 0.0, 12.0))
    table = pd.DataFrame(rows, columns=["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"])
    table.to_csv(tmp_path / "annotations.csv", index=False)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "reruns", "results_dir": str(tmp_path / "results"), "model": TINY_MODEL,
                                      "candidates": str(tmp_path / "annotations.csv"), "images_root": str(images)}))
    return images, config, tmp_path / "results" / "reruns" / "extract", table


@pytest.mark.slow
def test_an_edited_coordinates_table_and_a_replaced_volume_rerun_only_their_series(tmp_path):
    from test_workflow_coordinates import _write_volume

    images, config, extract, table = _coordinates_run(tmp_path)
    assert sorted(_jobs(_snakemake(tmp_path, config, extract / "manifest.parquet"))["extract_scan"]) == SERIES
    before = pd.read_parquet(extract / "manifest.parquet").set_index("patient_id")
    kept = {p: p.stat().st_mtime_ns for p in (extract / "scans").glob(f"{SERIES[2]}.*")}

    table.loc[0, "diameter_mm"] = 9.0  # a corrected row of the first series
    table.to_csv(tmp_path / "annotations.csv", index=False)
    # The second series' voxels replaced: only its .raw (the .mhd header, named in the index, is the same file).
    _write_volume(tmp_path / "new" / f"{SERIES[1]}.mhd", np.array([-9.0, 5.0, 0.0]), seed=99)
    shutil.copyfile(tmp_path / "new" / f"{SERIES[1]}.raw", images / "subset1" / f"{SERIES[1]}.raw")
    rerun = _jobs(_snakemake(tmp_path, config, extract / "manifest.parquet"))

    assert rerun["extract_index"] == [""] and sorted(rerun["extract_scan"]) == SERIES[:2]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    after = pd.read_parquet(extract / "manifest.parquet").set_index("patient_id")
    assert after.loc[SERIES[0], "diameter_mm"] == 9.0 and before.loc[SERIES[0], "diameter_mm"] == 12.0
    assert after.loc[SERIES[2]].equals(before.loc[SERIES[2]])
    assert _is_nothing_to_do(tmp_path, config, extract / "manifest.parquet")
