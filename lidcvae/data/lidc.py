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
from lidcvae.intensity import HUWindow

__all__ = ["load", "manifest_path", "read_manifest_table", "load_patch_hu", "fit_patch"]

# Patch files are gzip NIfTI: zlib releases the GIL, so a few threads decode them in parallel.
_READ_THREADS = 4


def manifest_path(config: dict[str, Any]) -> Path:
    """``train.manifest``, or ``results_dir/name/extract/manifest.parquet`` when it is null."""
    configured = config.get("train", {}).get("manifest")
    if configured:
        return Path(configured)
    return Path(config.get("results_dir", "results")) / config.get("name", "phantom") / "extract" / "manifest.parquet"


def read_manifest_table(path: Path) -> pd.DataFrame:
    """The manifest with absolute ``image_path``/``mask_path`` (the extract stage's reader when present)."""
    try:
        from lidcvae.extract.manifest import read_manifest
    except ImportError:
        read_manifest = None
    if read_manifest is not None:
        return read_manifest(path)
    table = pd.read_parquet(path)
    for column in ("image_path", "mask_path"):
        table[column] = [str((path.parent / p).resolve()) for p in table[column]]
    return table


def load_patch_hu(image_path: str | Path) -> np.ndarray:
    """One image patch NIfTI (array axes x, y, z) → int16 HU array in (z, y, x) order."""
    return np.ascontiguousarray(np.asarray(nib.load(str(image_path)).dataobj, dtype=np.int16).transpose(2, 1, 0))


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
    table = read_manifest_table(path)
    table = table[table["split"] == split].reset_index(drop=True)
    table.insert(0, "id", table["nodule_id"].astype(str))
    model_config = config.get("model", {})
    size = model_config.get("input_size", 64)
    if table.empty:
        return LabelledImages(torch.zeros(0, 1, size, size, size), table)
    with ThreadPoolExecutor(_READ_THREADS) as pool:
        patches_hu = list(pool.map(load_patch_hu, table["image_path"]))
    images = torch.from_numpy(np.stack(patches_hu)).unsqueeze(1)
    images = fit_patch(images.float(), size, config.get("train", {}).get("patch_fit", "crop"))
    window = HUWindow(*model_config.get("hu_window", (-1000.0, 400.0)))
    return LabelledImages(window.to_unit(images).contiguous(), table)
