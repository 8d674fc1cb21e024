"""Options that make the latents carry the nodule: weighted reconstruction, mask channel, free bits, sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lidcvae.data import PatchSource
from lidcvae.models import ModelConfig
from lidcvae.losses import free_bits_kl, gaussian_log_likelihood, kl_standard_normal
from lidcvae.models import build_model
from lidcvae.models.weighting import ReconstructionWeight

TINY = {"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2],
        "mask_channel": False, "mask_pooling": {"enabled": False}, "histogram_view": {"enabled": False}, "reconstruction_weight": {"kind": "uniform"}}  # one channel, the plain ELBO


def _nodule_batch(size=16, radius=3):
    """(1, 2, S, S, S): a bright ball in the centre (channel 0) and its mask (channel 1)."""
    axes = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    z, y, x = torch.meshgrid(axes, axes, axes, indexing="ij")
    ball = ((z**2 + y**2 + x**2) <= radius**2).float()
    return torch.stack([0.2 + 0.6 * ball, ball])[None]


def test_gaussian_weight_peaks_at_the_centre_and_fades_to_one_at_the_corners():
    weight = ReconstructionWeight("gaussian", peak=20.0, sigma_voxels=3.0, dilate_voxels=3)(torch.zeros(1, 1, 17, 17, 17))
    assert weight.shape == (1, 1, 17, 17, 17)
    assert weight[0, 0, 8, 8, 8] == pytest.approx(20.0)
    assert weight[0, 0, 0, 0, 0] == pytest.approx(1.0, abs=1e-3)  # 13.9 voxels = 4.6 sd out
    assert weight.min() >= 1.0


def test_mask_weight_covers_the_dilated_mask_and_nothing_else():
    batch = _nodule_batch()
    weight = ReconstructionWeight("mask", peak=10.0, sigma_voxels=8.0, dilate_voxels=2)(batch)[0, 0]
    mask = batch[0, 1].bool()
    assert (weight[mask] == 10.0).all()
    assert weight[0, 0, 0] == 1.0 and weight[7, 7, 1] == 1.0  # 5+ voxels from a radius-3 ball
    assert weight[7, 7, 3] == 10.0  # 1–2 voxels outside the ball: inside the dilation


def test_a_weight_below_one_or_a_mask_weight_without_a_mask_is_refused():
    with pytest.raises(ValueError, match="peak: must be ≥ 1"):
        ReconstructionWeight("gaussian", peak=0.5, sigma_voxels=8.0, dilate_voxels=3)
    with pytest.raises(ValueError, match="needs model.mask_channel"):
        build_model(ModelConfig.from_mapping({**TINY, "mask_channel": False, "reconstruction_weight": {"kind": "mask", "peak": 5.0}}))


def test_the_weighting_changes_the_loss_only_where_it_weights():
    """An error inside the nodule costs `peak` times more; the same error in the background costs the same."""
    batch = _nodule_batch()
    weight = ReconstructionWeight("mask", peak=10.0, sigma_voxels=8.0, dilate_voxels=0)(batch)
    inside, outside = batch.clone(), batch.clone()
    inside[0, 0, 7, 7, 7] += 0.5
    outside[0, 0, 0, 0, 0] += 0.5

    def cost(reconstruction, w):
        return -gaussian_log_likelihood(batch, reconstruction, 0.0, w) + gaussian_log_likelihood(batch, batch, 0.0, w)

    assert cost(inside, weight).item() == pytest.approx(10 * cost(inside, None).item())
    assert cost(outside, weight).item() == pytest.approx(cost(outside, None).item())
    # w ≥ 1: the weighted log-likelihood never exceeds the plain one, so the ELBO stays a lower bound
    assert (gaussian_log_likelihood(batch, inside, 0.0, weight) <= gaussian_log_likelihood(batch, inside, 0.0)).all()


def test_mask_channel_model_encodes_and_reconstructs_two_channels_with_the_weighted_likelihood():
    config = {**TINY, "mask_channel": True, "reconstruction_weight": {"kind": "mask", "peak": 10.0}}
    model = build_model(ModelConfig.from_mapping(config)).eval()
    batch = _nodule_batch().repeat(2, 1, 1, 1, 1)
    output = model(batch, sample=False)
    assert output.decoded.shape == (2, 2, 16, 16, 16)
    uniform = build_model(ModelConfig.from_mapping({**config, "reconstruction_weight": {"kind": "uniform", "peak": 1.0}})).eval()
    uniform.load_state_dict(model.state_dict())
    assert (model.log_likelihood(batch, output.decoded) < uniform.log_likelihood(batch, output.decoded)).all()


def test_mask_channel_is_loaded_from_the_manifest_as_channel_one(tmp_path):
    import nibabel as nib
    import pandas as pd

    from lidcvae.data.lidc import images_from_table

    image = np.full((8, 8, 8), -1000, np.int16)
    mask = np.zeros((8, 8, 8), np.uint8)
    mask[3:5, 3:5, 2:6] = 1  # (x, y, z) on disk
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "i.nii.gz")
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "m.nii.gz")
    table = pd.DataFrame({"image_path": [str(tmp_path / "i.nii.gz")], "mask_path": [str(tmp_path / "m.nii.gz")]})
    source = PatchSource(tmp_path / "unused.parquet", 6, (-1000.0, 400.0), "crop", mask_channel=True, context_voxels=None, fill_hu=-860.0)
    images = images_from_table(table, source)
    assert images.shape == (1, 2, 6, 6, 6)
    assert images[0, 1].sum() == 16 and images[0, 0].max() == 0.0
    assert images[0, 1, 1:5, 2:4, 2:4].sum() == 16  # transposed to (z, y, x), centre-cropped by 1
    with pytest.raises(ValueError, match="no mask_path column"):
        images_from_table(table[["image_path"]], source)
    # The coordinates route without sphere_mask leaves mask_path empty: named, not "No such file: 'None'".
    with pytest.raises(ValueError, match=r"1 of the cohort's nodule\(s\) have no mask_path .*mask_channel: false"):
        images_from_table(table.assign(mask_path=[None]), source)


def test_free_bits_floor_each_dimension_and_leave_a_larger_kl_alone():
    mean, logvar = torch.full((4, 3), 0.1, requires_grad=True), torch.zeros(4, 3)
    floored = free_bits_kl(mean, logvar, 0.5)
    assert floored.item() == pytest.approx(1.5)  # 3 dims × λ: each dim's KL (0.005) is under the floor
    floored.backward()
    assert (mean.grad == 0).all()  # no pull towards the prior below the floor
    big = torch.full((4, 3), 2.0)
    assert free_bits_kl(big, logvar, 0.5).item() == pytest.approx(kl_standard_normal(big, logvar).mean().item())


def test_aggregate_posterior_fit_recovers_the_codes_distribution_and_samples_match_it():
    from lidcvae.evaluate.sampling import AggregatePosterior, latent_samples

    rng = np.random.default_rng(0)
    centre, spread = np.array([8.0, -4.0, 0.0]), np.array([[4.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.5]])
    codes = rng.multivariate_normal(centre, spread, 4000)
    fitted = AggregatePosterior.fit(codes, np.full_like(codes, np.log(0.1)))
    assert np.allclose(fitted.mean, centre, atol=0.1)
    assert np.allclose(fitted.covariance, spread + 0.1 * np.eye(3), atol=0.2)  # + the posterior variances
    samples = latent_samples("aggregate_posterior", 4000, 3, rng, codes)
    assert np.allclose(samples.mean(axis=0), centre, atol=0.15)
    prior = latent_samples("prior", 4000, 3, rng)
    assert np.allclose(prior.mean(axis=0), 0.0, atol=0.1)
    with pytest.raises(ValueError, match="need \\(N ≥ 2, D\\)"):
        AggregatePosterior.fit(codes[:1])
    with pytest.raises(ValueError, match="expected one of"):
        latent_samples("posterior", 2, 3, rng)


def test_evaluate_samples_from_the_training_codes_unless_told_otherwise():
    import pandas as pd

    from lidcvae.evaluate.generative import sample_source
    from lidcvae.evaluate.settings import EvaluateSettings

    table = pd.DataFrame({"split": ["train", "train", "test"], "z000": [1.0, 2.0, 30.0], "logvar000": [0.0, 0.0, 0.0]})
    defaults = EvaluateSettings.from_mapping({})
    source, (means, _) = sample_source(defaults, table)
    assert source == "aggregate_posterior" and means[:, 0].tolist() == [1.0, 2.0]
    assert sample_source(EvaluateSettings.from_mapping({"sample_from": "prior"}), table)[0] == "prior"
    assert sample_source(defaults, table.iloc[[0, 2]])[0] == "prior"  # one training code: cannot fit


def test_per_channel_sigma_calibrates_image_and_mask_to_their_own_errors():
    """With one σ² per channel, each channel's term sits at its own optimum: ½(1 + log 2πσ_c²) per element."""
    config = {**TINY, "mask_channel": True, "sigma": {"mode": "calibrated", "per_channel": True, "log_sigma2": 0.0,
                                                      "momentum": 1.0}}
    model = build_model(ModelConfig.from_mapping(config)).train()
    x = torch.rand(3, 2, 16, 16, 16)
    decoded = x.clone()
    decoded[:, 0] += 0.05 * torch.randn_like(decoded[:, 0])  # a small image error
    decoded[:, 1] += 0.5 * torch.randn_like(decoded[:, 1])  # a large mask error
    per_channel_mse = ((x - decoded) ** 2).transpose(0, 1).flatten(1).mean(dim=1)
    log_sigma2 = model.log_sigma2(x, decoded)
    assert log_sigma2.shape == (1, 2, 1, 1, 1)
    torch.testing.assert_close(log_sigma2.exp().flatten(), per_channel_mse)
    expected = 16**3 * sum(0.5 * (1.0 + math.log(2 * math.pi * mse.item())) for mse in per_channel_mse)
    assert -model.log_likelihood(x, decoded).mean().item() == pytest.approx(expected, rel=1e-4)
    assert model.sigma.image_sigma2() == pytest.approx(per_channel_mse[0].item(), rel=1e-5)  # momentum 1: the batch's
    shared = build_model(ModelConfig.from_mapping({**config, "sigma": {"mode": "calibrated", "per_channel": False}})).train()
    assert shared.log_sigma2(x, decoded).dim() == 0  # one σ² for both: set by the mask's larger error
    assert shared.log_sigma2(x, decoded).exp().item() == pytest.approx(per_channel_mse.mean().item(), rel=1e-5)
