"""Encoder features averaged over the consensus mask, a size-free path to the posterior.

MONAI's ``VarAutoEncoder`` flattens its last feature map into the linear layers that give μ and log σ².
What that sees of a nodule's interior grows with the nodule: a 4 mm solid nodule and an 8 mm ground-glass
one can flatten to similar codes, and a linear probe then reads size where it should read density
(benchmarks/RESULTS.md). The radiomics baseline's first-order features are means over the mask, which do
not grow with the nodule. ``MaskPooledHead`` gives the encoder the same: the feature maps of chosen
levels, averaged over the consensus mask (input channel 1, area-downsampled to each level's grid), go
through their own linear layers and are added to μ and log σ². Optionally they are also averaged over the
mask's edge band, where the margin's blur and the spicules' roots lie; the mean over the whole mask
dilutes the edge by the interior.

The head can also pool a learnable soft histogram of the image itself (``SoftHistogram``, after the
learnable histogram layer of Wang et al., ECCV 2016, with Gaussian bins): averaged over the mask it is the
share of the nodule's voxels at each density, the distribution that radiomics' first-order features
(mean, percentiles, spread) summarise. The convolution levels see that distribution only through a few
filters; with the histogram the codes read ground glass, part-solid cores and a blurred margin's low
tail directly (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lidcvae.morphology import dilate_cube, erode_cube

__all__ = ["MaskPooledHead", "NoPooling", "SoftHistogram", "edge_band", "masked_mean", "masked_soft_histogram", "soft_histogram"]

# Keeps the mean finite for a mask that vanishes at a coarse level; a nodule covers ≥ 1 voxel.
_EPSILON = 1e-3
# The edge band reaches this many voxels into the mask and out of it (1 mm voxels in extracted patches).
EDGE_INSIDE, EDGE_OUTSIDE = 1, 2


def edge_band(mask: torch.Tensor, inside: int = EDGE_INSIDE, outside: int = EDGE_OUTSIDE) -> torch.Tensor:
    """The voxels within ``outside`` of the mask but not ``inside`` deep in it (cubic neighbourhoods).

    Args:
        mask: (B, 1, Z, Y, X) 0/1.

    Returns:
        (B, 1, Z, Y, X) 0/1: the mask dilated by ``outside`` minus the mask eroded by ``inside``.
    """
    return dilate_cube(mask, outside) - erode_cube(mask, inside)


def masked_mean(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of each channel over the mask.

    Args:
        features: (B, C, Z, Y, X) one encoder level's feature maps.
        mask: (B, 1, Z', Y', X') the consensus mask in [0, 1] at input resolution; area-averaged to
            (Z, Y, X), so a voxel half inside the nodule counts half.

    Returns:
        (B, C): Σ f·m / (Σ m + 1e-3) per channel.
    """
    weight = F.adaptive_avg_pool3d(mask.to(features.dtype), features.shape[2:])
    return (features * weight).flatten(2).sum(2) / (weight.flatten(2).sum(2) + _EPSILON)


class SoftHistogram(nn.Module):
    """A learnable soft histogram of the image: bin k's membership is exp(−((x − c_k) / w_k)²).

    Intensities are in HU-window units (0 = the window's lower end, 1 = its upper end, ``model.hu_window``).
    The centres c_k start evenly spaced over [0, 1] and the widths w_k at that spacing (1 / (K − 1)), so
    at initialisation the bins tile the window; training moves both.

    Args:
        bins: K.
    """

    def __init__(self, bins: int) -> None:
        super().__init__()
        if bins < 2:
            raise ValueError(f"model.mask_pooling.histogram_bins: expected at least 2 bins, got {bins}")
        self.centres = nn.Parameter(torch.linspace(0.0, 1.0, bins))
        self.log_widths = nn.Parameter(torch.full((bins,), -math.log(bins - 1)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, Z, Y, X) in window units → (B, K, Z, Y, X) memberships in (0, 1]."""
        return soft_histogram(image, self.centres, self.log_widths.exp())

    def pooled(self, image: torch.Tensor, regions: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The memberships' mean over each region, (B, R·K): ``masked_soft_histogram``."""
        return masked_soft_histogram(image, self.centres, self.log_widths.exp(), regions)


def soft_histogram(image: torch.Tensor, centres: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """Gaussian bin memberships exp(−((x − c_k) / w_k)²): (B, 1, Z, Y, X) and (K,), (K,) → (B, K, Z, Y, X)."""
    shape = (1, -1, 1, 1, 1)
    return torch.exp(-((image - centres.view(shape)) / widths.view(shape)).square())


def masked_soft_histogram(image: torch.Tensor, centres: torch.Tensor, widths: torch.Tensor,
                          regions: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``masked_mean(soft_histogram(image, …), region)`` for each region, concatenated, at a fraction of the cost.

    The memberships are computed only at the voxels some region covers (a nodule and its edge band are
    a few hundred of a patch's 32,768 voxels), not as a (B, K, Z, Y, X) tensor.

    Args:
        image: (B, 1, Z, Y, X) in window units.
        centres, widths: (K,) the bins.
        regions: R weights of shape (B, 1, Z, Y, X) in [0, 1] at the image's resolution (mask, edge band).

    Returns:
        (B, R·K): region 0's K bin means, then region 1's …; each Σ m·w / (Σ w + 1e-3).
    """
    weights = torch.cat([region.to(image.dtype) for region in regions], dim=1).flatten(2)  # (B, R, N)
    batch, voxel = (weights.sum(1) > 0).nonzero(as_tuple=True)
    values = image.flatten(1)[batch, voxel]
    memberships = torch.exp(-((values[:, None] - centres) / widths).square())  # (n, K)
    covered = weights[batch, :, voxel]  # (n, R)
    sums = image.new_zeros(len(image), len(regions), len(centres))
    sums = sums.index_add(0, batch, covered[:, :, None] * memberships[:, None, :])
    return (sums / (weights.sum(2, keepdim=True) + _EPSILON)).flatten(1)


class MaskPooledHead(nn.Module):
    """Mask means of some encoder levels (and of the image's soft histogram) → additive terms of μ and
    log σ², each (B, D).

    Args:
        levels: encoder levels (0 = the first convolution block) whose outputs are pooled; may be empty
            when ``histogram_bins`` is set.
        widths: channels of each encoder level (``model.channels``).
        latent_size: D.
        edge: also pool over the mask's ``edge_band``.
        histogram_bins: K > 1 pools a ``SoftHistogram`` of the image channel as well; 0 = none.
    """

    def __init__(self, levels: tuple[int, ...], widths: tuple[int, ...], latent_size: int, *, edge: bool,
                 histogram_bins: int) -> None:
        super().__init__()
        if len(set(levels)) != len(levels) or not all(0 <= level < len(widths) for level in levels):
            raise ValueError(f"model.mask_pooling.levels: expected distinct encoder levels in 0..{len(widths) - 1} "
                             f"(model.channels has {len(widths)} level(s)), got {list(levels)}")
        if not levels and not histogram_bins:
            raise ValueError("model.mask_pooling: nothing to pool (levels [] and histogram_bins 0); "
                             "say model.mask_pooling.enabled: false instead")
        self.levels = tuple(sorted(levels))
        self.edge = edge
        self.histogram = SoftHistogram(histogram_bins) if histogram_bins else None
        width = (sum(widths[level] for level in self.levels) + histogram_bins) * (2 if edge else 1)
        self.mean = nn.Linear(width, latent_size)
        self.logvar = nn.Linear(width, latent_size)

    def forward(self, level_features: list[torch.Tensor], image: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``level_features[i]`` is level i's (B, C_i, …) output; ``image`` and ``mask`` (B, 1, S, S, S),
        the image in window units, the mask 0/1."""
        regions = (mask, edge_band(mask)) if self.edge else (mask,)
        pooled = [masked_mean(level_features[level], region) for level in self.levels for region in regions]
        if self.histogram is not None:
            pooled.append(self.histogram.pooled(image, regions))
        pooled = torch.cat(pooled, dim=1)
        return self.mean(pooled), self.logvar(pooled)


class NoPooling(nn.Module):
    """``model.mask_pooling.enabled: false``: adds nothing to μ and log σ² (MONAI's encoder alone)."""

    def forward(self, level_features: list[torch.Tensor], image: torch.Tensor,
                mask: torch.Tensor) -> tuple[float, float]:
        """Zero terms whatever the inputs."""
        return 0.0, 0.0
