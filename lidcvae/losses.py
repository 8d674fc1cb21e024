"""Negative ELBO pieces, per sample in nats (Kingma & Welling 2014, arXiv 1312.6114, appendix B)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["gaussian_log_likelihood", "bernoulli_log_likelihood", "kl_standard_normal", "negative_elbo"]

_LOG_2PI = math.log(2.0 * math.pi)


def _sum_per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(start_dim=1).sum(dim=1)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_sigma2: torch.Tensor | float) -> torch.Tensor:
    """log N(x; mean, σ²I) summed over elements: −Σ[(x−μ)²/(2σ²) + ½log σ² + ½log 2π]; (B, ...) → (B,)."""
    log_sigma2 = torch.as_tensor(log_sigma2, dtype=x.dtype, device=x.device)
    squared_error = (x - mean) ** 2
    per_element = 0.5 * (squared_error * torch.exp(-log_sigma2) + log_sigma2 + _LOG_2PI)
    return -_sum_per_sample(per_element.expand_as(squared_error))


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x; sigmoid(logits)) summed over elements = −BCE(sum); (B, ...) → (B,)."""
    return -_sum_per_sample(F.binary_cross_entropy_with_logits(logits, x, reduction="none"))


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½Σ(σ² + μ² − 1 − log σ²) over latent dims; (B, D) → (B,)."""
    return 0.5 * (torch.exp(logvar) + mean**2 - 1.0 - logvar).sum(dim=1)


def negative_elbo(
    log_likelihood: torch.Tensor, kl: torch.Tensor, beta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch means of (−log p(x|z) + β·KL, −log p(x|z), KL), each a scalar in nats per sample."""
    reconstruction = -log_likelihood.mean()
    kl_mean = kl.mean()
    return reconstruction + beta * kl_mean, reconstruction, kl_mean
