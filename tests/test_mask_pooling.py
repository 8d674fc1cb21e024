"""model.mask_pooling: encoder levels averaged over the consensus mask (and its edge band) into the posterior."""

from __future__ import annotations

import pytest
import torch

from lidcvae.models import ModelConfig, build_model
from lidcvae.models.pooling import MaskPooledHead, edge_band, masked_mean

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
    head = MaskPooledHead((0, 1), (4, 8), latent_size=8, edge=True)
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
        MaskPooledHead((0, 0), (4, 8), 8)
    with pytest.raises(ValueError, match="mask_pooling averages over the consensus mask: it needs model.mask_channel"):
        build_model(ModelConfig.from_mapping({**TINY, "mask_channel": False, "reconstruction_weight": {"kind": "uniform"}}))


def test_a_checkpoint_from_before_mask_pooling_loads_as_the_plain_encoder():
    """Its model section has no mask_pooling key: it was trained without the head, so it gets none."""
    old = {key: value for key, value in TINY.items() if key != "mask_pooling"}
    assert ModelConfig.from_checkpoint(old).mask_pooling.levels == ()
    assert build_model(ModelConfig.from_checkpoint(old)).mask_pooling is None
    assert ModelConfig.from_mapping(old).mask_pooling.levels == (0, 1)  # today's default for a new config
