"""Statistics of posterior means shared by training (per epoch) and evaluation: one definition of active units.

Active units: Burda et al. 2016 (arXiv 1509.00519, §5.2): latent dimension d is active when
Cov_x(E_q[z_d|x]) exceeds a threshold (``evaluate.active_unit_threshold``, 0.01 in the paper).
"""

from __future__ import annotations

import numpy as np

__all__ = ["posterior_mean_variance", "active_units"]


def posterior_mean_variance(posterior_mean: np.ndarray) -> np.ndarray:
    """Variance over samples of each dimension's posterior mean: (N, D) → (D,)."""
    return np.asarray(posterior_mean, np.float64).var(axis=0)


def active_units(posterior_mean: np.ndarray, threshold: float) -> int:
    """Number of latent dimensions whose posterior-mean variance over samples exceeds ``threshold``
    (``evaluate.active_unit_threshold``; training counts them per epoch with the same key).

    Args:
        posterior_mean: (N, D); fewer than two samples have no variance, so no active unit.
    """
    return int((posterior_mean_variance(posterior_mean) > threshold).sum())
