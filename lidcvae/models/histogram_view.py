"""The nodule's density histogram as a second view the decoder reconstructs from z.

The image likelihood pays for a voxel's error the same whatever the voxel means to a reader. A margin's
blur (in-plane σ 0.3–1.5 mm) or a ground-glass shift of 100 HU over a 5 mm nodule costs the decoder a
few squared errors among 65,536, so the ELBO on 89 training nodules lets the codes drop them
(benchmarks/RESULTS.md: the untrained model reads margin better than the trained one). Those are exactly
what the density distribution inside the nodule and at its edge shows, the distribution radiomics'
first-order features summarise.

``HistogramView`` makes that distribution part of what the VAE must explain: z also decodes, through one
linear layer, the nodule's soft histogram over the consensus mask and over its edge band (fixed Gaussian
bins evenly over the HU window), with a Gaussian likelihood whose σ² is calibrated like the image's.
The model is then one of the pair (image, histogram): p(x, h | z) = p(x | z) p(h | z), and the training
loss is the negative ELBO of that pair, log p(x, h) ≥ E_q[log p(x|z) + λ log p(h|z)] − KL for λ = 1
(λ > 1 counts the histogram as λ independent observations). The reported ELBO and IWAE of
``lidcvae.evaluate`` stay bounds on the image alone. The decoder is linear so that what it needs of z is
linear in z, as the probes that read the codes are.
"""

from __future__ import annotations

import torch
from torch import nn

from lidcvae.losses import gaussian_log_likelihood
from lidcvae.models.pooling import edge_band, masked_soft_histogram

__all__ = ["HistogramView", "NoHistogramView"]


class HistogramView(nn.Module):
    """z → the nodule's density histogram over the mask and its edge band, and its log-likelihood.

    Args:
        latent_size: D.
        bins: K fixed Gaussian bins, centres evenly over [0, 1] (the HU window), width the spacing.
        weight: λ, how many observations the histogram counts as (1 = the joint ELBO).
        sigma: the histogram's σ² (a ``CalibratedSigma`` with one channel).
    """

    def __init__(self, latent_size: int, bins: int, weight: float, sigma: nn.Module) -> None:
        super().__init__()
        if bins < 2:
            raise ValueError(f"model.histogram_view.bins: expected at least 2, got {bins}")
        self.register_buffer("centres", torch.linspace(0.0, 1.0, bins))
        self.register_buffer("widths", torch.full((bins,), 1.0 / (bins - 1)))
        self.weight = weight
        self.sigma = sigma
        self.decoder = nn.Linear(latent_size, 2 * bins)

    def histogram(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, S, S, S) image in window units and 0/1 mask → (B, 2K): each bin's mean membership over the
        mask (about the share of its voxels near that bin's density; neighbouring bins overlap), then over
        the edge band."""
        image, mask = x[:, :1].float(), x[:, 1:2].float()
        return masked_soft_histogram(image, self.centres, self.widths, (mask, edge_band(mask)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) → the decoded histogram (B, 2K)."""
        return self.decoder(z)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """λ·log N(h(x); decoder(z), σ²I) summed over the 2K bins, nats, (B,); float32."""
        target, decoded = self.histogram(x), self(z.float()).float()
        return self.weight * gaussian_log_likelihood(target, decoded, self.sigma(target, decoded))


class NoHistogramView(nn.Module):
    """``model.histogram_view.enabled: false``: no second view, its log-likelihood 0."""

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Zeros, (B,) float32."""
        return x.new_zeros(x.shape[0], dtype=torch.float32)
