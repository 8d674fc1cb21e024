"""The coordinates route on small synthetic volumes: every kind of bad row becomes a failure row that
names it, every good row is still extracted, and a table that cannot be used at all stops with a message
naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from lidcvae.extract.candidates import CandidatesError, read_candidates
from lidcvae.extract.coordinates import extract_coordinates_cohort

ORIGIN_MM = (-40.0, -40.0, -40.0)
SPACING_MM = (0.8, 0.8, 2.0)
SIZE_XYZ = (100, 100, 40)  # 80 mm each way
BALL_MM, BALL_HU = np.array([2.0, -1.0, 0.0]), 80


def _write_volume(path: Path) -> None:
    """Lung (-850 HU) with a 10 mm ball of soft tissue at ``BALL_MM`` (LPS), identity direction."""
    axes = [ORIGIN_MM[a] + np.arange(SIZE_XYZ[a]) * SPACING_MM[a] for a in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    ball = (xx - BALL_MM[0]) ** 2 + (yy - BALL_MM[1]) ** 2 + (zz - BALL_MM[2]) ** 2 <= 5.0**2
    image = sitk.GetImageFromArray(np.where(ball, BALL_HU, -850).astype(np.int16))
    image.SetOrigin(ORIGIN_MM)
    image.SetSpacing(SPACING_MM)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


ROWS = [  # seriesuid, coordX, coordY, coordZ, diameter_mm, malignancy, note
    ("1.2.3.1", "2.0", "-1.0", "0.0", "10", "5", "centre"),  # good
    ("1.2.3.1", "-38.0", "-38.0", "-36.0", "4", "", "near the corner"),  # good, box leaves the volume
    ("1.2.3.1", "100.0", "2.0", "0.0", "4", "", "outside"),
    ("9.9.9.9", "0", "0", "0", "4", "", "unknown series"),
    ("1.2.3.1", "1.0", "abc", "0.0", "4", "", "non-numeric"),
    ("1.2.3.3", "0", "0", "0", "4", "", "unreadable volume"),
    ("1.2.3.2", "2.0", "-1.0", "0.0", "10", "1", "second series (NRRD)"),  # good
]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad")
    _write_volume(root / "images" / "subset0" / "1.2.3.1.mhd")
    _write_volume(root / "images" / "subset1" / "1.2.3.2.nrrd")
    (root / "images" / "subset1" / "1.2.3.3.mhd").write_text("ObjectType = Image\nNDims = 3\nElementDataFile = missing.raw\n")
    table = root / "annotations.csv"
    lines = ["seriesuid,coordX,coordY,coordZ,diameter_mm,malignancy,note", *(",".join(row) for row in ROWS)]
    table.write_text("\n".join(lines) + "\n")
    manifest, failures = extract_coordinates_cohort(table, root / "images", root / "out", progress=False)
    return {"root": root, "manifest": manifest, "failures": failures.set_index("nodule_index")}


def test_every_row_lands_in_exactly_one_table(cohort):
    extracted = set(cohort["manifest"]["nodule_index"])
    failed = set(cohort["failures"].index)
    assert extracted == {1, 2, 7}
    assert failed == {3, 4, 5, 6}
    assert (cohort["root"] / "out" / "failures.parquet").is_file()


@pytest.mark.parametrize("row, words", [
    (3, ["annotations.csv row 3", "outside its volume", "100.00"]),
    (4, ["annotations.csv row 4", "series 9.9.9.9 not found under images_root"]),
    (5, ["annotations.csv row 5", "coordY 'abc' is not a number"]),
    (6, ["annotations.csv row 6", "1.2.3.3.mhd", "SimpleITK cannot read"]),
])
def test_bad_row_failure_names_the_row_and_the_problem(cohort, row, words):
    reason = cohort["failures"].loc[row, "reason"]
    for word in words:
        assert word in reason, reason


def test_unreadable_volume_failure_names_its_file(cohort):
    assert cohort["failures"].loc[6, "path"].endswith("1.2.3.3.mhd")


def test_good_rows_are_centred_on_their_point_with_table_columns(cohort):
    manifest = cohort["manifest"].set_index("nodule_index")
    out = cohort["root"] / "out"
    for index in (1, 7):
        patch_hu = np.asarray(nib.load(out / manifest.loc[index, "image_path"]).dataobj)
        assert (patch_hu[31:33, 31:33, 31:33] == BALL_HU).all()  # the ball's centre is the patch's
        assert not manifest.loc[index, "edge"] and manifest.loc[index, "coverage"] == 1.0
    assert manifest.loc[1, "note"] == "centre" and manifest.loc[7, "note"] == "second series (NRRD)"
    assert (manifest.loc[1, "label"], manifest.loc[7, "label"]) == (1, 0)  # from the malignancy column
    assert manifest.loc[1, "patient_id"] == "1.2.3.1" and manifest.loc[7, "patient_id"] == "1.2.3.2"
    assert manifest.loc[1, "mask_path"] is None  # sphere_mask is off by default


def test_box_leaving_the_volume_is_padded_and_flagged(cohort):
    row = cohort["manifest"].set_index("nodule_index").loc[2]
    patch_hu = np.asarray(nib.load(cohort["root"] / "out" / row.image_path).dataobj)  # axes (x, y, z)
    assert row.edge
    # The point is 2 / 2 / 4 mm inside the low x / y / z faces: 34, 34 and 36 of the 64 positions along
    # each axis lie within the volume's voxel centres.
    assert row.coverage == pytest.approx(34 * 34 * 36 / 64**3, rel=1e-9)
    assert (patch_hu[:29, :29, :27] == -1000).all()  # pad_hu, air
    assert (patch_hu[34:38, 34:38, 34:38] == -850).all()  # the volume's lung, away from the ball


def test_missing_column_stops_naming_file_and_column(tmp_path):
    table = tmp_path / "coords.csv"
    table.write_text("seriesuid,coordX,coordY,diameter_mm\n1.2.3,1,2,3\n")
    with pytest.raises(CandidatesError, match=r"coords\.csv: missing column\(s\) coordZ"):
        read_candidates(table)


def test_empty_file_stops_naming_file(tmp_path):
    table = tmp_path / "empty.csv"
    table.write_text("")
    with pytest.raises(CandidatesError, match=r"empty\.csv: empty file"):
        read_candidates(table)


def test_header_without_rows_stops_naming_file(tmp_path):
    table = tmp_path / "header.csv"
    table.write_text("seriesuid,coordX,coordY,coordZ\n")
    with pytest.raises(CandidatesError, match=r"header\.csv: no rows"):
        read_candidates(table)


def test_missing_table_stops_naming_file(tmp_path):
    with pytest.raises(CandidatesError, match="candidates table not found: .*nowhere.csv"):
        read_candidates(tmp_path / "nowhere.csv")


def test_empty_value_and_infinite_value_are_row_failures(tmp_path):
    table = tmp_path / "coords.csv"
    table.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,1,2,,3\n1.2.3,1,2,3,inf\n,1,2,3,4\n1.2.3,1,2,3,\n")
    candidates, failures = read_candidates(table)
    reasons = dict(zip(failures["nodule_index"], failures["reason"]))
    assert set(reasons) == {1, 2, 3}
    assert "row 1: coordZ is empty" in reasons[1]
    assert "row 2: diameter_mm 'inf' is not a finite number" in reasons[2]
    assert "row 3: seriesuid is empty" in reasons[3]
    assert list(candidates["nodule_index"]) == [4]  # an empty optional diameter is fine


def test_script_exits_2_naming_an_unusable_table(tmp_path):
    import subprocess
    import sys

    table = tmp_path / "annotations.csv"
    table.write_text("seriesuid,coordX,coordY\n1.2.3,1,2\n")
    script = Path(__file__).resolve().parents[1] / "pipelines" / "extract_coordinates.py"
    result = subprocess.run([sys.executable, str(script), "--candidates", str(table), "--images-root", str(tmp_path),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "annotations.csv: missing column(s) coordZ" in result.stderr
    assert not (tmp_path / "out").exists()  # stopped before writing anything


# --- the reader's own reason, and a gap that only fails the rows it touches (issue 30) -------------------------


def _damage_raw(mhd: Path) -> Path:
    raw = mhd.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:100_000])
    return raw


@pytest.mark.parametrize("damage, words", [
    (lambda mhd: mhd.with_suffix(".raw").unlink() or mhd.with_suffix(".raw"), "missing .raw file {raw}"),
    (_damage_raw, "short .raw file {raw}: 100000 of 800000 bytes"),  # 100 × 100 × 40 int16
    (lambda mhd: mhd.write_text(mhd.read_text().replace("ElementType = MET_SHORT\n", "")), "bad header: ElementType required"),
    (lambda mhd: mhd.write_bytes(bytes(range(256)) * 4), "bad header: no SimpleITK reader recognises it"),
], ids=["missing raw", "short raw", "header without ElementType", "garbage header"])
def test_a_damaged_mhd_failure_gives_the_readers_own_reason(tmp_path, capfd, damage, words):
    mhd = tmp_path / "images" / "1.2.3.1.mhd"
    _write_volume(mhd)
    raw = damage(mhd)
    table = tmp_path / "annotations.csv"
    table.write_text("seriesuid,coordX,coordY,coordZ\n1.2.3.1,2.0,-1.0,0.0\n")

    manifest, failures = extract_coordinates_cohort(table, tmp_path / "images", tmp_path / "out", progress=False)

    assert manifest.empty
    reason = failures["reason"].iloc[0]
    assert f"{mhd}: SimpleITK cannot read this volume: {words.format(raw=raw)}" in reason, reason
    assert "No such file or directory" not in reason
    assert "MetaImage" not in capfd.readouterr().err  # MetaIO's lines are in the row, not loose on the console


@pytest.fixture(scope="module")
def whole_series(tmp_path_factory) -> dict:
    """The whole real LIDC-IDRI-0001 series with LUNA16's row for its nodule (z -115.9 mm), extracted."""
    data = Path(os.environ.get("LIDCVAE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    root = data / "lidc-whole"
    if not root.is_dir():
        pytest.skip(f"whole LIDC series not found at {root}")
    out = tmp_path_factory.mktemp("whole") / "out"
    manifest, failures = extract_coordinates_cohort(root / "luna16_annotations.csv", root, out, progress=False)
    assert len(manifest) == 1 and failures.empty
    return {"root": root, "manifest": manifest, "patch_hu": np.asarray(nib.load(out / manifest["image_path"].iloc[0]).dataobj)}


def _tree_without_slice_at(root: Path, target: Path, z_mm: float) -> Path:
    """Links to every slice under ``root`` but the one at ``z_mm``."""
    for path in root.rglob("*.dcm"):
        if float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2]) != z_mm:
            (target / path.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, target / path.relative_to(root))
    return target


def test_a_missing_slice_far_from_the_point_leaves_its_patch_as_it_was(whole_series, tmp_path):
    images = _tree_without_slice_at(whole_series["root"], tmp_path / "images", -300.0)  # 184 mm below the point

    manifest, failures = extract_coordinates_cohort(whole_series["root"] / "luna16_annotations.csv", images, tmp_path / "out",
                                                    progress=False)

    assert failures.empty
    columns = ["nodule_id", "centroid_k", "coverage", "edge"]
    pd.testing.assert_frame_equal(manifest[columns], whole_series["manifest"][columns])
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "out" / manifest["image_path"].iloc[0]).dataobj),
                                  whole_series["patch_hu"])


def test_a_missing_slice_inside_the_points_patch_fails_that_row_naming_the_gap(whole_series, tmp_path):
    images = _tree_without_slice_at(whole_series["root"], tmp_path / "images", -140.0)  # inside its 64 mm cube

    manifest, failures = extract_coordinates_cohort(whole_series["root"] / "luna16_annotations.csv", images, tmp_path / "out",
                                                    progress=False)

    assert manifest.empty
    assert failures["reason"].iloc[0].startswith(
        "luna16_annotations.csv row 1: 1 slice(s) missing between z=-142.500 and z=-137.500 mm")
