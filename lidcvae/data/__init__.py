"""Datasets as in-memory tensors: one registry, one ``load_split`` for every stage.

Contract for a dataset module (``lidc``, ``mnist`` ...): a function ``load(config, split)`` taking the full
validated config dict and a split name (``"train"``, ``"val"``, ``"test"``) and returning
``LabelledImages``:

- ``images``: float32 tensor (N, *event_shape) already in the model's input scale (for CT, HU windowed
  to [0, 1] by ``model.hu_window``; for MNIST, [0, 1] grey levels), ready for ``model.encode``;
- ``table``: pandas DataFrame with one row per image in the same order, holding at least ``id`` (str,
  unique), ``split`` and ``label`` (pandas Int64, <NA> where unknown), plus whatever the dataset knows
  (for LIDC every manifest column).

A split with no images gives an empty tensor (0, *event_shape) and an empty table with those columns.
Register the function below by import path, so importing the registry loads no dataset code.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

import pandas as pd
import torch

__all__ = ["DATASETS", "LabelledImages", "load_split"]

DATASETS: dict[str, str] = {
    "lidc": "lidcvae.data.lidc:load",
    "mnist": "lidcvae.data.mnist:load",
}


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


def load_split(config: dict[str, Any], split: str) -> LabelledImages:
    """Load ``split`` of the dataset named by ``config['dataset']`` into memory."""
    name = config.get("dataset", "lidc")
    if name not in DATASETS:
        raise KeyError(f"dataset: unknown dataset {name!r}; known: {sorted(DATASETS)}")
    module_name, function_name = DATASETS[name].split(":")
    loaded = getattr(import_module(module_name), function_name)(config, split)
    missing = {"id", "split", "label"} - set(loaded.table.columns)
    if missing or len(loaded.table) != len(loaded.images):
        raise ValueError(f"dataset {name!r}, split {split!r}: table lacks {sorted(missing)} or row count ≠ images")
    return loaded
