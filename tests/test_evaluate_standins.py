"""Small stand-in VAEs for the embed/evaluate tests (and checks that they honour the VAE interface).

Other test files import these; they stand in for the trained ConvVAE3d / MLPVAE so that properties of
the evaluation (IWAE bounds, active units, frozen batch norm) can be tested on models whose answers
are known.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lidcvae.losses import gaussian_log_likelihood
from lidcvae.models.base import VAE

__all__ = ["TinyLinearVAE", "InputIgnoringVAE", "synthetic_table", "exact_linear_gaussian_log_likelihood"]


class TinyLinearVAE(VAE):
    """Linear encoder and decoder, Gaussian likelihood with fixed σ²; optional batch norm on the mean."""

    def __init__(self, event_shape=(1, 4, 4, 4), latent_size: int = 3, log_sigma2: float = math.log(0.1),
                 batch_norm: bool = False, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.event_shape, self.latent_size, self.log_sigma2 = tuple(event_shape), latent_size, log_sigma2
        features = int(np.prod(event_shape))
        self.encoder = nn.Linear(features, 2 * latent_size)
        self.mean_norm = nn.BatchNorm1d(latent_size) if batch_norm else nn.Identity()
        self.decoder = nn.Linear(latent_size, features)

    def encode(self, x):
        mean, logvar = self.encoder(x.flatten(1)).chunk(2, dim=1)
        return self.mean_norm(mean), logvar.clamp(-6.0, 2.0)

    def decode(self, z):
        return self.decoder(z).reshape(len(z), *self.event_shape)

    def log_likelihood(self, x, decoded):
        return gaussian_log_likelihood(x, decoded, self.log_sigma2)


class InputIgnoringVAE(TinyLinearVAE):
    """A collapsed model: the posterior is N(0, I) whatever the input, the decoder a constant-ish map."""

    def encode(self, x):
        zeros = torch.zeros(len(x), self.latent_size)
        return zeros, zeros.clone()


def exact_linear_gaussian_log_likelihood(model: TinyLinearVAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) of the linear-Gaussian decoder in closed form: x ~ N(b, WWᵀ + σ²I); (B,)."""
    weight, bias = model.decoder.weight.double(), model.decoder.bias.double()
    covariance = weight @ weight.T + math.exp(model.log_sigma2) * torch.eye(len(bias), dtype=torch.float64)
    distribution = torch.distributions.MultivariateNormal(bias, covariance_matrix=covariance)
    return distribution.log_prob(x.flatten(1).double()).float()


def synthetic_table(count: int, patients: int, seed: int = 0) -> pd.DataFrame:
    """A manifest-like table: nodule_id, patient_id, label (Int64 with some <NA>), diameter, split."""
    rng = np.random.default_rng(seed)
    patient = [f"LIDC-IDRI-{1 + i % patients:04d}" for i in range(count)]
    labels = pd.array(rng.integers(0, 2, count), dtype="Int64")
    labels[::7] = pd.NA
    return pd.DataFrame({
        "nodule_id": [f"{p}_s0001_n{i:02d}" for i, p in enumerate(patient)],
        "patient_id": patient,
        "label": labels,
        "consensus_diameter_mm": rng.uniform(4, 30, count),
        "split": np.array(["train", "val", "test"])[np.arange(count) % 3],
    })


@pytest.mark.parametrize("event_shape", [(1, 4, 4, 4), (1, 6, 6)])
def test_standin_vae_shapes_follow_the_interface(event_shape):
    model = TinyLinearVAE(event_shape).eval()
    x = torch.rand(5, *event_shape)
    output = model(x, sample=False)
    assert output.decoded.shape == x.shape
    assert output.posterior_mean.shape == output.posterior_logvar.shape == (5, 3)
    assert model.log_likelihood(x, output.decoded).shape == (5,)


def test_exact_log_likelihood_is_a_density_of_the_right_scale():
    model = TinyLinearVAE((1, 2, 2), latent_size=1).eval()
    x = torch.rand(3, 1, 2, 2)
    assert torch.isfinite(exact_linear_gaussian_log_likelihood(model, x)).all()


def stand_in_trained(model: VAE, input_size: int, train: dict | None = None):
    """A ``TrainedModel`` around a stand-in VAE: a one-channel CT model fed the whole ``input_size``³ crop of
    64³ @ 1 mm consensus patches, windowed to [-1000, 400] HU, trained with ``train`` (schema defaults)."""
    from pathlib import Path

    import lidcvae
    from lidcvae.data.model_input import ModelInput
    from lidcvae.train.checkpoint import TrainedModel
    from lidcvae.train.config import TrainConfig

    record = ModelInput("lidc", (1, input_size, input_size, input_size), lidcvae.__version__, 64, 1.0, "consensus",
                        input_size, "crop", (-1000.0, 400.0), False, None, -860.0)
    return TrainedModel(model, record, None, TrainConfig.from_mapping(train or {}), {}, 1, 1, Path("stand-in.pt"))
