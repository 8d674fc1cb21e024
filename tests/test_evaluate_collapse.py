"""Posterior-collapse checks: KL per dimension, active units, PCA suggestion, mean-patch warning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_evaluate_standins import InputIgnoringVAE, TinyLinearVAE

from lidcvae.embed import encode_batches
from lidcvae.evaluate.collapse import (
    WARNING_PREFIX, active_units, collapse_warnings, kl_per_dimension, pca_dimension_suggestion,
)
from lidcvae.evaluate.settings import EvaluateSettings
from lidcvae.evaluate.split_metrics import evaluate_split


def test_active_units_is_zero_for_an_encoder_that_ignores_its_input():
    images = torch.rand(20, 1, 4, 4, 4)
    means, _ = encode_batches(InputIgnoringVAE(), images, batch_size=6, device="cpu")
    assert active_units(means, 0.01) == 0


def test_active_units_counts_every_dimension_of_a_linear_encoder():
    images = torch.rand(50, 1, 4, 4, 4)
    model = TinyLinearVAE(latent_size=3)
    with torch.no_grad():
        model.encoder.weight.mul_(20.0)
    assert active_units(encode_batches(model, images, batch_size=8, device="cpu")[0], 0.01) == 3


ACTIVE_UNIT_CASES = [
    (np.array([0.0, 0.005, 0.02, 1.0]), 0.01, 2),
    (np.array([0.0, 0.005, 0.02, 1.0]), 0.001, 3),
    (np.zeros(4), 0.01, 0),
]


@pytest.mark.parametrize("variances, threshold, expected", ACTIVE_UNIT_CASES)
def test_active_units_thresholds_the_variance_of_the_posterior_mean(variances, threshold, expected):
    signs = np.where(np.arange(1000) % 2, 1.0, -1.0)[:, None]
    means = signs * np.sqrt(variances)[None, :]  # variance over samples is exactly `variances`
    assert active_units(means, threshold) == expected


def test_kl_per_dimension_is_zero_at_the_prior_and_half_mu_squared_for_unit_variance():
    means = np.array([[0.0, 2.0], [0.0, -2.0]])
    np.testing.assert_allclose(kl_per_dimension(means, np.zeros_like(means)), [0.0, 2.0])


def test_pca_suggestion_finds_the_dimension_of_a_subspace():
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((200, 3)) @ rng.standard_normal((3, 16))
    assert pca_dimension_suggestion(codes, 0.9) <= 3
    assert pca_dimension_suggestion(codes, 0.999999) == 3
    assert pca_dimension_suggestion(np.ones((10, 16)), 0.9) == 0


def test_collapse_warnings_are_loud_and_name_both_failures():
    messages = collapse_warnings(active=0, latent_size=256, floor=2, reconstruction_mse=0.1, mean_patch_mse=0.1, split="test")
    assert len(messages) == 2 and all(m.startswith(WARNING_PREFIX) for m in messages)
    assert collapse_warnings(active=5, latent_size=256, floor=2, reconstruction_mse=0.01, mean_patch_mse=0.1, split="test") == []
    units = collapse_warnings(active=0, latent_size=256, floor=2, reconstruction_mse=0.01, mean_patch_mse=0.1, split="val", samples=12)
    assert len(units) == 1 and "over the 12 val inputs" in units[0]
    # Two test nodules alike in every unit are not a collapse: too few inputs to count units on.
    assert collapse_warnings(active=0, latent_size=256, floor=2, reconstruction_mse=0.01, mean_patch_mse=0.1, split="test", samples=2) == []


def test_a_collapsed_model_reconstructs_no_better_than_the_mean_patch():
    images = torch.rand(12, 1, 4, 4, 4)
    settings = EvaluateSettings.from_mapping({"batch_size": 5, "iwae_samples": 4, "iwae_chunk_size": 2, "montage_samples": 3})
    result = evaluate_split(InputIgnoringVAE(), images, images.mean(0).numpy(), settings, None)
    assert result.metrics["active_units"] == 0
    assert result.metrics["mse_normalised"] >= result.metrics["mean_patch_mse_normalised"]
    assert result.first_inputs.shape == result.first_reconstructions.shape == (3, 1, 4, 4, 4)
