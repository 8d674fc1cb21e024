"""ELBO and the importance-weighted (IWAE) log-likelihood estimate, in nats per sample.

IWAE: Burda, Grosse & Salakhutdinov 2016 (arXiv 1509.00519), eq. 8:
log p(x) ≥ E[log 1/k Σᵢ p(x, zᵢ) / q(zᵢ|x)], zᵢ ~ q(z|x), tight as k → ∞; with k = 1 it is the ELBO.
The k importance samples are drawn in chunks and folded into a running logsumexp, so memory depends on
the chunk size, never on k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lidcvae.losses import kl_standard_normal
from lidcvae.models.base import VAE, reparameterize

__all__ = [
    "ElboTerms",
    "elbo_terms",
    "log_importance_weights",
    "single_sample_elbo",
    "iwae_log_likelihood",
    "nested_iwae_log_likelihoods",
]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class ElboTerms:
    """Per-sample ELBO pieces, each (B,) in nats: ``elbo = log_likelihood − kl``."""

    log_likelihood: torch.Tensor
    kl: torch.Tensor

    @property
    def elbo(self) -> torch.Tensor:
        return self.log_likelihood - self.kl


def _standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last axis: (..., D) → (...)."""
    return -0.5 * (z**2 + _LOG_2PI).sum(dim=-1)


def _diagonal_normal_log_density(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag exp(logvar)) summed over the last axis: (..., D) → (...)."""
    return -0.5 * (((z - mean) ** 2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(dim=-1)


@torch.no_grad()
def elbo_terms(model: VAE, x: torch.Tensor, noise: torch.Tensor | None = None) -> ElboTerms:
    """One-sample reconstruction term and closed-form KL (the estimate training reports).

    Args:
        model: a VAE in eval mode.
        x: (B, *event_shape) inputs in model scale.
        noise: optional (B, D) standard-normal draw for z; fresh noise when None.
    """
    mean, logvar = model.encode(x)
    z = reparameterize(mean, logvar, noise)
    return ElboTerms(model.log_likelihood(x, model.decode(z)), kl_standard_normal(mean, logvar))


def log_importance_weights(
    model: VAE, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """log w = log p(x|z) + log p(z) − log q(z|x) for z = μ + σ·ε.

    Args:
        x: (B, *event_shape); mean, logvar: (B, D) posterior parameters of ``x``.
        noise: (S, B, D) standard-normal draws, S importance samples per input.

    Returns:
        (S, B) log importance weights in nats.
    """
    samples, batch = noise.shape[:2]
    z = reparameterize(mean, logvar, noise)
    decoded = model.decode(z.reshape(samples * batch, -1))
    x_repeated = x.unsqueeze(0).expand(samples, *x.shape).reshape(samples * batch, *x.shape[1:])
    log_likelihood = model.log_likelihood(x_repeated, decoded).reshape(samples, batch)
    return log_likelihood + _standard_normal_log_density(z) - _diagonal_normal_log_density(z, mean, logvar)


@torch.no_grad()
def single_sample_elbo(model: VAE, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The Monte-Carlo ELBO log p(x|z) + log p(z) − log q(z|x) for one draw ``noise`` (B, D): (B,)."""
    mean, logvar = model.encode(x)
    return log_importance_weights(model, x, mean, logvar, noise.unsqueeze(0))[0]


def _noise_chunks(
    shape: tuple[int, int], samples: int, chunk_size: int, generator: torch.Generator | None, device: torch.device
):
    """Yield standard-normal draws (s, B, D) with Σs = ``samples``, s ≤ ``chunk_size``."""
    for start in range(0, samples, chunk_size):
        count = min(chunk_size, samples - start)
        yield torch.randn((count, *shape), generator=generator, device=device)


@torch.no_grad()
def iwae_log_likelihood(
    model: VAE,
    x: torch.Tensor,
    samples: int,
    chunk_size: int,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """IWAE estimate of log p(x): logsumexp over k importance weights − log k, per input.

    Args:
        model: a VAE in eval mode.
        x: (B, *event_shape) inputs in model scale.
        samples: k, the number of importance samples (``evaluate.iwae_samples`` in a run).
        chunk_size: importance samples decoded together, memory ∝ chunk_size · B (``evaluate.iwae_chunk_size``).
        generator: torch random generator for reproducible draws (ignored when ``noise`` is given).
        noise: optional fixed draws (k, B, D); overrides ``samples``.

    Returns:
        (B,) log-likelihood estimates in nats.
    """
    mean, logvar = model.encode(x)
    chunks = noise.split(chunk_size) if noise is not None else _noise_chunks(
        tuple(mean.shape), samples, chunk_size, generator, mean.device
    )
    total = noise.shape[0] if noise is not None else samples
    running = torch.full((x.shape[0],), -math.inf, dtype=mean.dtype, device=mean.device)
    for chunk in chunks:
        log_weights = log_importance_weights(model, x, mean, logvar, chunk)
        running = torch.logaddexp(running, torch.logsumexp(log_weights, dim=0))
    return running - math.log(total)


@torch.no_grad()
def nested_iwae_log_likelihoods(
    model: VAE,
    x: torch.Tensor,
    sample_counts: tuple[int, ...] | list[int],
    chunk_size: int,
    generator: torch.Generator | None = None,
) -> dict[int, torch.Tensor]:
    """IWAE estimates for several k from one set of draws: IWAE_k uses the first k of max(k) samples.

    The largest k costs what ``iwae_log_likelihood`` costs for it (and, with the same generator state,
    returns the same numbers); the smaller ones come free. Nested subsets keep E[IWAE_k] non-decreasing
    in k (Burda et al. 2016, theorem 1), so the estimates show how far the bound tightens with k.

    Args:
        model: a VAE in eval mode.
        x: (B, *event_shape) inputs in model scale.
        sample_counts: the k values, each ≥ 1.
        chunk_size: importance samples decoded together.
        generator: torch random generator for reproducible draws.

    Returns:
        {k: (B,) log-likelihood estimates in nats}, for every k in ``sample_counts``.
    """
    wanted = sorted(set(int(k) for k in sample_counts))
    if not wanted or wanted[0] < 1:
        raise ValueError(f"sample_counts must be positive integers, got {list(sample_counts)}")
    mean, logvar = model.encode(x)
    running = torch.full((x.shape[0],), -math.inf, dtype=mean.dtype, device=mean.device)
    estimates, drawn = {}, 0
    for chunk in _noise_chunks(tuple(mean.shape), wanted[-1], chunk_size, generator, mean.device):
        log_weights = log_importance_weights(model, x, mean, logvar, chunk)
        for k in wanted:
            if drawn < k <= drawn + len(chunk):
                prefix = torch.logaddexp(running, torch.logsumexp(log_weights[: k - drawn], dim=0))
                estimates[k] = prefix - math.log(k)
        running = torch.logaddexp(running, torch.logsumexp(log_weights, dim=0))
        drawn += len(chunk)
    return {k: estimates[int(k)] for k in sample_counts}
