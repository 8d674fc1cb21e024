"""model.mask_pooling: encoder levels averaged over the consensus mask (and its edge band) into the posterior."""

from __future__ import annotations

import math

import pytest
import torch

from lidcvae.intensity import HUWindow
from lidcvae.models import ModelConfig, build_model
from lidcvae.config import ConfigError
from lidcvae.models.config import model_config_from_stored
from lidcvae.models.pooling import MaskPooledHead, NoPooling, SoftHistogram, edge_band, masked_mean

TINY = {"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2],
        "mask_pooling": {"levels": [0, 1], "edge": True}}


def _ball_mask(size: int, radius: float) -> torch.Tensor:
    """(1, 1, S, S, S) 0/1 ball in the centre."""
    axes = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    z, y, x = torch.meshgrid(axes, axes, axes, indexing="ij")
    return ((z**2 + y**2 + x**2) <= radius**2).float()[None, None]


def test_masked_mean_is_the_mean_inside_the_mask_whatever_its_size():
    """A feature that is c inside the nodule and anything outside pools to c for a small and a large mask:
    a sum, or a mean over the whole grid, would grow with the nodule."""
    for radius in (2.0, 6.0):
        mask = _ball_mask(16, radius)
        features = torch.randn(1, 3, 16, 16, 16) * 5
        inside = torch.tensor([0.5, -1.0, 2.0]).reshape(1, 3, 1, 1, 1)
        features = torch.where(mask.bool(), inside, features)
        pooled = masked_mean(features, mask)
        assert pooled.shape == (1, 3)
        assert torch.allclose(pooled, inside.reshape(1, 3), atol=1e-2)  # the 1e-3 guard in the denominator


def test_masked_mean_weights_a_coarse_voxel_by_the_share_of_its_input_voxels_in_the_mask():
    mask = torch.zeros(1, 1, 4, 4, 4)
    mask[0, 0, :2, :2, :2] = 1.0  # coarse voxel (0, 0, 0) wholly inside
    mask[0, 0, 2, 2, 2] = 1.0  # coarse voxel (1, 1, 1): 1 of its 8 input voxels
    features = torch.zeros(1, 1, 2, 2, 2)
    features[0, 0, 0, 0, 0], features[0, 0, 1, 1, 1] = 1.0, 9.0
    expected = (1.0 * 1.0 + 9.0 * 0.125) / (1.0 + 0.125 + 1e-3)
    assert masked_mean(features, mask).item() == pytest.approx(expected)


def test_the_edge_band_runs_from_one_voxel_inside_the_mask_to_two_outside():
    mask = torch.zeros(1, 1, 1, 1, 12)
    mask[..., 4:9] = 1.0  # a 5-voxel run along x (a cubic neighbourhood on a 1-voxel-thick grid)
    band = edge_band(mask.expand(1, 1, 3, 3, 12).contiguous())[0, 0, 1, 1]
    #                  outside 2 | inside 1 … inside 1 | outside 2
    assert band.tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0]


def test_the_edge_mean_sees_a_margin_blurred_outwards_that_the_mask_mean_misses():
    """Blur spreads a nodule's density past its mask: voxels 1–2 outside it brighten. Only the edge band's
    mean sees that; a head that pooled the mask alone could not tell a blurred margin from a sharp one."""
    mask = _ball_mask(16, 4.0)
    sharp = mask.clone()
    ring = edge_band(mask, inside=0, outside=2)  # the 2 voxels just outside (eroding by 0 keeps the mask)
    blurred = sharp + 0.3 * ring
    assert masked_mean(blurred, mask).item() == pytest.approx(masked_mean(sharp, mask).item())
    assert masked_mean(blurred, edge_band(mask)).item() > masked_mean(sharp, edge_band(mask)).item() + 0.1
    head = MaskPooledHead((0, 1), (4, 8), latent_size=8, edge=True, histogram_bins=0)
    assert head.mean.in_features == 2 * (4 + 8)  # each level pooled over the mask and over its edge band


def test_the_pooled_path_adds_to_monai_s_flattened_encoder():
    """With the head's weights zeroed, encode is exactly MONAI's encode_forward: the pooled path reuses the
    same level outputs and only adds to μ and log σ²."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_mapping(TINY)).eval()
    x = torch.rand(2, 2, 16, 16, 16)
    x[:, 1] = _ball_mask(16, 4.0)[0]
    with torch.no_grad():
        pooled_mean, _ = model.encode(x)
        for parameter in model.mask_pooling.parameters():
            parameter.zero_()
        mean, logvar = model.encode(x)
        plain_mean, plain_logvar = model.network.encode_forward(x)
    assert torch.allclose(mean, plain_mean) and torch.allclose(logvar, plain_logvar.clamp(*model.logvar_range))
    assert not torch.allclose(pooled_mean, plain_mean)


def test_the_pooled_path_reads_only_inside_the_mask_at_its_levels():
    """A change far outside the nodule reaches μ only through the flattened path: with that path's
    weights zeroed, μ does not move; a change inside the nodule does move it."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_mapping({**TINY, "mask_pooling": {"levels": [0], "edge": False}})).eval()
    with torch.no_grad():
        model.network.mu.weight.zero_()
    x = torch.full((1, 2, 16, 16, 16), 0.1)
    x[:, 1:] = _ball_mask(16, 3.0)
    far, inside = x.clone(), x.clone()
    far[0, 0, 0:3, 0:3, 0:3] = 0.9  # ≥ 4 level-0 voxels from the mask's footprint
    inside[0, 0, 7:9, 7:9, 7:9] = 0.9
    with torch.no_grad():
        base, moved_far, moved_inside = (model.encode(batch)[0] for batch in (x, far, inside))
    assert torch.allclose(base, moved_far)
    assert (base - moved_inside).abs().max() > 1e-4


def test_bad_levels_or_no_mask_channel_are_refused_by_key():
    with pytest.raises(ValueError, match=r"model.mask_pooling.levels: expected distinct encoder levels in 0..1 \(model.channels has 2"):
        build_model(ModelConfig.from_mapping({**TINY, "mask_pooling": {"levels": [2]}}))
    with pytest.raises(ValueError, match="model.mask_pooling.levels"):
        MaskPooledHead((0, 0), (4, 8), 8, edge=False, histogram_bins=0)
    with pytest.raises(ConfigError, match=r"^model.mask_pooling.enabled needs model.mask_channel: true"):
        ModelConfig.from_mapping({**TINY, "mask_channel": False, "histogram_view": {"enabled": False},
                                  "reconstruction_weight": {"kind": "uniform"}})


def test_the_old_spelling_of_off_is_refused_in_a_config_and_translated_in_a_checkpoint():
    """levels [] with histogram_bins 0 meant "no mask pooling"; a config now says enabled: false, and a
    stored section in the old spelling reads as that."""
    old_off = {"levels": [], "edge": True, "histogram_bins": 0}
    with pytest.raises(ConfigError, match=r"levels \[\] with histogram_bins 0 pools nothing.*model.mask_pooling.enabled: false"):
        ModelConfig.from_mapping({**TINY, "mask_pooling": old_off})
    stored = ModelConfig.from_mapping({**TINY, "mask_pooling": {"enabled": False}}).to_dict()
    translated = model_config_from_stored({**stored, "mask_pooling": old_off})
    assert translated.mask_pooling.enabled is False
    assert isinstance(build_model(translated).mask_pooling, NoPooling)
    on = model_config_from_stored({**stored, "mask_pooling": {"levels": [0], "edge": False, "histogram_bins": 0}})
    assert on.mask_pooling.enabled is True and on.mask_pooling.levels == (0,)


def test_a_stored_section_without_mask_pooling_is_refused_naming_the_key():
    """No second default table: a checkpoint that predates a key is not given a guess for it."""
    stored = ModelConfig.from_mapping(TINY).to_dict()
    del stored["mask_pooling"]
    with pytest.raises(ConfigError, match=r"lacks model.mask_pooling;"):
        model_config_from_stored(stored, "old.pt")


def test_the_soft_histogram_tiles_the_hu_window_at_initialisation():
    """Bin k starts centred at k / (K − 1) of the window: an image exactly there is wholly in bin k, about
    e⁻¹ in its neighbours, nothing two bins away."""
    histogram = SoftHistogram(8)
    image = torch.full((1, 1, 2, 2, 2), 3 / 7)
    member = histogram(image)[0, :, 0, 0, 0]
    assert member.shape == (8,)
    assert member[3].item() == pytest.approx(1.0)
    assert member[2].item() == pytest.approx(math.exp(-1)) and member[4].item() == pytest.approx(math.exp(-1))
    assert member[[0, 1, 5, 6, 7]].max().item() < math.exp(-4) + 1e-6


def test_the_pooled_histogram_is_the_nodule_s_density_distribution_whatever_its_size():
    """Over the mask, the histogram is the share of the nodule's voxels at each density: a ground-glass
    nodule (−600 HU) peaks at a lower bin than a solid one (+40 HU), a small and a large nodule of one
    density pool alike, and the lung outside the mask does not count."""
    window = HUWindow(-1000.0, 400.0)
    histogram = SoftHistogram(15)
    pooled = {}
    for density in (-600.0, 40.0):
        for radius in (2.0, 6.0):
            mask = _ball_mask(16, radius)
            hu = torch.where(mask.bool(), torch.tensor(density), torch.tensor(-860.0))
            pooled[density, radius] = masked_mean(histogram(window.to_unit(hu)), mask)[0]
    # window units: −600 HU → 0.286 (nearest centre 4/14), +40 HU → 0.743 (nearest 10/14)
    assert int(pooled[-600.0, 2.0].argmax()) == 4 and int(pooled[40.0, 2.0].argmax()) == 10
    for density in (-600.0, 40.0):
        assert torch.allclose(pooled[density, 2.0], pooled[density, 6.0], atol=1e-2)
    lung_bin = 2  # −860 HU → 0.1, nearest centre 2/14: the lung would fill it were it counted
    assert pooled[40.0, 6.0][lung_bin].item() < 1e-3


def test_the_head_pools_the_histogram_over_the_mask_and_its_edge_band():
    head = MaskPooledHead((0,), (4, 8), latent_size=8, edge=True, histogram_bins=16)
    assert head.mean.in_features == 2 * (4 + 16)
    histogram_only = MaskPooledHead((), (4, 8), latent_size=8, edge=False, histogram_bins=16)
    assert histogram_only.mean.in_features == 16
    mask = _ball_mask(16, 4.0)
    blurred = torch.where(mask.bool(), 0.8, 0.1) + 0.3 * edge_band(mask, inside=0, outside=2)
    sharp = torch.where(mask.bool(), 0.8, 0.1)
    levels = [torch.zeros(1, 4, 8, 8, 8)]
    with torch.no_grad():
        moved = head(levels, blurred, mask)[0] - head(levels, sharp, mask)[0]
        unmoved = histogram_only(levels, blurred, mask)[0] - histogram_only(levels, sharp, mask)[0]
    assert moved.abs().max() > 1e-3  # the margin's blur lies outside the mask: only the edge band sees it
    assert torch.allclose(unmoved, torch.zeros_like(unmoved))


def test_histogram_settings_are_checked_by_key():
    with pytest.raises(ConfigError, match="model.mask_pooling.histogram_bins: expected 0 .no histogram. or at least 2, got 1"):
        ModelConfig.from_mapping({**TINY, "mask_pooling": {"histogram_bins": 1}})
    with pytest.raises(ValueError, match="model.mask_pooling.histogram_bins"):
        ModelConfig.from_mapping({**TINY, "mask_pooling": {"histogram_bins": -1}})
    assert isinstance(build_model(ModelConfig.from_mapping({**TINY, "mask_pooling": {"enabled": False}})).mask_pooling, NoPooling)
    histogram_only = build_model(ModelConfig.from_mapping({**TINY, "mask_pooling": {"levels": []}})).mask_pooling
    assert histogram_only.levels == () and histogram_only.histogram is not None
    # switched off, its other keys are ignored: no mask channel needed, a bin count of 1 not checked
    off = ModelConfig.from_mapping({**TINY, "mask_channel": False, "mask_pooling": {"enabled": False, "histogram_bins": 1},
                                    "histogram_view": {"enabled": False}, "reconstruction_weight": {"kind": "uniform"}})
    assert isinstance(build_model(off).mask_pooling, NoPooling)


def test_the_histogram_over_the_covered_voxels_equals_the_dense_one_and_its_gradient():
    """``masked_soft_histogram`` computes memberships only where the mask or edge band reaches; its values
    and the gradient they give the bins equal those of the dense (B, K, Z, Y, X) formula, per sample of a
    batch whose nodules differ in size (one with an empty mask)."""
    torch.manual_seed(0)
    image = torch.rand(3, 1, 16, 16, 16)
    mask = torch.cat([_ball_mask(16, 2.0), _ball_mask(16, 5.0), torch.zeros(1, 1, 16, 16, 16)])
    regions = (mask, edge_band(mask))
    dense_bins, sparse_bins = SoftHistogram(6), SoftHistogram(6)
    with torch.no_grad():
        for bins in (dense_bins, sparse_bins):
            bins.centres.add_(torch.linspace(-0.05, 0.05, 6))  # away from the initial tiling
    dense = torch.cat([masked_mean(dense_bins(image), region) for region in regions], dim=1)
    sparse = sparse_bins.pooled(image, regions)
    assert sparse.shape == (3, 12)
    assert torch.allclose(sparse, dense, atol=1e-6) and sparse[:2].sum() > 1.0 and sparse[2].abs().max() == 0
    (dense * torch.arange(12.0)).sum().backward()
    (sparse * torch.arange(12.0)).sum().backward()
    assert torch.allclose(sparse_bins.centres.grad, dense_bins.centres.grad, atol=1e-4)
    assert torch.allclose(sparse_bins.log_widths.grad, dense_bins.log_widths.grad, atol=1e-4)
    assert dense_bins.centres.grad.abs().max() > 0.1
