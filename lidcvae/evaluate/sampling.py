"""Latent codes to decode for "what the model thinks a nodule looks like": prior or aggregate posterior.

A VAE's encoder rarely fills N(0, I): on the phantom the posterior means have norm ~64 where a prior
draw has ~16, so decoded prior samples land where no nodule was ever encoded and come out uniform
grey. Sampling instead from a fit to the *aggregate posterior* q(z) = E_x q(z|x) gives codes in the
region the decoder was trained on (as in Ghosh et al. 2020, "From variational to deterministic
autoencoders", ex-post density estimation). The fit here is one full-covariance Gaussian:

    q̂(z) = N(m, S),  m = mean of the posterior means μ_i,
                     S = covariance of the μ_i + mean of the diagonal posterior variances diag(σ²_i),

which is the exact mean and covariance of the mixture Σ_i N(μ_i, diag σ²_i) / N. With fewer codes
than dimensions S is rank-deficient in the μ part; the σ² diagonal keeps it positive definite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SAMPLE_SOURCES", "AggregatePosterior", "latent_samples"]

SAMPLE_SOURCES = ("prior", "aggregate_posterior")


@dataclass
class AggregatePosterior:
    """N(mean, covariance) fitted to posterior means (N, D) and log-variances (N, D)."""

    mean: np.ndarray
    covariance: np.ndarray

    @classmethod
    def fit(cls, posterior_means: np.ndarray, posterior_logvars: np.ndarray | None = None) -> AggregatePosterior:
        """Moment-match the mixture of the N posteriors; needs N ≥ 2 codes."""
        means = np.asarray(posterior_means, np.float64)
        if means.ndim != 2 or len(means) < 2:
            raise ValueError(f"aggregate posterior: need (N ≥ 2, D) posterior means, got shape {means.shape}")
        covariance = np.cov(means, rowvar=False).reshape(means.shape[1], means.shape[1])
        if posterior_logvars is not None:
            covariance = covariance + np.diag(np.exp(np.asarray(posterior_logvars, np.float64)).mean(axis=0))
        return cls(means.mean(axis=0), covariance)

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """(count, D) float32 codes z ~ N(mean, covariance)."""
        eigenvalues, eigenvectors = np.linalg.eigh(self.covariance)
        scale = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
        return (self.mean + rng.standard_normal((count, len(self.mean))) @ scale.T).astype(np.float32)


def latent_samples(source: str, count: int, latent_size: int, rng: np.random.Generator,
                   posterior_means: np.ndarray | None = None, posterior_logvars: np.ndarray | None = None) -> np.ndarray:
    """(count, latent_size) codes from ``source``: ``prior`` N(0, I) or ``aggregate_posterior`` (fit above).

    Falls back to nothing: asking for the aggregate posterior without at least two codes is an error.
    """
    if source == "prior":
        return rng.standard_normal((count, latent_size)).astype(np.float32)
    if source == "aggregate_posterior":
        if posterior_means is None:
            raise ValueError("evaluate.sample_from 'aggregate_posterior' needs the embedded posterior means")
        return AggregatePosterior.fit(posterior_means, posterior_logvars).sample(count, rng)
    raise ValueError(f"evaluate.sample_from: expected one of {SAMPLE_SOURCES}, got {source!r}")
