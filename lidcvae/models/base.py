"""What every VAE in lidcvae is: an encoder to (mean, log-variance), a decoder, and a likelihood.

Training, embedding and evaluation (ELBO, IWAE) only use this interface, so the 3D CT model and the
MNIST model go through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["VAEOutput", "VAE", "reparameterize"]


@dataclass
class VAEOutput:
    """One forward pass.

    Attributes:
        decoded: (B, *event_shape) decoder output: the mean for a Gaussian decoder, logits for a
            Bernoulli decoder.
        posterior_mean: (B, D) mean of q(z|x).
        posterior_logvar: (B, D) log-variance of q(z|x), already clamped to a safe range.
        z: (B, D) the latent code fed to the decoder.
    """

    decoded: torch.Tensor
    posterior_mean: torch.Tensor
    posterior_logvar: torch.Tensor
    z: torch.Tensor


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """z = μ + σ·ε with ε ~ N(0, I) (or the given ``noise``), shapes (..., D)."""
    if noise is None:
        noise = torch.randn_like(mean)
    return mean + torch.exp(0.5 * logvar) * noise


class VAE(nn.Module):
    """Base class: subclasses implement ``encode``, ``decode`` and ``log_likelihood``.

    Attributes:
        latent_size: D, the dimension of z.
        event_shape: shape of one input sample without the batch axis, e.g. (1, 64, 64, 64).
        auxiliary_term: what ``auxiliary_log_likelihood`` adds to the training loss, in words for the
            training log; None when it adds nothing.
    """

    latent_size: int
    event_shape: tuple[int, ...]
    auxiliary_term: str | None = None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, *event_shape) → posterior mean and log-variance, each (B, D)."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) → decoder output (B, *event_shape)."""
        raise NotImplementedError

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats, summed over every element of a sample, normalising constant included: (B,)."""
        raise NotImplementedError

    def auxiliary_log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log-likelihood of any summary of x the model also decodes from z, nats, (B,): the training loss
        counts it (``lidcvae.train.step.loss_terms``), the evaluation's ELBO and IWAE do not. None here: zeros."""
        return x.new_zeros(x.shape[0], dtype=torch.float32)

    def mean_image(self, decoded: torch.Tensor) -> torch.Tensor:
        """The decoder's mean in input space (identity for Gaussian, sigmoid for Bernoulli)."""
        return decoded

    def forward(self, x: torch.Tensor, sample: bool = True) -> VAEOutput:
        """Encode, draw z (or take the mean when ``sample`` is False), decode."""
        mean, logvar = self.encode(x)
        z = reparameterize(mean, logvar) if sample else mean
        return VAEOutput(self.decode(z), mean, logvar, z)
