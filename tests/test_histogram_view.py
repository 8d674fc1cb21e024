"""model.histogram_view: z also decodes the nodule's density histogram, a second view in the training loss."""

from __future__ import annotations

import math

import pytest
import torch

from lidcvae.config import ConfigError
from lidcvae.intensity import HUWindow
from lidcvae.losses import kl_standard_normal
from lidcvae.models import ModelConfig, build_model
from lidcvae.models.config import model_config_from_stored
from lidcvae.models.histogram_view import NoHistogramView
from lidcvae.models.pooling import edge_band
from lidcvae.train.step import loss_terms

TINY = {"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2],
        "mask_pooling": {"enabled": False}, "histogram_view": {"bins": 15, "weight": 1.0}}
WINDOW = HUWindow(-1000.0, 400.0)


def _ball_mask(size: int, radius: float) -> torch.Tensor:
    """(1, 1, S, S, S) 0/1 ball in the centre."""
    axes = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    z, y, x = torch.meshgrid(axes, axes, axes, indexing="ij")
    return ((z**2 + y**2 + x**2) <= radius**2).float()[None, None]


def _nodule(density_hu: float, radius: float, blur_hu: float = 0.0) -> torch.Tensor:
    """(1, 2, 16, 16, 16): a ball of ``density_hu`` in −860 HU lung, in window units, and its mask; the 2
    voxels just outside the mask raised by ``blur_hu`` (a margin blurred outwards)."""
    mask = _ball_mask(16, radius)
    hu = torch.where(mask.bool(), torch.tensor(density_hu), torch.tensor(-860.0))
    hu = hu + blur_hu * edge_band(mask, inside=0, outside=2)
    return torch.cat([WINDOW.to_unit(hu), mask], dim=1)


def _view(config: dict | None = None):
    return build_model(ModelConfig.from_mapping({**TINY, **(config or {})})).histogram_view


def test_the_target_is_the_density_distribution_in_the_mask_then_in_the_edge_band():
    """Over the mask: a −600 HU nodule peaks at bin 4 of 15 and a +40 HU one at bin 10, alike for two
    sizes, the lung not counted. Over the edge band (1 voxel in, 2 out), a sharp nodule splits between
    its own bin and the lung's (bin 2); a margin blurred outwards moves that band's mass off the lung bin
    and leaves the mask's half unchanged."""
    view = _view()
    for density, peak in ((-600.0, 4), (40.0, 10)):
        small, large = view.histogram(_nodule(density, 2.0))[0], view.histogram(_nodule(density, 6.0))[0]
        assert small.shape == (30,)
        assert int(small[:15].argmax()) == peak and int(large[:15].argmax()) == peak
        assert torch.allclose(small[:15], large[:15], atol=1e-2)
    solid = view.histogram(_nodule(40.0, 4.0))[0]
    assert solid[2].item() < 1e-3  # the lung outside the mask is not in the mask's half
    assert solid[15 + 2].item() > 0.3 and solid[15 + 10].item() > 0.1  # the edge band holds lung and nodule
    blurred = view.histogram(_nodule(40.0, 4.0, blur_hu=300.0))[0]
    assert torch.allclose(blurred[:15], solid[:15])
    assert blurred[15 + 2].item() < solid[15 + 2].item() - 0.1


def test_the_log_likelihood_is_lambda_times_a_gaussian_over_the_bins():
    """In eval mode σ² is the running estimate (exp 0 = 1 at the start): the term is
    λ·Σ_k −½((h_k − ĥ_k)² + log 2π), by hand; λ 3 gives 3 times λ 1's value."""
    torch.manual_seed(0)
    one, three = _view().eval(), _view({"histogram_view": {"bins": 15, "weight": 3.0}}).eval()
    three.load_state_dict(one.state_dict())
    x, z = torch.cat([_nodule(-600.0, 3.0), _nodule(40.0, 5.0)]), torch.randn(2, 8)
    by_hand = -0.5 * ((one.histogram(x) - one(z)) ** 2 + math.log(2 * math.pi)).sum(1)
    assert torch.allclose(one.log_likelihood(x, z), by_hand, atol=1e-5)
    assert torch.allclose(three.log_likelihood(x, z), 3.0 * by_hand, atol=1e-4)


def test_the_training_loss_adds_the_histogram_term_and_its_gradient_reaches_the_encoder():
    """The negative ELBO of (image, histogram): −[log p(x|z) + λ log p(h|z)] + KL at z = μ; the histogram
    term alone moves the encoder's weights."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_mapping(TINY)).eval()
    x = torch.cat([_nodule(-600.0, 3.0), _nodule(40.0, 5.0)])
    terms = loss_terms(lambda batch: model(batch, sample=False), model, x, beta=1.0, free_bits=0.0)
    with torch.no_grad():
        mean, logvar = model.encode(x)
        image = model.log_likelihood(x, model.decode(mean))
        histogram = model.histogram_view.log_likelihood(x, mean)
        expected = -(image + histogram).mean() + kl_standard_normal(mean, logvar).mean()
    assert histogram.abs().min() > 1.0  # the term is not negligible, so the assertion below can tell
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms.reconstruction.item() == pytest.approx(-image.mean().item(), rel=1e-5)  # logged: the image's alone
    assert terms.auxiliary.item() == pytest.approx(-histogram.mean().item(), rel=1e-5)  # logged in its own column
    model.zero_grad()
    mean, _ = model.encode(x)
    model.histogram_view.log_likelihood(x, mean).sum().backward()
    assert model.network.encode[0].conv.weight.grad.abs().max() > 0


def test_histogram_view_settings_are_checked_by_key():
    with pytest.raises(ConfigError, match=r"model.histogram_view.bins: expected at least 2, got 1"):
        _view({"histogram_view": {"bins": 1}})
    with pytest.raises(ConfigError, match=r"^model.histogram_view.enabled needs model.mask_channel: true"):
        ModelConfig.from_mapping({**TINY, "mask_channel": False, "reconstruction_weight": {"kind": "uniform"}})
    with pytest.raises(ValueError, match="model.histogram_view.weight"):
        ModelConfig.from_mapping({**TINY, "histogram_view": {"bins": 15, "weight": 0}})


def test_bins_zero_is_refused_in_a_config_and_read_as_off_in_a_stored_section():
    """bins: 0 meant "no histogram view"; a config now says enabled: false, a stored section in the old
    spelling reads as that, and one without the key at all is refused by name."""
    with pytest.raises(ConfigError, match=r"bins: expected at least 2, got 0 .*model.histogram_view.enabled: false"):
        _view({"histogram_view": {"bins": 0}})
    stored = ModelConfig.from_mapping(TINY).to_dict()
    old_off = model_config_from_stored({**stored, "histogram_view": {"bins": 0, "weight": 1.0}})
    assert old_off.histogram_view.enabled is False
    assert isinstance(build_model(old_off).histogram_view, NoHistogramView)
    assert model_config_from_stored({**stored, "histogram_view": {"bins": 15, "weight": 1.0}}).histogram_view.enabled
    with pytest.raises(ConfigError, match=r"lacks model.histogram_view;"):
        model_config_from_stored({key: value for key, value in stored.items() if key != "histogram_view"})


def test_switched_off_the_view_adds_nothing_to_the_loss():
    model = build_model(ModelConfig.from_mapping({**TINY, "histogram_view": {"enabled": False, "bins": 0}}))
    x = _nodule(-600.0, 3.0)
    assert model.auxiliary_term is None
    assert torch.equal(model.auxiliary_log_likelihood(x, torch.zeros(1, 8)), torch.zeros(1))
