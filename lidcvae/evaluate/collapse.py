"""Posterior-collapse checks and the PCA suggestion for dim(z).

Active units, the one collapse measure of the report and metrics.json (``active_dimensions``): dimension d
is active when its posterior mean varies more across the samples than the encoder's own variance says
it is uncertain, Var_x(μ_d(x)) > mean_x σ²_d(x): then the code tells samples apart by more than its
noise. This is Burda et al. 2016's criterion (arXiv 1509.00519, §5.2) with the threshold set by the
encoder itself instead of a fixed 0.01, which counted a 64³ model's every unit as active while its
means varied along one direction. It is counted only over at least ``MIN_SAMPLES_FOR_UNITS`` samples (a
variance over two nodules says nothing). When every unit is inactive the decoder can only output one image, and the
best single image is the dataset's mean patch: the failure the seeds show (every reconstruction
regresses to the mean), so reconstructions no closer than the mean patch are flagged too.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from lidcvae.posterior import active_units, posterior_mean_variance

__all__ = [
    "kl_per_dimension",
    "posterior_mean_variance",
    "active_units",
    "active_units_by_kl",
    "active_dimensions",
    "ACTIVE_UNIT_RULE",
    "pca_dimension_suggestion",
    "collapse_warnings",
]

WARNING_PREFIX = "!!! POSTERIOR COLLAPSE WARNING:"
# Fewest inputs of a split whose posterior-mean variance counts active units for the collapse warning.
MIN_SAMPLES_FOR_UNITS = 10
ACTIVE_UNIT_RULE = ("a latent dimension is active when its posterior mean varies more across the samples than the "
                    "encoder's own variance for it: Var_x(μ_d(x)) > mean_x σ²_d(x)")


def active_dimensions(posterior_mean: np.ndarray, posterior_logvar: np.ndarray) -> np.ndarray | None:
    """Which dimensions are active by ``ACTIVE_UNIT_RULE``: (N, D) × 2 → (D,) bool; None under
    ``MIN_SAMPLES_FOR_UNITS`` samples."""
    mean, logvar = np.asarray(posterior_mean, np.float64), np.asarray(posterior_logvar, np.float64)
    if len(mean) < MIN_SAMPLES_FOR_UNITS:
        return None
    return mean.var(axis=0) > np.exp(logvar).mean(axis=0)


def kl_per_dimension(posterior_mean: np.ndarray, posterior_logvar: np.ndarray) -> np.ndarray:
    """KL(q(z_d|x) ‖ N(0, 1)) averaged over samples, per latent dimension: (N, D) × 2 → (D,) nats."""
    mean, logvar = np.asarray(posterior_mean, np.float64), np.asarray(posterior_logvar, np.float64)
    return (0.5 * (np.exp(logvar) + mean**2 - 1.0 - logvar)).mean(axis=0)


def active_units_by_kl(kl_per_dim: np.ndarray, threshold_nats: float) -> int:
    """Number of latent dimensions whose mean KL per sample (D,) exceeds ``threshold_nats``."""
    return int((np.asarray(kl_per_dim) > threshold_nats).sum())


def pca_dimension_suggestion(posterior_mean: np.ndarray, variance_fraction: float) -> int:
    """Fewest principal components of the posterior means that explain ``variance_fraction`` of their variance.

    The seeds' heuristic for choosing dim(z): train wide, then set dim(z) to this number. Returns 0
    when the means do not vary at all (a collapsed encoder).
    """
    mean = np.asarray(posterior_mean, np.float64)
    if len(mean) < 2 or np.allclose(mean.var(axis=0).sum(), 0.0):
        return 0
    explained = np.cumsum(PCA().fit(mean).explained_variance_ratio_)
    return int(np.searchsorted(explained, variance_fraction - 1e-12) + 1)


def collapse_warnings(
    active: int | None, latent_size: int, floor: int, reconstruction_mse: float, mean_patch_mse: float, split: str,
    samples: int = MIN_SAMPLES_FOR_UNITS,
) -> list[str]:
    """The loud messages for a collapsed model; empty when everything looks alive.

    ``active`` counts units over the split's ``samples`` inputs (None: not counted); below
    ``MIN_SAMPLES_FOR_UNITS`` a variance over samples says too little (two similar nodules vary little in
    every unit), so no unit warning then.
    """
    messages = []
    if active is not None and active < floor and samples >= MIN_SAMPLES_FOR_UNITS:
        messages.append(
            f"{WARNING_PREFIX} only {active} of {latent_size} latent units are active over the {samples} {split} "
            f"inputs (floor {floor}); the encoder output hardly depends on its input."
        )
    # The mean patch of a split with one sample (and no other split to average over) is that sample itself.
    if reconstruction_mse >= mean_patch_mse > 0:
        messages.append(
            f"{WARNING_PREFIX} {split} reconstructions (MSE {reconstruction_mse:.4g}) are no closer to their "
            f"inputs than the dataset's mean patch (MSE {mean_patch_mse:.4g}): every reconstruction "
            "regresses to the mean."
        )
    return messages
