"""What a checkpoint's model is evaluated on, read before anything is computed: its data splits (with
consensus masks for CT), the embeddings, the training history and the report's extra fragments.

The workflow loads the checkpoint (``lidcvae.train.checkpoint.load_model``), reads its data here (``read_data``)
and hands both to ``lidcvae.evaluate.run.evaluate_run``, which only computes and writes.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from lidcvae.data.model_input import ModelInput
from lidcvae.embed import read_embeddings
from lidcvae.evaluate.provenance import NOT_SPLIT, cohort_mask_kind
from lidcvae.intensity import HUWindow

if TYPE_CHECKING:
    from lidcvae.data.mnist import MnistConfig

__all__ = ["SplitData", "EvaluationData", "read_data"]


@dataclass
class SplitData:
    """One split's inputs (N, *event_shape) in model scale, its table (one row per input) and, for CT,
    the consensus masks (N, 1, S, S, S) bool fitted like the inputs (None: taken from input channel 1
    of a two-channel model, else none)."""

    images: torch.Tensor
    table: pd.DataFrame
    masks: torch.Tensor | None = None


@dataclass(frozen=True)
class EvaluationData:
    """What ``evaluate_run`` evaluates a checkpoint's model on, read (``read_data``).

    Attributes:
        splits: ``train``/``val``/``test`` (one ``cohort`` split for weights trained elsewhere).
        embeddings: the embed stage's table (every split).
        history: the training metrics.csv, or None.
        hu_window: the model's HU window for CT; None for digits.
        extra_html: (heading, trusted HTML) sections from other stages.
        mask_kind: the cohort manifest's one ``mask_kind`` ('mixed' when several, None when not recorded).
    """

    splits: dict[str, SplitData]
    embeddings: pd.DataFrame
    history: pd.DataFrame | None
    hu_window: HUWindow | None
    extra_html: list[tuple[str, str]]
    mask_kind: str | None


def read_data(model_input: ModelInput, embeddings_path: str | os.PathLike, history_path: str | os.PathLike | None, *,
              manifest: str | os.PathLike | None = None, mnist: MnistConfig | None = None,
              extra_html: Sequence[str | os.PathLike] = (), trained_here: bool = True) -> EvaluationData:
    """Read what a checkpoint's model is evaluated on: its data splits (with consensus masks for CT), the
    embeddings and the training history.

    Args:
        model_input: the checkpoint's input record (``load_model(...).input``): how the manifest's patches
            become model input.
        embeddings_path: the table written by ``lidcvae.embed.embed_manifest``.
        history_path: the training history metrics.csv; None (or a missing file) draws no loss curves.
        manifest: the extraction manifest whose patches are evaluated (CT).
        mnist: the typed ``mnist`` section instead, for digits.
        extra_html: HTML fragments to include in the report (e.g. the MNIST size table), if they exist.
        trained_here: False when the weights were trained elsewhere (``embed.checkpoint``): the splits are
            then joined into one ``cohort``.
    """
    from lidcvae.data import PatchSource, load_split

    if (manifest is None) == (mnist is None):
        raise ValueError("read_data: give exactly one of manifest (CT patches) or mnist (digits)")
    source = mnist if mnist is not None else PatchSource.for_input(manifest, model_input)
    splits = {}
    for split in ("train", "val", "test"):
        loaded = load_split(source, split)
        table = loaded.table.reset_index(drop=True)
        splits[split] = SplitData(loaded.images, table, _consensus_masks(table, source))
    history = pd.read_csv(history_path) if history_path is not None and Path(history_path).is_file() else None
    embeddings = read_embeddings(embeddings_path)
    if not trained_here:  # the extraction's splits mean nothing to a model trained elsewhere
        splits, embeddings = {"cohort": _one_cohort(splits)}, embeddings.assign(split="not split")
    return EvaluationData(splits, embeddings, history, HUWindow.from_bounds(source.hu_window) if isinstance(source, PatchSource) else None,
                          [_fragment(Path(p)) for p in extra_html if Path(p).is_file()],
                          cohort_mask_kind({n: s.table for n, s in splits.items()}))


def _consensus_masks(table: pd.DataFrame, source: Any) -> torch.Tensor | None:
    """Masks from the mask files for a one-channel CT model, when every row has its file; else None
    (a two-channel model carries them as input channel 1; the coordinates route without a diameter has none)."""
    from lidcvae.data import PatchSource
    from lidcvae.data.lidc import masks_from_table

    if not isinstance(source, PatchSource) or source.mask_channel or "mask_path" not in table.columns:
        return None
    if not all(isinstance(p, str) and p and Path(p).is_file() for p in table["mask_path"]):
        return None
    return masks_from_table(table, source)


def _one_cohort(splits: Mapping[str, SplitData]) -> SplitData:
    """Every split's samples as one, their ``split`` column ``NOT_SPLIT``: a checkpoint run did not make them."""
    parts = [s for s in splits.values() if len(s.images)]
    table = pd.concat([s.table for s in parts], ignore_index=True).assign(split=NOT_SPLIT)
    masks = None if any(s.masks is None for s in parts) else torch.cat([s.masks for s in parts])
    return SplitData(torch.cat([s.images for s in parts]), table, masks)


def _fragment(path: Path) -> tuple[str, str]:
    """(heading, HTML) of another stage's fragment: its own first <h2> becomes the section heading."""
    text = path.read_text()
    found = re.match(r"\s*<h2>(.*?)</h2>", text, re.S)
    return (html.unescape(found.group(1)), text[found.end():]) if found else (path.stem, text)
