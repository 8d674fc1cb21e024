"""Reconstruction quality: MSE (model scale and HU²), PSNR and SSIM (2-D or 3-D, scikit-image)."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


__all__ = ["per_sample_mse", "psnr_db", "structural_similarity_per_sample"]


def per_sample_mse(inputs: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """Mean squared error per sample over the image: (N, *event_shape) × 2 → (N,).

    For volumes (N, C, Z, Y, X) only channel 0 is scored: a consensus-mask channel (``model.mask_channel``)
    is not part of the image, and its 0/1 errors would make the MSE and PSNR incomparable across models.
    """
    inputs, reconstructions = np.asarray(inputs, np.float64), np.asarray(reconstructions, np.float64)
    if inputs.ndim == 5:
        inputs, reconstructions = inputs[:, :1], reconstructions[:, :1]
    difference = (inputs - reconstructions).reshape(len(inputs), -1)
    return (difference**2).mean(axis=1)


def psnr_db(mse: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio 10·log10(range² / MSE) in dB, per sample; ∞ for a perfect match."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / np.asarray(mse, np.float64))


def _spatial(sample: np.ndarray) -> np.ndarray:
    """The image channel: (C, Z, Y, X) → (Z, Y, X) (channel 0; a mask channel is not scored); (1, H, W) → (H, W)."""
    return sample[0] if sample.ndim == 4 or (sample.shape[0] == 1 and sample.ndim > 2) else sample


def structural_similarity_per_sample(inputs: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """SSIM (Wang et al. 2004) per sample on the [0, 1] model scale, 3-D for volumes: (N,)."""
    scores = []
    for image, reconstruction in zip(inputs, reconstructions):
        image, reconstruction = _spatial(np.asarray(image, np.float64)), _spatial(np.asarray(reconstruction, np.float64))
        win_size = min(7, *(s if s % 2 else s - 1 for s in image.shape))
        scores.append(structural_similarity(image, reconstruction, data_range=1.0, win_size=win_size))
    return np.asarray(scores)