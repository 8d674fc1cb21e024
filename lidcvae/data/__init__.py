"""Datasets as in-memory tensors: one registry, one ``load_split`` for every stage.

A split is loaded from a *data source*: a ``PatchSource`` (CT patches named by an extraction
manifest, fitted and windowed for one model) or an ``MnistConfig`` (the typed ``mnist`` section).
Each source type has one loader module, registered below by import path (so importing the registry
loads no dataset code), with a function ``load(source, split)`` returning ``LabelledImages``:

- ``images``: float32 tensor (N, *event_shape) already in the model's input scale (for CT, HU windowed
  to [0, 1] by ``model.hu_window``; for MNIST, [0, 1] grey levels), ready for ``model.encode``;
- ``table``: pandas DataFrame with one row per image in the same order, holding at least ``id`` (str,
  unique), ``split`` and ``label`` (pandas Int64, <NA> where unknown), plus whatever the dataset knows
  (for LIDC every manifest column).

A split with no images gives an empty tensor (0, *event_shape) and an empty table with those columns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import pandas as pd
import torch

__all__ = ["DATASETS", "LabelledImages", "PatchSource", "data_source", "load_split"]

# Loader of each source type, by the type's name.
DATASETS: dict[str, str] = {
    "PatchSource": "lidcvae.data.lidc:load",
    "MnistConfig": "lidcvae.data.mnist:load",
}


@dataclass(frozen=True)
class PatchSource:
    """CT nodule patches as one model sees them.

    Attributes:
        manifest: the extraction manifest (its ``image_path`` column names the patch NIfTI files).
        input_size: S, the model's input edge in voxels (patches are cropped or resampled to S³).
        hu_window: (lower, upper) HU mapped to [0, 1].
        patch_fit: ``crop`` or ``resample`` (``train.patch_fit``).
        mask_channel: the consensus mask (manifest ``mask_path``) follows the image as channel 1.
        context_voxels: None for the whole patch; r ≥ 0 keeps the image only within r voxels (a cube of
            edge 2r + 1) of the consensus mask (``model.context: nodule``) and sets the rest to ``fill_hu``.
        fill_hu: HU of the voxels outside the kept region (``model.context.fill_hu``).
    """

    manifest: Path
    input_size: int
    hu_window: tuple[float, float]
    patch_fit: str
    mask_channel: bool
    context_voxels: int | None
    fill_hu: float

    @classmethod
    def for_input(cls, manifest: str | os.PathLike, model_input: Any) -> PatchSource:
        """The patches of ``manifest`` as a model with input record ``model_input`` (``ModelInput``) sees them."""
        return cls(Path(manifest), int(model_input.input_size), tuple(model_input.hu_window), model_input.patch_fit,
                   bool(model_input.mask_channel), model_input.context_voxels, float(model_input.fill_hu))


def data_source(dataset: str, manifest: str | os.PathLike | None, model_input: Any, mnist: Any):
    """The source of a run's data: MNIST digits (``mnist``) or the patches of ``manifest`` as ``model_input``
    (``ModelInput``) makes them."""
    if dataset == "mnist":
        return mnist
    if manifest is None:
        raise ValueError("dataset lidc needs a manifest path (the extract stage's manifest.parquet)")
    return PatchSource.for_input(manifest, model_input)


@dataclass
class LabelledImages:
    """Images of one split and their table, row i describing ``images[i]``.

    Attributes:
        images: (N, *event_shape) float32 in model input scale, e.g. (N, 1, 64, 64, 64).
        table: N rows with at least ``id``, ``split`` and ``label`` columns.
    """

    images: torch.Tensor
    table: pd.DataFrame

    def __len__(self) -> int:
        return len(self.images)


def load_split(source: Any, split: str) -> LabelledImages:
    """Load ``split`` of a data source (``PatchSource`` or ``MnistConfig``) into memory."""
    kind = type(source).__name__
    if kind not in DATASETS:
        raise TypeError(f"no dataset loader for a {kind}; known sources: {sorted(DATASETS)}")
    module_name, function_name = DATASETS[kind].split(":")
    loaded = getattr(import_module(module_name), function_name)(source, split)
    missing = {"id", "split", "label"} - set(loaded.table.columns)
    if missing or len(loaded.table) != len(loaded.images):
        raise ValueError(f"{kind}, split {split!r}: table lacks {sorted(missing)} or row count ≠ images")
    return loaded
