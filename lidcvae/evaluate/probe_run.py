"""The probe section of the evaluation: latent means against the diameter and raw-voxel PCA baselines."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lidcvae.embed import posterior_arrays
from lidcvae.evaluate.probe import grouped_folds, logistic_probe, pca_logistic_probe, probe_auc
from lidcvae.evaluate.settings import ProbeSettings

__all__ = ["labelled_rows", "raw_voxels_for", "run_probe"]


def labelled_rows(embeddings: pd.DataFrame, settings: ProbeSettings) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows with a label, their labels recoded to 0..C−1, and their groups (row index without a group column)."""
    labelled = embeddings[embeddings[settings.label_column].notna()].reset_index(drop=True)
    _, labels = np.unique(labelled[settings.label_column].astype("int64").to_numpy(), return_inverse=True)
    if settings.group_column in labelled.columns:
        groups = labelled[settings.group_column].astype(str).to_numpy()
    else:
        groups = np.arange(len(labelled)).astype(str)
    return labelled, labels, groups


def _key_column(embeddings: pd.DataFrame, tables: list[pd.DataFrame]) -> str | None:
    for column in ("nodule_id", "id"):
        if column in embeddings.columns and all(column in t.columns for t in tables):
            return column
    return None


def raw_voxels_for(rows: pd.DataFrame, splits: Mapping, stride: int) -> np.ndarray | None:
    """The input voxels (N, F) of ``rows``, matched by nodule_id (or id), every ``stride``-th voxel per axis."""
    parts = list(splits.values())
    key = _key_column(rows, [p.table for p in parts])
    if key is None:
        return None
    position = {}
    for part_index, part in enumerate(parts):
        position.update({k: (part_index, i) for i, k in enumerate(part.table[key].astype(str))})
    if not all(k in position for k in rows[key].astype(str)):
        return None
    picks = [position[k] for k in rows[key].astype(str)]
    spatial = (slice(None),) * 1 + (slice(None, None, stride),) * (parts[0].images.ndim - 2)
    return np.stack([parts[p].images[i][spatial].numpy().ravel() for p, i in picks])


def run_probe(embeddings: pd.DataFrame, splits: Mapping, settings: ProbeSettings, seed: int) -> tuple[dict, list[str]]:
    """AUC of a logistic regression on the posterior means and on each baseline, under the same grouped folds."""
    if settings.label_column not in embeddings.columns:
        note = f"probe skipped: no label column '{settings.label_column}' in the embeddings"
        return {"skipped": note, "results": {}}, [note]
    rows, labels, groups = labelled_rows(embeddings, settings)
    folds, notes = grouped_folds(labels, groups, settings.n_splits, seed)
    section = {"label_column": settings.label_column, "labelled_samples": len(rows), "folds": len(folds), "results": {}}
    if not folds:
        section["skipped"] = notes[0]
        return section, notes
    means = posterior_arrays(rows)[0]
    section["patients"] = len(np.unique(groups))
    common = {"bootstrap_samples": settings.bootstrap_samples, "seed": seed, "groups": groups}
    results = [probe_auc("latent_means", means, labels, folds, logistic_probe, **common)]
    for column in settings.baseline_columns:
        if column in rows.columns:
            results.append(probe_auc(column, rows[[column]].to_numpy(), labels, folds, logistic_probe, **common))
        else:
            notes.append(f"baseline '{column}' skipped: no such column")
    if settings.raw_voxel_pca:
        voxels = raw_voxels_for(rows, splits, settings.voxel_stride)
        if voxels is None:
            notes.append("raw-voxel PCA baseline skipped: inputs of the labelled rows not found")
        else:
            components = min(means.shape[1], min(len(train) for train, _ in folds), voxels.shape[1])
            if components < means.shape[1]:
                notes.append(f"raw-voxel PCA baseline uses {components} components (not {means.shape[1]}): "
                             "capped by the smallest training fold")
            results.append(probe_auc(f"raw_voxel_pca{components}", voxels, labels, folds, pca_logistic_probe(components),
                                     n_features=components, **common))
            section["raw_voxel_count"] = int(voxels.shape[1])
    for result in results:
        notes += result.notes
        section["results"][result.name] = {k: v for k, v in result.to_dict().items() if k not in ("name", "notes")}
    return section, notes
