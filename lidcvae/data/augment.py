"""Random flips and axial 90° rotations of a batch of cubic patches, drawn per patch, on any device.

Applied to whole batches on the training device, so augmentation costs a few tensor copies per step
rather than a data-loader pipeline. Randomness comes from an explicit ``torch.Generator`` whose state the
trainer checkpoints, so a resumed run draws the same augmentations.
"""

from __future__ import annotations

import torch

__all__ = ["augment_batch"]

# (B, C, z, y, x): spatial axes and the axial plane.
_SPATIAL_DIMS = (2, 3, 4)
_AXIAL_DIMS = (3, 4)


def augment_batch(
    patches: torch.Tensor, generator: torch.Generator, flips: bool = True, rot90: bool = True
) -> torch.Tensor:
    """Flip each patch along each spatial axis with p=1/2 and rotate it by k·90°, k ~ U{0..3}, in (y, x).

    Args:
        patches: (B, C, S, S, S); the axial plane must be square for rotations.
        generator: CPU generator the random choices come from.
        flips: enable the flips.
        rot90: enable the axial rotations.

    Returns:
        (B, C, S, S, S), a new tensor (the input is not modified).
    """
    batch = patches.shape[0]
    if flips:
        flip_mask = torch.rand(batch, len(_SPATIAL_DIMS), generator=generator) < 0.5
        for axis, dim in enumerate(_SPATIAL_DIMS):
            patches = _where_per_patch(flip_mask[:, axis], patches.flip(dim), patches)
    if rot90:
        quarter_turns = torch.randint(0, 4, (batch,), generator=generator)
        rotated = patches
        for k in range(1, 4):
            rotated = _where_per_patch(quarter_turns == k, patches.rot90(k, _AXIAL_DIMS), rotated)
        patches = rotated
    return patches


def _where_per_patch(choose: torch.Tensor, if_true: torch.Tensor, if_false: torch.Tensor) -> torch.Tensor:
    """Pick per patch: ``choose`` (B,) bool on CPU."""
    choose = choose.to(if_true.device).view(-1, *([1] * (if_true.dim() - 1)))
    return torch.where(choose, if_true, if_false)
