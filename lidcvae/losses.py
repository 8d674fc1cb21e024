"""Negative ELBO pieces, per sample in nats (Kingma & Welling 2014, arXiv 1312.6114, appendix B)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["gaussian_log_likelihood", "bernoulli_log_likelihood", "kl_standard_normal", "kl_per_dimension", "free_bits_kl",
           "negative_elbo"]

_LOG_2PI = math.log(2.0 * math.pi)


def _sum_per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(start_dim=1).sum(dim=1)


def gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_sigma2: torch.Tensor | float, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """log N(x; mean, σ²I) summed over elements: −Σ[w(x−μ)²/(2σ²) + ½log σ² + ½log 2π]; (B, ...) → (B,).

    ``weight`` w (broadcastable to x, every w ≥ 1; None = 1) scales each element's squared error. With
    w ≥ 1 the weighted value is ≤ the unweighted log-likelihood, so an ELBO built on it stays a lower
    bound on log p(x) (a looser one); it equals the log-likelihood of a decoder with per-element
    variance σ²/w up to the constant −½Σ log w.
    """
    log_sigma2 = torch.as_tensor(log_sigma2, dtype=x.dtype, device=x.device)
    squared_error = (x - mean) ** 2
    if weight is not None:
        squared_error = squared_error * weight
    per_element = 0.5 * (squared_error * torch.exp(-log_sigma2) + log_sigma2 + _LOG_2PI)
    return -_sum_per_sample(per_element.expand_as(squared_error))


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x; sigmoid(logits)) summed over elements = −BCE(sum); (B, ...) → (B,)."""
    return -_sum_per_sample(F.binary_cross_entropy_with_logits(logits, x, reduction="none"))


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½Σ(σ² + μ² − 1 − log σ²) over latent dims; (B, D) → (B,)."""
    return kl_per_dimension(mean, logvar).sum(dim=1)


def kl_per_dimension(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """½(σ² + μ² − 1 − log σ²) of each latent dimension, nats; (B, D) → (B, D)."""
    return 0.5 * (torch.exp(logvar) + mean**2 - 1.0 - logvar)


def free_bits_kl(mean: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Σ_d max(λ, E_batch KL_d): the KL with every dimension's batch mean floored at λ nats (Kingma et
    al. 2016, arXiv 1606.04934); a scalar. A dimension below λ gets no gradient pulling it to the prior."""
    return kl_per_dimension(mean, logvar).mean(dim=0).clamp(min=free_bits).sum()


def negative_elbo(
    log_likelihood: torch.Tensor, kl: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch means of (−log p(x|z) + β·KL, −log p(x|z), KL), each a scalar in nats per sample; β is
    ``train.beta`` (1: the negative ELBO)."""
    reconstruction = -log_likelihood.mean()
    kl_mean = kl.mean()
    return reconstruction + beta * kl_mean, reconstruction, kl_mean
