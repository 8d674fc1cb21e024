"""Random flips and axial 90° rotations of a batch of cubic patches, drawn per patch, on any device;
and the orientations those draws reach (16 with both), for embeddings that do not depend on how a nodule lies.

Applied to whole batches on the training device, one copy per patch, so augmentation costs
milliseconds per step rather than a data-loader pipeline. Randomness comes from an explicit ``torch.Generator`` whose state the
trainer checkpoints, so a resumed run draws the same augmentations.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["augment_batch", "orientation_moves", "orientations"]

# (B, C, z, y, x): spatial axes and the axial plane.
_SPATIAL_DIMS = (2, 3, 4)
_AXIAL_DIMS = (3, 4)


def augment_batch(
    patches: torch.Tensor, generator: torch.Generator, flips: bool, rot90: bool
) -> torch.Tensor:
    """Flip each patch along each spatial axis with p=1/2 and rotate it by k·90°, k ~ U{0..3}, in (y, x).

    Args:
        patches: (B, C, S, S, S); the axial plane must be square for rotations.
        generator: CPU generator the random choices come from.
        flips: enable the flips (``train.augment.flips``).
        rot90: enable the axial rotations (``train.augment.rot90``).

    Returns:
        (B, C, S, S, S), a new tensor (the input is not modified).
    """
    batch = patches.shape[0]
    flip_mask = torch.rand(batch, len(_SPATIAL_DIMS), generator=generator) < 0.5
    quarter_turns = torch.randint(0, 4, (batch,), generator=generator)
    # per patch, axes counted without the batch axis
    flip_dims = [[dim - 1 for dim, flip in zip(_SPATIAL_DIMS, row) if flip and flips] for row in flip_mask.tolist()]
    turns = [k if rot90 else 0 for k in quarter_turns.tolist()]
    if patches.device.type == "cpu":
        return _augment_numpy(patches, flip_dims, turns)
    axial = [dim - 1 for dim in _AXIAL_DIMS]
    return torch.stack([patch.flip(dims).rot90(k, axial) for patch, dims, k in zip(patches, flip_dims, turns)])


def _augment_numpy(patches: torch.Tensor, flip_dims: list[list[int]], turns: list[int]) -> torch.Tensor:
    """CPU path: numpy flips and rotations are strided views, so each patch costs one copy (torch.flip gathers)."""
    source = patches.detach().numpy()
    augmented = np.empty_like(source)
    axial = tuple(dim - 1 for dim in _AXIAL_DIMS)
    for index, (dims, k) in enumerate(zip(flip_dims, turns)):
        view = np.flip(source[index], dims) if dims else source[index]
        augmented[index] = np.rot90(view, k, axial)
    return torch.from_numpy(augmented)


def orientation_moves(flips: bool, rot90: bool) -> list[tuple[tuple[int, ...], int]]:
    """Each orientation ``augment_batch(…, flips, rot90)`` can draw, once, the identity first: (flipped
    batch dims, axial quarter turns). 16 with both (z flipped or not × the 8 symmetries of the square
    axial plane; a flip along x is a flip along y and a half turn), 8 with flips only, 4 with quarter
    turns only, 1 with neither."""
    turns = range(4) if rot90 else range(1)
    if flips and rot90:
        return [(dims, k) for dims in ((), (3,), (2,), (2, 3)) for k in turns]
    if flips:
        return [(tuple(d for d, f in zip(_SPATIAL_DIMS, bits) if f), 0)
                for bits in ((0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1))]
    return [((), k) for k in turns]


def orientations(patches: torch.Tensor, flips: bool, rot90: bool) -> Iterator[torch.Tensor]:
    """The patches in each orientation of ``orientation_moves(flips, rot90)``, the identity first.

    Args:
        patches: (B, C, S, S, S); the axial plane must be square when ``rot90``.

    Yields:
        (B, C, S, S, S) contiguous tensors.
    """
    if patches.dim() != 5 or (rot90 and patches.shape[3] != patches.shape[4]):
        raise ValueError(f"orientations need (B, C, Z, S, S) patches with a square axial plane, got {tuple(patches.shape)}")
    for dims, turns in orientation_moves(flips, rot90):
        flipped = patches.flip(dims) if dims else patches
        yield torch.rot90(flipped, turns, _AXIAL_DIMS).contiguous()
