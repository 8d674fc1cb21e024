"""The MNIST VAE: a multilayer perceptron, 784-400-20 by default (Kingma & Welling 2014, arXiv 1312.6114).

Same shape as pytorch/examples ``vae/main.py``: one hidden ReLU layer each side. The decoder is a
Bernoulli over pixels (binary cross-entropy summed over the 784 pixels, the seeds' and the paper's
choice for MNIST) or a Gaussian with fixed variance (squared error / σ² plus the normalising constant).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lidcvae.losses import bernoulli_log_likelihood, gaussian_log_likelihood
from lidcvae.models.base import VAE
from lidcvae.models.config import MLPVAEConfig

__all__ = ["MLPVAEConfig", "MLPVAE", "LIKELIHOODS"]

LIKELIHOODS = ("bernoulli", "gaussian")
# q(z|x) variance kept in [e^-30, e^20]: exp(logvar) neither underflows nor overflows in float32.
_LOGVAR_RANGE = (-30.0, 20.0)
MNIST_EVENT_SHAPE = (1, 28, 28)


def _perceptron(widths: list[int]) -> nn.Sequential:
    """Linear layers between consecutive ``widths``, ReLU after each but the last."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPVAE(VAE):
    """x (B, 1, 28, 28) → 784 → ReLU(hidden…) → (μ, log σ²) (B, D); z → ReLU(…hidden) → 784 → x's shape.

    Args:
        config: the typed ``model`` section (``name: mlp_vae``): sizes and decoder likelihood; a null
            ``event_shape`` is one MNIST digit, (1, 28, 28).
    """

    def __init__(self, config: MLPVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.event_shape = tuple(config.event_shape or MNIST_EVENT_SHAPE)
        self.latent_size = config.latent_size
        self.log_sigma2 = config.sigma.log_sigma2
        pixels, hidden = math.prod(self.event_shape), list(config.hidden_sizes)
        self.encoder = nn.Sequential(nn.Flatten(), _perceptron([pixels, *hidden]), nn.ReLU())
        self.to_mean = nn.Linear(hidden[-1], self.latent_size)
        self.to_logvar = nn.Linear(hidden[-1], self.latent_size)
        self.decoder = _perceptron([self.latent_size, *reversed(hidden), pixels])

    @classmethod
    def from_config(cls, model: MLPVAEConfig) -> MLPVAE:
        """Build from the typed ``model`` section (``name: mlp_vae``, ``hidden_sizes``, ``latent_size`` ...)."""
        return cls(model)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, *event_shape) in [0, 1] → posterior mean and log-variance, each (B, D)."""
        hidden = self.encoder(x)
        return self.to_mean(hidden), self.to_logvar(hidden).clamp(*_LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) → (B, *event_shape): pixel logits (Bernoulli) or pixel means (Gaussian)."""
        return self.decoder(z).view(-1, *self.event_shape)

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over pixels, nats, (B,): −BCE(sum) or the Gaussian log-density."""
        if self.config.likelihood == "bernoulli":
            return bernoulli_log_likelihood(x, decoded)
        return gaussian_log_likelihood(x, decoded, self.log_sigma2)

    def mean_image(self, decoded: torch.Tensor) -> torch.Tensor:
        """Decoder mean in [0, 1] image space: sigmoid of the logits, or the Gaussian mean itself."""
        return torch.sigmoid(decoded) if self.config.likelihood == "bernoulli" else decoded
