"""ConvVAE3d: shapes, the Gaussian reconstruction term, the calibrated σ, BN-VAE, and that it learns."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from test_train_data import sample_manifest, tiny_source  # noqa: F401  (fixture)

from lidcvae.config import ConfigError, validate_config
from lidcvae.data import load_split
from lidcvae.losses import kl_standard_normal, negative_elbo
from lidcvae.models import ModelConfig, build_model
from lidcvae.models.conv3d import ConvVAE3d

TINY = {"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2],
        "mask_channel": False, "mask_pooling": {"enabled": False}, "histogram_view": {"enabled": False}, "reconstruction_weight": {"kind": "uniform"}}  # one channel, the plain ELBO

SHAPE_CASES = [
    ({**TINY}, (3, 1, 16, 16, 16), 8),
    ({**TINY, "num_res_units": 1, "norm": "instance"}, (2, 1, 16, 16, 16), 8),
    ({**TINY, "input_size": 32, "channels": [4, 8, 16], "strides": [2, 2, 2], "latent_size": 5}, (2, 1, 32, 32, 32), 5),
]


@pytest.mark.parametrize("model_config, input_shape, latent_size", SHAPE_CASES)
def test_shapes_in_eval_mode(model_config: dict, input_shape: tuple, latent_size: int) -> None:
    model = build_model(ModelConfig.from_mapping(model_config)).eval()
    with torch.no_grad():
        output = model(torch.rand(input_shape))
    assert output.decoded.shape == input_shape
    assert output.posterior_mean.shape == output.posterior_logvar.shape == (input_shape[0], latent_size)
    assert model.event_shape == input_shape[1:]


def test_eval_encode_is_deterministic_and_mean_is_used_without_sampling() -> None:
    model = build_model(ModelConfig.from_mapping(TINY)).eval()
    x = torch.rand(2, 1, 16, 16, 16)
    with torch.no_grad():
        first, second = model(x, sample=False), model(x, sample=False)
    assert torch.equal(first.z, first.posterior_mean)
    assert torch.equal(first.decoded, second.decoded)


def test_logvar_is_clamped() -> None:
    model = build_model(ModelConfig.from_mapping({**TINY, "logvar_range": [-1.0, 1.0]})).eval()
    with torch.no_grad():
        model.network.logvar.bias.fill_(50.0)
        _, logvar = model.encode(torch.rand(2, 1, 16, 16, 16))
    assert torch.all(logvar == 1.0)


def test_fixed_sigma_reconstruction_matches_hand_computation() -> None:
    log_sigma2 = math.log(0.04)
    model = build_model(ModelConfig.from_mapping({**TINY, "sigma": {"mode": "fixed", "log_sigma2": log_sigma2}}))
    x = torch.zeros(2, 1, 16, 16, 16)
    decoded = torch.full_like(x, 0.1)
    decoded[1] = 0.3
    n_voxels = 16**3
    expected = torch.tensor([n_voxels * (0.01 / (2 * 0.04) + 0.5 * math.log(2 * math.pi * 0.04)),
                             n_voxels * (0.09 / (2 * 0.04) + 0.5 * math.log(2 * math.pi * 0.04))])
    reconstruction = -model.log_likelihood(x, decoded)
    torch.testing.assert_close(reconstruction, expected, rtol=1e-5, atol=1e-3)
    _, batch_reconstruction, _ = negative_elbo(-reconstruction, torch.zeros(2), beta=1.0)
    assert batch_reconstruction.item() == pytest.approx(expected.mean().item(), rel=1e-5)


def test_kl_is_the_closed_form() -> None:
    mean = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    logvar = torch.tensor([[0.0, math.log(0.5)], [math.log(2.0), 0.0]])
    expected = torch.tensor([0.5 * (0.5 + 1.0 - 1.0 - math.log(0.5)), 0.5 * (2.0 + 4.0 - 1.0 - math.log(2.0)) + 0.5])
    torch.testing.assert_close(kl_standard_normal(mean, logvar), expected)


def test_calibrated_sigma_is_the_batch_mse_and_tracks_a_running_estimate() -> None:
    model = build_model(ModelConfig.from_mapping({**TINY, "sigma": {"mode": "calibrated", "log_sigma2": 0.0, "momentum": 0.5}})).train()
    x = torch.rand(3, 1, 16, 16, 16)
    decoded = x + 0.2 * torch.randn_like(x)
    batch_mse = ((x - decoded) ** 2).mean()
    log_sigma2 = model.log_sigma2(x, decoded)
    torch.testing.assert_close(log_sigma2.exp(), batch_mse)
    # at σ² = MSE the per-voxel term is ½(1 + log 2πσ²)
    expected = x[0].numel() * 0.5 * (1.0 + math.log(2 * math.pi * batch_mse.item()))
    assert -model.log_likelihood(x, decoded).mean().item() == pytest.approx(expected, rel=1e-4)
    # two calls with momentum 0.5 from log σ² = 0: the buffer is ¾ of the way to log MSE
    assert model.sigma.log_sigma2.item() == pytest.approx(0.75 * math.log(batch_mse.item()), rel=1e-4)
    model.eval()
    torch.testing.assert_close(model.log_sigma2(x, decoded), model.sigma.log_sigma2)


def test_calibrated_sigma_gradient_is_detached_from_sigma() -> None:
    model = build_model(ModelConfig.from_mapping({**TINY, "sigma": {"mode": "calibrated"}})).train()
    x = torch.rand(2, 1, 16, 16, 16)
    decoded = torch.rand_like(x, requires_grad=True)
    (-model.log_likelihood(x, decoded).sum()).backward()
    sigma2 = ((x - decoded.detach()) ** 2).mean()
    torch.testing.assert_close(decoded.grad, (decoded.detach() - x) / sigma2)


def test_the_old_sigma_mode_name_learned_still_calibrates_and_logs_a_deprecation(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        model = build_model(ModelConfig.from_mapping({**TINY, "sigma": {"mode": "learned"}})).train()
    assert model.sigma.mode == "calibrated"
    assert "'learned' is deprecated, use 'calibrated'" in caplog.text
    x = torch.rand(2, 1, 16, 16, 16)
    decoded = x + 0.1 * torch.randn_like(x)
    torch.testing.assert_close(model.log_sigma2(x, decoded).exp(), ((x - decoded) ** 2).mean())
    assert validate_config({"model": {"sigma": {"mode": "learned"}}})["model"]["sigma"]["mode"] == "learned"
    with pytest.raises(ConfigError, match="model.sigma.mode"):
        validate_config({"model": {"sigma": {"mode": "trained"}}})


def test_bn_vae_normalises_the_posterior_mean_to_the_fixed_scale() -> None:
    model = build_model(ModelConfig.from_mapping({**TINY, "bn_vae": {"enabled": True, "gamma": 0.7}})).train()
    mean, _ = model.encode(torch.rand(32, 1, 16, 16, 16))
    torch.testing.assert_close(mean.std(dim=0, unbiased=False), torch.full((8,), 0.7), atol=1e-3, rtol=1e-3)
    assert not any("norm.weight" in name for name, _ in model.posterior_norm.named_parameters())


def test_loss_decreases_on_a_fixed_batch_of_real_nodules(sample_manifest) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_mapping(TINY)).train()
    x = load_split(tiny_source(sample_manifest), "train").images  # the sample's nodules, 16³ crops
    assert x.shape[0] >= 2
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        output = model(x)
        total, _, _ = negative_elbo(model.log_likelihood(x, output.decoded),
                                    kl_standard_normal(output.posterior_mean, output.posterior_logvar), beta=1.0)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 2000.0  # measured: ~2,400 → ~-2,300 nats


def test_from_config_reads_every_key() -> None:
    config = {**TINY, "act": ["leakyrelu", {"negative_slope": 0.1}], "decoder_output": "sigmoid",
              "hu_window": [-1200, 600], "logvar_range": [-5, 5]}
    model = ConvVAE3d.from_config(ModelConfig.from_mapping(config)).eval()
    assert model.hu_window == (-1200.0, 600.0) and model.logvar_range == (-5, 5)
    with torch.no_grad():
        decoded = model(torch.rand(2, 1, 16, 16, 16)).decoded
    assert decoded.min() >= 0 and decoded.max() <= 1
    assert "negative_slope=0.1" in repr(model.network)


# Each optional part on and off: a tiny model (8³ input, two levels) builds and runs forward in both.
ALL_ON = {"name": "conv_vae3d", "input_size": 8, "latent_size": 4, "channels": [4, 8], "strides": [2, 2],
          "mask_channel": True, "mask_pooling": {"enabled": True, "levels": [0, 1], "edge": True, "histogram_bins": 4},
          "histogram_view": {"enabled": True, "bins": 4, "weight": 10.0}, "bn_vae": {"enabled": True, "gamma": 0.5},
          "reconstruction_weight": {"kind": "mask"}, "context": {"kind": "nodule"}}
ALL_OFF = {"name": "conv_vae3d", "input_size": 8, "latent_size": 4, "channels": [4, 8], "strides": [2, 2],
           "mask_channel": False, "mask_pooling": {"enabled": False}, "histogram_view": {"enabled": False},
           "bn_vae": {"enabled": False}, "reconstruction_weight": {"kind": "uniform"}, "context": {"kind": "full"}}


@pytest.mark.parametrize("config, channels, parts", [
    (ALL_ON, 2, ("MaskPooledHead", "HistogramView", "FixedScaleBatchNorm")),
    (ALL_OFF, 1, ("NoPooling", "NoHistogramView", "Identity")),
])
def test_every_optional_part_on_or_off_builds_and_runs_forward(config, channels, parts):
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_mapping(config)).train()
    assert tuple(type(getattr(model, name)).__name__ for name in ("mask_pooling", "histogram_view", "posterior_norm")) == parts
    x = torch.rand(3, channels, 8, 8, 8)
    x[:, 1:] = (x[:, 1:] > 0.7).float()  # a 0/1 mask channel when there is one
    output = model(x)
    assert output.decoded.shape == x.shape and output.z.shape == (3, 4)
    auxiliary = model.auxiliary_log_likelihood(x, output.z)
    assert torch.isfinite(model.log_likelihood(x, output.decoded)).all() and torch.isfinite(auxiliary).all()
    assert bool(auxiliary.abs().sum()) == (config is ALL_ON)  # the decoded histogram only when it is on


@pytest.mark.parametrize("part, other_keys", [
    ("mask_pooling", {"enabled": True}),
    ("histogram_view", {"enabled": True}),
    ("reconstruction_weight", {"kind": "mask"}),
])
def test_an_option_that_reads_the_mask_without_the_mask_channel_names_both_keys(part, other_keys):
    """Checked once, when the section is built, not when the model runs."""
    config = {**ALL_OFF, part: other_keys}
    key = "model.reconstruction_weight.kind 'mask'" if part == "reconstruction_weight" else f"model.{part}.enabled"
    with pytest.raises(ConfigError, match=rf"^{key} needs model.mask_channel: true"):
        ModelConfig.from_mapping(config)


def test_a_part_switched_off_ignores_its_other_keys():
    off = ModelConfig.from_mapping({**ALL_OFF, "bn_vae": {"enabled": False, "gamma": 3.0},
                                    "mask_pooling": {"enabled": False, "levels": [], "histogram_bins": 0},
                                    "histogram_view": {"enabled": False, "bins": 0}})
    torch.manual_seed(0)
    plain = build_model(ModelConfig.from_mapping(ALL_OFF)).state_dict()
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(build_model(off).state_dict().values(), plain.values()))


@pytest.mark.parametrize("config", [{}, ALL_ON, ALL_OFF, {"name": "mlp_vae", "hidden_sizes": [8], "latent_size": 2}])
def test_a_stored_model_section_reads_back_as_the_same_config(config):
    from lidcvae.models.config import model_config_from_stored

    typed = ModelConfig.from_mapping(config)
    assert model_config_from_stored(typed.to_dict(), "a checkpoint") == typed
