"""The MLP VAE: its negative ELBO against a hand computation, the registry, and learning on real digits."""

from __future__ import annotations

import math

import pytest
import torch

from lidcvae.data.mnist import MnistConfig, mnist_split
from lidcvae.losses import kl_standard_normal, negative_elbo
from lidcvae.config import ConfigError
from lidcvae.models import ModelConfig, build_model
from lidcvae.models.config import ConvVAE3dConfig
from lidcvae.models.mlp import MLPVAE, MLPVAEConfig


def digits_of(data_dir, split, **keys):
    """One split of the idx files in ``data_dir``; ``keys`` override the ``mnist`` section's schema defaults."""
    return mnist_split(MnistConfig.from_mapping({"data_dir": str(data_dir), "download": False, **keys}), split)


def _tiny_model(likelihood: str) -> MLPVAE:
    """2 pixels, 2 hidden units, 1 latent; weights picked so every value below is easy by hand."""
    model = MLPVAE(MLPVAEConfig.from_mapping({"name": "mlp_vae", "event_shape": [1, 1, 2], "hidden_sizes": [2], "latent_size": 1,
                                             "likelihood": likelihood, "sigma": {"log_sigma2": 0.0}}))
    with torch.no_grad():
        encoder_layer, (decoder_hidden, _, decoder_out) = model.encoder[1][0], model.decoder
        for layer in (encoder_layer, model.to_mean, model.to_logvar, decoder_hidden, decoder_out):
            layer.bias.zero_()
        encoder_layer.weight.copy_(torch.eye(2))  # h = relu(x)
        model.to_mean.weight.copy_(torch.tensor([[1.0, 1.0]]))  # μ = h₁ + h₂
        model.to_logvar.bias.fill_(math.log(0.5))  # σ² = 0.5
        model.to_logvar.weight.zero_()
        decoder_hidden.weight.copy_(torch.tensor([[1.0], [-1.0]]))  # relu(z), relu(−z)
        decoder_out.weight.copy_(torch.eye(2))
    return model.eval()


@torch.no_grad()
def _negative_elbo_at_posterior_mean(model: MLPVAE, x: torch.Tensor) -> float:
    output = model(x, sample=False)
    log_likelihood = model.log_likelihood(x, output.decoded)
    kl = kl_standard_normal(output.posterior_mean, output.posterior_logvar)
    return float(negative_elbo(log_likelihood, kl, beta=1.0)[0])


# x = (0.25, 1) → h = (0.25, 1) → μ = 1.25, σ² = 0.5 → z = μ → decoder output (1.25, 0).
KL_BY_HAND = 0.5 * (0.5 + 1.25**2 - 1.0 - math.log(0.5))
BERNOULLI_BY_HAND = -(0.25 * math.log(1 / (1 + math.exp(-1.25))) + 0.75 * math.log(1 / (1 + math.exp(1.25))) + math.log(0.5))
GAUSSIAN_BY_HAND = 0.5 * ((0.25 - 1.25) ** 2 + (1.0 - 0.0) ** 2) + math.log(2 * math.pi)
HAND_CASES = [("bernoulli", BERNOULLI_BY_HAND + KL_BY_HAND, 2.760400), ("gaussian", GAUSSIAN_BY_HAND + KL_BY_HAND, 3.715701)]


@pytest.mark.parametrize("likelihood, by_hand, rounded", HAND_CASES, ids=[c[0] for c in HAND_CASES])
def test_negative_elbo_equals_hand_computation(likelihood, by_hand, rounded):
    model = _tiny_model(likelihood)
    x = torch.tensor([[[[0.25, 1.0]]]])
    assert by_hand == pytest.approx(rounded, abs=1e-6)
    assert _negative_elbo_at_posterior_mean(model, x) == pytest.approx(by_hand, abs=1e-5)


def test_bernoulli_mean_image_is_sigmoid_of_logits():
    model = _tiny_model("bernoulli")
    decoded = model.decode(torch.tensor([[1.25]]))
    torch.testing.assert_close(model.mean_image(decoded), torch.tensor([[[[1 / (1 + math.exp(-1.25)), 0.5]]]]))
    assert torch.equal(_tiny_model("gaussian").mean_image(decoded), decoded)


SIZE_CASES = [(400, 20, 652_824), (200, 20, 326_824), (400, 10, 640_804)]


@pytest.mark.parametrize("hidden, latent, parameters", SIZE_CASES)
def test_registry_builds_mlp_of_configured_size(hidden, latent, parameters):
    model = build_model(ModelConfig.from_mapping({"name": "mlp_vae", "hidden_sizes": [hidden], "latent_size": latent}))
    assert isinstance(model, MLPVAE)
    assert sum(p.numel() for p in model.parameters()) == parameters
    output = model(torch.rand(3, 1, 28, 28))
    assert output.decoded.shape == (3, 1, 28, 28) and output.posterior_mean.shape == (3, latent)


def test_two_hidden_layers_mirror_in_decoder():
    model = build_model(ModelConfig.from_mapping({"name": "mlp_vae", "hidden_sizes": [400, 400], "latent_size": 20}))
    widths = [layer.out_features for layer in model.decoder if isinstance(layer, torch.nn.Linear)]
    assert widths == [400, 400, 784]


def test_gaussian_sigma_comes_from_model_sigma_section():
    model = build_model(ModelConfig.from_mapping({"name": "mlp_vae", "likelihood": "gaussian", "sigma": {"log_sigma2": -2.0}}))
    x, mean = torch.zeros(1, 1, 28, 28), torch.full((1, 1, 28, 28), 0.5)
    expected = -784 * (0.5 * 0.25 * math.exp(2.0) + 0.5 * (-2.0) + 0.5 * math.log(2 * math.pi))
    assert float(model.log_likelihood(x, mean)[0]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name, foreign", [("mlp_vae", {"channels": [16, 32]}), ("mlp_vae", {"mask_pooling": {"enabled": False}}),
                                           ("mlp_vae", {"sigma": {"mode": "fixed"}}), ("conv_vae3d", {"hidden_sizes": [400]}),
                                           ("conv_vae3d", {"likelihood": "bernoulli"}), ("conv_vae3d", {"event_shape": [1, 28, 28]})])
def test_a_key_of_the_other_model_is_refused_by_name(name, foreign):
    """One model section, keyed by name: each model takes only its own keys."""
    dotted = f"model.{next(iter(foreign))}" + (".mode" if "sigma" in foreign else "")
    with pytest.raises(ConfigError, match=rf"key '{dotted}': unknown key"):
        ModelConfig.from_mapping({"name": name, **foreign})


def test_the_section_type_follows_the_name():
    assert type(ModelConfig.from_mapping({"name": "mlp_vae"})) is MLPVAEConfig
    assert type(ModelConfig.from_mapping({})) is ConvVAE3dConfig  # the schema's default name
    with pytest.raises(ConfigError, match="model.name: 'mlp_vae' is built by MLPVAEConfig, not ConvVAE3dConfig"):
        ConvVAE3dConfig.from_mapping({"name": "mlp_vae"})


def test_unknown_likelihood_is_rejected():
    with pytest.raises(ValueError, match="model.likelihood"):
        build_model(ModelConfig.from_mapping({"name": "mlp_vae", "likelihood": "poisson"}))


def _test_loss(model: MLPVAE, images: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        output = model(images)
        kl = kl_standard_normal(output.posterior_mean, output.posterior_logvar)
        loss = float(negative_elbo(model.log_likelihood(images, output.decoded), kl, beta=1.0)[0])
    model.train()
    return loss


def _fit(model, optimizer, train: torch.Tensor, steps: int, batch_size: int) -> None:
    """Plain negative-ELBO steps on random batches of ``train`` (N, 1, 28, 28)."""
    for _ in range(steps):
        batch = train[torch.randint(len(train), (batch_size,))]
        output = model(batch)
        kl = kl_standard_normal(output.posterior_mean, output.posterior_logvar)
        loss = negative_elbo(model.log_likelihood(batch, output.decoded), kl, beta=1.0)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_few_hundred_steps_on_real_digits_lower_test_loss(mnist_dir):
    torch.manual_seed(0)
    digits = {"train_limit": 8000, "test_limit": 2000}  # a few thousand: no need to read all 70,000
    train, test = digits_of(mnist_dir, "train", **digits).images, digits_of(mnist_dir, "test", **digits).images
    model = build_model(ModelConfig.from_mapping({"name": "mlp_vae", "latent_size": 20, "likelihood": "bernoulli"}))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = _test_loss(model, test)
    _fit(model, optimizer, train, steps=300, batch_size=128)
    end = _test_loss(model, test)
    assert start > 500  # an untrained Bernoulli decoder: ≈ 784·log 2 nats
    assert end < 160, f"test loss {start:.1f} → {end:.1f} nats after 300 steps"


def test_iwae_on_real_digits_is_not_below_the_one_sample_bound(mnist_dir):
    """The seeds' "MLE" is the IWAE estimate: with k = 100 it must sit above k = 1 on average (a quick
    model: 200 steps on 1,000 digits, scored on 100)."""
    from lidcvae.evaluate.likelihood import nested_iwae_log_likelihoods

    torch.manual_seed(0)
    digits = {"train_limit": 1000, "test_limit": 100}
    train, test = digits_of(mnist_dir, "train", **digits).images, digits_of(mnist_dir, "test", **digits).images
    model = build_model(ModelConfig.from_mapping({"name": "mlp_vae", "hidden_sizes": [64], "latent_size": 8, "likelihood": "bernoulli"}))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    _fit(model, optimizer, train, steps=200, batch_size=64)
    model.eval()
    estimates = nested_iwae_log_likelihoods(model, test, [1, 100], chunk_size=50, generator=torch.Generator().manual_seed(0))
    k1, k100 = float(estimates[1].mean()), float(estimates[100].mean())
    assert -250 < k1 < k100, (k1, k100)
    assert k100 - k1 > 1.0, "100 importance samples should tighten a trained model's bound by nats, not noise"
