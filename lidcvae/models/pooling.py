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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MaskPooledHead", "edge_band", "masked_mean"]

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
    dilated = F.max_pool3d(mask, 2 * outside + 1, stride=1, padding=outside)
    eroded = -F.max_pool3d(-mask, 2 * inside + 1, stride=1, padding=inside)
    return dilated - eroded


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


class MaskPooledHead(nn.Module):
    """The mask means of some encoder levels → additive terms of μ and log σ², each (B, D).

    Args:
        levels: encoder levels (0 = the first convolution block) whose outputs are pooled.
        widths: channels of each encoder level (``model.channels``).
        latent_size: D.
        edge: also pool each level over the mask's ``edge_band``.
    """

    def __init__(self, levels: tuple[int, ...], widths: tuple[int, ...], latent_size: int, edge: bool = False) -> None:
        super().__init__()
        if not levels or len(set(levels)) != len(levels) or not all(0 <= level < len(widths) for level in levels):
            raise ValueError(f"model.mask_pooling.levels: expected distinct encoder levels in 0..{len(widths) - 1} "
                             f"(model.channels has {len(widths)} level(s)), got {list(levels)}")
        self.levels = tuple(sorted(levels))
        self.edge = edge
        width = sum(widths[level] for level in self.levels) * (2 if edge else 1)
        self.mean = nn.Linear(width, latent_size)
        self.logvar = nn.Linear(width, latent_size)

    def forward(self, level_features: list[torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``level_features[i]`` is level i's (B, C_i, …) output; ``mask`` (B, 1, S, S, S) 0/1."""
        regions = (mask, edge_band(mask)) if self.edge else (mask,)
        pooled = torch.cat([masked_mean(level_features[level], region)
                            for level in self.levels for region in regions], dim=1)
        return self.mean(pooled), self.logvar(pooled)
