"""Downstream probe: AUC near 1 on separable features, near 0.5 on noise, grouped folds, graceful skips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lidcvae.evaluate.probe import grouped_folds, probe_auc
from lidcvae.evaluate.probe_run import run_probe
from lidcvae.evaluate.settings import ProbeSettings


def _cohort(count=240, patients=60, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    groups = np.array([f"P{i % patients:03d}" for i in range(count)])
    return rng, labels, groups


def test_probe_auc_is_near_one_on_separable_features():
    rng, labels, groups = _cohort()
    features = np.c_[labels * 4.0 + rng.normal(0, 0.5, len(labels)), rng.normal(size=(len(labels), 5))]
    folds, notes = grouped_folds(labels, groups, 5, 0)
    result = probe_auc("separable", features, labels, folds, bootstrap_samples=200, seed=0)
    assert notes == [] and len(result.fold_aucs) == 5
    assert result.auc_mean > 0.97
    assert result.auc_ci_low <= result.auc_mean <= result.auc_ci_high


def test_probe_auc_is_near_half_on_noise():
    rng, labels, groups = _cohort(seed=1)
    result = probe_auc("noise", rng.normal(size=(len(labels), 5)), labels, grouped_folds(labels, groups, 5, 0)[0], bootstrap_samples=200, seed=0)
    assert abs(result.auc_mean - 0.5) < 0.12
    assert result.auc_ci_low < 0.5 + 0.12 and result.auc_ci_high > 0.5 - 0.12


def test_grouped_folds_never_put_a_patient_on_both_sides():
    _, labels, groups = _cohort()
    for train, test in grouped_folds(labels, groups, 5, 0)[0]:
        assert not set(groups[train]) & set(groups[test])


@pytest.mark.parametrize("count, patients", [(6, 3), (10, 10)])
def test_too_few_patients_or_one_class_gives_a_note_not_a_crash(count, patients):
    labels = np.zeros(count, int) if patients == 10 else np.arange(count) % 2
    folds, notes = grouped_folds(labels, np.arange(count) % patients, 5, 0)
    assert folds == [] and "probe skipped" in notes[0]


def test_run_probe_reports_latents_beside_diameter_and_raw_voxel_pca():
    rng, labels, groups = _cohort(count=60, patients=20)
    table = pd.DataFrame({"nodule_id": [f"n{i}" for i in range(60)], "patient_id": groups,
                          "label": pd.array(labels, dtype="Int64"), "consensus_diameter_mm": rng.uniform(3, 30, 60)})
    latents = pd.DataFrame(rng.normal(size=(60, 4)) + labels[:, None], columns=[f"z{i:03d}" for i in range(4)])
    embeddings = pd.concat([table, latents], axis=1)

    class Split:  # the shape of SplitData without importing torch-heavy helpers
        def __init__(self, images, table):
            self.images, self.table = images, table

    import torch
    splits = {"all": Split(torch.rand(60, 1, 4, 4, 4), table)}
    section, notes = run_probe(embeddings, splits, ProbeSettings.from_mapping({"bootstrap_samples": 50}), seed=0)
    assert set(section["results"]) == {"latent_means", "consensus_diameter_mm", "raw_voxel_pca4"}
    assert section["results"]["latent_means"]["auc_mean"] > 0.8
    assert section["labelled_samples"] == 60 and section["folds"] == 5
    # the classifier sees 4 principal components, not the 64 voxels they are computed from
    assert section["results"]["raw_voxel_pca4"]["n_features"] == 4 and section["raw_voxel_count"] == 64
    assert section["results"]["latent_means"]["n_patients"] == 20 == section["patients"]


def test_bootstrap_resamples_patients_so_copies_of_a_nodule_do_not_narrow_the_interval():
    rng = np.random.default_rng(3)
    labels = np.arange(40) % 2
    features = (labels + rng.normal(scale=1.2, size=40))[:, None]
    folds = [(np.setdiff1d(np.arange(40), test), test) for test in np.array_split(rng.permutation(40), 4)]
    one_each = probe_auc("x", features, labels, folds, bootstrap_samples=400, seed=0)
    copies = 8  # every patient's nodule seen 8 times: as correlated as nodules get
    repeat = lambda a: np.repeat(a, copies, axis=0)  # noqa: E731
    copied_folds = [(np.concatenate([np.arange(i * copies, (i + 1) * copies) for i in train]),
                     np.concatenate([np.arange(i * copies, (i + 1) * copies) for i in test])) for train, test in folds]
    by_patient = probe_auc("x", repeat(features), repeat(labels), copied_folds, bootstrap_samples=400, seed=0,
                           groups=repeat(np.arange(40)))
    by_nodule = probe_auc("x", repeat(features), repeat(labels), copied_folds, bootstrap_samples=400, seed=0)
    width = lambda r: r.auc_ci_high - r.auc_ci_low  # noqa: E731
    assert by_patient.auc_mean == pytest.approx(one_each.auc_mean)
    assert width(by_patient) == pytest.approx(width(one_each), rel=0.3)
    assert width(by_nodule) < 0.6 * width(by_patient)  # resampling nodules understates the spread ~√8 times
    assert by_patient.n_patients == 40 and by_nodule.n_patients == 320


def test_binary_probe_keeps_a_roc_curve_from_the_pooled_out_of_fold_scores():
    rng, labels, groups = _cohort(count=60, patients=20)
    features = labels[:, None] + rng.normal(scale=0.5, size=(60, 1))
    result = probe_auc("x", features, labels, grouped_folds(labels, groups, 5, 0)[0], bootstrap_samples=20, seed=0, groups=groups)
    fpr, tpr = np.array(result.roc_fpr), np.array(result.roc_tpr)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    assert np.trapezoid(tpr, fpr) > 0.8


@pytest.mark.parametrize("n_classes", [2, 4])
def test_rank_auc_equals_scikit_learns_with_ties(n_classes):
    from sklearn.metrics import roc_auc_score

    from lidcvae.evaluate.probe import _auc

    rng = np.random.default_rng(n_classes)
    labels = rng.integers(0, n_classes, 300)
    scores = np.round(rng.random((300, n_classes)) + 0.3 * np.eye(n_classes)[labels], 1)  # rounded: many ties
    scores = scores / scores.sum(axis=1, keepdims=True)  # probabilities, as a classifier's predict_proba
    expected = (roc_auc_score(labels, scores[:, 1]) if n_classes == 2
                else roc_auc_score(labels, scores, multi_class="ovr", labels=np.arange(n_classes)))
    assert _auc(labels, scores) == pytest.approx(expected, abs=1e-12)
    assert 0.5 < _auc(labels, scores) < 1.0  # informative scores, not a constant
