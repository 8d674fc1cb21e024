"""Per-voxel weights w(x) ≥ 1 of the reconstruction term, so the nodule counts more than the background.

A 5 mm nodule is under 0.1 % of a 64³ patch: with a uniform squared error the decoder spends its
capacity on chest wall and vessels, and the latents lose the nodule. A weight map

    w(x) = 1 + (peak − 1) · g(x),   g ∈ [0, 1]

raises the nodule's share. ``g`` is a centred isotropic Gaussian (the patch is centred on the
consensus centroid) or the consensus mask (channel 1 of the input, see ``model.mask_channel``) dilated
by a few voxels. Since w ≥ 1 the weighted Gaussian log-likelihood is ≤ the unweighted one, so the
weighted negative ELBO is an upper bound on the plain negative ELBO and its negative is still a lower
bound on log p(x) (see ``lidcvae.losses.gaussian_log_likelihood``).
"""

from __future__ import annotations

import torch
from torch import nn

from lidcvae.models.config import ReconstructionWeightConfig
from lidcvae.morphology import dilate_cube

__all__ = ["WEIGHT_KINDS", "ReconstructionWeight"]

WEIGHT_KINDS = ("uniform", "gaussian", "mask")


class ReconstructionWeight(nn.Module):
    """w(x) for a batch, (B, C, S, S, S) → (B, 1, S, S, S) (broadcast over channels), or None if uniform.

    Args:
        kind: ``uniform`` (w = 1), ``gaussian`` or ``mask``.
        peak: w at the nodule (the Gaussian's centre, or inside the dilated mask); ≥ 1.
        sigma_voxels: sd of the Gaussian, voxels (1 mm each in extracted patches).
        dilate_voxels: dilation radius of the mask (a cube of edge 2r + 1), voxels.
    """

    def __init__(self, kind: str, peak: float, sigma_voxels: float, dilate_voxels: int) -> None:
        super().__init__()
        if kind not in WEIGHT_KINDS:
            raise ValueError(f"model.reconstruction_weight.kind: expected one of {WEIGHT_KINDS}, got {kind!r}")
        if peak < 1:
            raise ValueError(f"model.reconstruction_weight.peak: must be ≥ 1 so the ELBO stays a bound, got {peak}")
        self.kind, self.peak, self.sigma_voxels, self.dilate_voxels = kind, float(peak), float(sigma_voxels), int(dilate_voxels)

    @classmethod
    def from_config(cls, weight: ReconstructionWeightConfig) -> ReconstructionWeight:
        """From the typed ``model.reconstruction_weight`` section (``ReconstructionWeightConfig``)."""
        return cls(weight.kind, weight.peak, weight.sigma_voxels, weight.dilate_voxels)

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.kind == "uniform" or self.peak == 1.0:
            return None
        if self.kind == "gaussian":
            profile = self.gaussian_profile(x.shape[2:], x.device)[None, None]
        else:  # mask: the config guarantees channel 1 (ConvVAE3dConfig checks model.mask_channel)
            profile = dilate_cube(x[:, 1:2].float(), self.dilate_voxels)
        return 1.0 + (self.peak - 1.0) * profile

    def gaussian_profile(self, shape: torch.Size | tuple[int, ...], device: torch.device) -> torch.Tensor:
        """exp(−r²/2s²) around the patch centre, r in voxels; (Z, Y, X) in [0, 1]."""
        axes = [torch.arange(n, device=device, dtype=torch.float32) - (n - 1) / 2 for n in shape]
        squared = sum(a.reshape([-1 if i == j else 1 for j in range(len(shape))]) ** 2 for i, a in enumerate(axes))
        return torch.exp(-squared / (2 * self.sigma_voxels**2))
