"""Size-only controls and the out-of-distribution rule: each claim's twin from diameter alone, each rule's edge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lidcvae.evaluate.claims import label_agreement, pc1_against_size, probe_verdict
from lidcvae.evaluate.headline import sample_support
from lidcvae.evaluate.provenance import OOD_FACTOR, out_of_distribution, size_column


def test_a_latent_space_that_is_only_size_agrees_with_its_diameter_twin():
    rng = np.random.default_rng(0)
    diameters = rng.uniform(4, 30, 60)
    labels = (diameters > 15).astype(int)
    codes = np.c_[-diameters, 0.01 * rng.normal(size=(60, 3))]  # PC1 is size, nothing else
    asked = np.arange(60)
    latent, by_size = label_agreement(codes, labels, asked, 5), label_agreement(diameters, labels, asked, 5)
    assert latent == pytest.approx(by_size, abs=0.02)
    pc1 = pc1_against_size(codes, diameters)
    assert pc1["pc1_variance_fraction"] > 0.99 and abs(pc1["pc1_diameter_r"]) > 0.99 and pc1["pc1_diameter_samples"] == 60


@pytest.mark.parametrize("latent_low, beats", [(0.80, True), (0.70, False)])
def test_the_probe_beats_size_only_when_its_interval_clears_the_diameter_auc(latent_low, beats):
    results = {"latent_means": {"auc_mean": 0.85, "auc_ci_low": latent_low}, "consensus_diameter_mm": {"auc_mean": 0.75}}
    verdict = probe_verdict(results, "consensus_diameter_mm")
    assert verdict["beats_size"] is beats and verdict["size_auc"] == 0.75
    assert probe_verdict(results, None) == {}  # MNIST: no control, no verdict


def test_size_column_prefers_the_consensus_diameter_and_skips_empty_ones():
    assert size_column(pd.DataFrame({"consensus_diameter_mm": [5.0, 6], "diameter_mm": [5.0, 6]})) == "consensus_diameter_mm"
    assert size_column(pd.DataFrame({"consensus_diameter_mm": [np.nan, np.nan], "diameter_mm": [5.0, 6]})) == "diameter_mm"
    assert size_column(pd.DataFrame({"label": [1, 2]})) is None


@pytest.mark.parametrize("samples, patients, thin", [(9, 5, True), (10, 4, True), (10, 5, False), (100, None, False)])
def test_numbers_under_ten_samples_or_five_patients_are_thin(samples, patients, thin):
    assert (sample_support(samples, patients) is not None) is thin


@pytest.mark.parametrize("nll, kl, fires", [(150.0, 10.0, False), (250.0, 10.0, True), (150.0, 25.0, True), (-50.0, 10.0, False)])
def test_out_of_distribution_fires_beyond_twice_the_validation_values(nll, kl, fires):
    validation = {"epoch": 7, "reconstruction_nll_nats": 100.0, "kl_nats": 10.0}
    scores = {"reconstruction_log_likelihood_nats": -nll, "kl_nats": kl, "samples": 12}
    found = out_of_distribution("cohort", scores, validation)
    assert bool(found) is fires
    if fires:
        assert f"{OOD_FACTOR:g}×" in found[0] and "epoch 7" in found[0]
    assert out_of_distribution("cohort", scores, None) == []
