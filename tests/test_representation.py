"""The representation benchmark's pieces: shared grouped folds, probes, radiomics on the real sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lidcvae.evaluate.representation import (
    FeatureSet, Score, Target, format_paired, format_table, pca_probe, repeated_grouped_folds, score_table, score_target,
)

BINARY = Target("label", "binary", "malignancy")
ORDINAL = Target("texture", "ordinal", "texture")


def _cohort(n_patients=30, per_patient=3, seed=0):
    rng = np.random.default_rng(seed)
    patients = np.repeat([f"P{i:02d}" for i in range(n_patients)], per_patient)
    label = rng.integers(0, 2, len(patients)).astype(float)
    label[rng.random(len(patients)) < 0.2] = np.nan  # indeterminate malignancy
    texture = rng.integers(1, 6, len(patients)).astype(float)
    return pd.DataFrame({"patient_id": patients, "label": label, "texture": texture}), rng


def _repeats(table, repeats=3):
    strata = table["label"].fillna(-1).astype(int).to_numpy()
    return repeated_grouped_folds(table["patient_id"].to_numpy(), strata, 5, repeats, seed=0)


def test_folds_keep_each_patient_on_one_side_and_test_every_row_once_per_repeat():
    table, _ = _cohort()
    repeats = _repeats(table)
    patients = table["patient_id"].to_numpy()
    for folds in repeats:
        tested = np.concatenate([test for _, test in folds])
        assert sorted(tested) == list(range(len(table)))
        for train, test in folds:
            assert not set(patients[train]) & set(patients[test])
    assert not np.array_equal(repeats[0][0][1], repeats[1][0][1]), "repeats must reshuffle the patients"


def test_too_few_patients_for_the_folds_is_an_error():
    with pytest.raises(ValueError, match="3 patients cannot fill 5"):
        repeated_grouped_folds(np.array(["a", "b", "c"]), np.zeros(3), 5, 1, seed=0)


def test_a_feature_that_encodes_the_label_scores_high_and_noise_scores_chance():
    table, rng = _cohort(n_patients=60)
    label = table["label"].to_numpy()
    repeats = _repeats(table)
    informative = np.nan_to_num(label, nan=0.5)[:, None] + 0.3 * rng.standard_normal((len(table), 1))
    noise = rng.standard_normal((len(table), 20))
    good, random = score_target(informative, label, BINARY, repeats), score_target(noise, label, BINARY, repeats)
    assert good.mean > 0.9
    # pure noise scores at or somewhat below chance (held-out folds anti-correlate with their training side)
    assert 0.25 < random.mean < 0.6
    assert good.n_samples == int(np.isfinite(label).sum())  # unlabelled rows left out
    assert len(good.per_repeat) == 3 and good.sd >= 0


def test_ordinal_probe_reports_r2_high_for_the_target_and_near_zero_for_noise():
    table, rng = _cohort(n_patients=40)
    texture = table["texture"].to_numpy()
    repeats = _repeats(table)
    informative = np.column_stack([texture + 0.3 * rng.standard_normal(len(table)), rng.standard_normal(len(table))])
    good = score_target(informative, texture, ORDINAL, repeats)
    random = score_target(rng.standard_normal((len(table), 10)), texture, ORDINAL, repeats)
    assert good.mean > 0.85 and good.spearman[0] > 0.85
    assert random.mean < 0.1


def test_pca_probe_recovers_a_target_spread_over_many_voxels():
    table, rng = _cohort(n_patients=40)
    texture = table["texture"].to_numpy()
    voxels = np.outer(texture, rng.standard_normal(500)) + 0.5 * rng.standard_normal((len(table), 500))
    assert score_target(voxels, texture, ORDINAL, _repeats(table), pca_probe(4)).mean > 0.9


def test_table_has_one_row_per_feature_set_and_dashes_for_skipped_targets():
    table, rng = _cohort()
    sets = [FeatureSet("diameter", table[["texture"]].to_numpy(), skip=("texture",)),
            FeatureSet("noise", rng.standard_normal((len(table), 3)))]
    results = score_table(sets, table, [BINARY, ORDINAL], _repeats(table, 2))
    text = format_table(results, [BINARY, ORDINAL], {"diameter": 1, "noise": 3})
    lines = text.splitlines()
    assert lines[0] == "| features | dims | malignancy (AUC) | texture (R²) |"
    assert lines[2].startswith("| diameter | 1 | ") and lines[2].endswith(" | – |")
    assert " ± " in lines[3] and len(lines) == 4


def test_score_mean_and_sd_ignore_unscorable_repeats():
    score = Score(per_repeat=[0.6, float("nan"), 0.8])
    assert score.mean == pytest.approx(0.7) and score.sd == pytest.approx(np.std([0.6, 0.8], ddof=1))


def test_paired_table_is_the_per_repeat_difference_and_counts_repeats_at_least_as_high():
    results = {"latents": {"label": Score([0.90, 0.95, 0.97]), "texture": Score([0.5, float("nan"), 0.7])},
               "radiomics": {"label": Score([0.92, 0.93, 0.97]), "texture": Score([0.6, 0.6, 0.6])},
               "diameter": {"label": Score([0.8, 0.8, 0.8])}}
    lines = format_paired(results, ["latents", "diameter"], "radiomics", [BINARY, ORDINAL]).splitlines()
    assert lines[0] == "| features | malignancy (ΔAUC) | texture (ΔR²) |"
    # label: differences −0.02, +0.02, 0.00 → mean 0.00, sd 0.02, two of three at least as high;
    # texture: the unscorable repeat is left out, −0.1 and +0.1 → 0.00 ± 0.14, one of two; diameter:
    # −0.12, −0.13, −0.17 → −0.14 ± 0.03, none.
    assert lines[2] == "| latents − radiomics | +0.00 ± 0.02 (2/3) | +0.00 ± 0.14 (1/2) |"
    assert lines[3] == "| diameter − radiomics | -0.14 ± 0.03 (0/3) | – |"


@pytest.fixture(scope="module")
def sample_patches(lidc_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    from lidcvae.extract.cohort import extract_cohort
    from lidcvae.extract.manifest import read_manifest

    out_dir = tmp_path_factory.mktemp("radiomics")
    extract_cohort(lidc_sample, out_dir, progress=False)
    return read_manifest(out_dir / "manifest.parquet")


def test_radiomics_measure_the_real_nodules_volume_and_diameter(sample_patches: pd.DataFrame):
    from lidcvae.evaluate.radiomics import radiomics_table

    features = radiomics_table(sample_patches)
    assert features.shape == (len(sample_patches), 56)  # 14 shape + 18 first-order + 24 GLCM
    voxel_volume = features["original_shape_VoxelVolume"].to_numpy()
    # the 1 mm mask patch holds the consensus volume to within resampling (< 15 %) ...
    assert np.allclose(voxel_volume, sample_patches["consensus_volume_mm3"], rtol=0.15)
    # ... and the whole nodule's (LIDC-IDRI-0001) mean HU lies between lung (−850) and soft tissue (+100);
    # LIDC-IDRI-0002's nodule is cut by the sample's missing slices, its mask over padding (≈ −960 HU)
    whole = (sample_patches["patient_id"] == "LIDC-IDRI-0001").to_numpy()
    assert whole.any() and (-850 < features["original_firstorder_Mean"][whole]).all()
    assert (features["original_firstorder_Mean"][whole] < 100).all()
    assert (features["original_shape_Maximum3DDiameter"] >= 0.9 * sample_patches["consensus_diameter_mm"]).all()


def test_radiomics_of_an_empty_mask_names_the_file(sample_patches: pd.DataFrame, tmp_path: Path):
    import nibabel as nib

    from lidcvae.evaluate.radiomics import radiomics_features

    mask = nib.load(sample_patches["mask_path"].iloc[0])
    empty = tmp_path / "empty_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(mask.shape, np.uint8), mask.affine), empty)
    with pytest.raises(ValueError, match="empty_mask.nii.gz: the consensus mask is empty"):
        radiomics_features(sample_patches["image_path"].iloc[0], empty)
