"""Reconstruction metrics score the image: a consensus-mask channel never enters MSE, PSNR or SSIM."""

from __future__ import annotations

import numpy as np
import pytest

from lidcvae.evaluate.reconstruction import per_sample_mse, psnr_db, structural_similarity_per_sample


def _two_channel_pair() -> tuple[np.ndarray, np.ndarray]:
    """(2, 2, 8, 8, 8): the image of sample 0 off by 0.1 everywhere, sample 1 exact; every mask wrong."""
    rng = np.random.default_rng(0)
    inputs = np.concatenate([rng.random((2, 1, 8, 8, 8)), (rng.random((2, 1, 8, 8, 8)) > 0.5)], axis=1)
    reconstructions = inputs.copy()
    reconstructions[0, 0] += 0.1
    reconstructions[:, 1] = 1.0 - reconstructions[:, 1]
    return inputs, reconstructions


def test_mse_and_psnr_score_the_image_channel_only():
    inputs, reconstructions = _two_channel_pair()
    mse = per_sample_mse(inputs, reconstructions)
    assert mse == pytest.approx([0.01, 0.0])  # the mask's error (1 per voxel) would make these ~0.5
    assert psnr_db(mse)[0] == pytest.approx(20.0) and np.isinf(psnr_db(mse)[1])


def test_ssim_scores_the_image_channel_only():
    inputs, reconstructions = _two_channel_pair()
    ssim = structural_similarity_per_sample(inputs, reconstructions)
    assert ssim[1] == pytest.approx(1.0) and ssim[0] < 1.0


def test_single_channel_images_keep_every_pixel():
    digits = np.zeros((1, 1, 4, 4))
    assert per_sample_mse(digits, digits + 0.2) == pytest.approx([0.04])
