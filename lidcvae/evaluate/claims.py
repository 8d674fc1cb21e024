"""Every claim of structure beside its size-only control: the same statistic computed from diameter alone.

A small cohort's latent space can sort nodules by size and nothing else, and size alone predicts
malignancy well. So each structure statistic is paired with a diameter-only twin, and a claim that does
not beat it is not made:

- neighbour label agreement: the same queries and k, neighbours by |Δ diameter| instead of latent distance;
  the latent space is said to group by label only when its agreement exceeds both chance and diameter's;
- the probe: the latent AUC is said to beat size only when the lower end of its 95 % patient-bootstrap
  interval lies above the diameter baseline's mean AUC (``probe_verdict``);
- attribute vectors: the cosine of each with the size vector (large − small); one with
  |cosine| ≥ ``SIZE_COSINE_LIMIT`` (0.7) is mostly the diameter direction and is not drawn;
- PCA: the share of variance on PC1 and PC1's Pearson correlation with diameter.

The diameter is ``consensus_diameter_mm`` (readers' consensus volume) or ``diameter_mm`` (a coordinates
table's); MNIST has none, so none of these controls exist there and the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.decomposition import PCA

from lidcvae.evaluate.latent_views import nearest_neighbours

__all__ = ["SIZE_COSINE_LIMIT", "label_agreement", "cosine", "pc1_against_size", "probe_verdict"]

SIZE_COSINE_LIMIT = 0.7


def label_agreement(features: np.ndarray, labels: np.ndarray, asked: np.ndarray, k: int) -> float:
    """Share of the ``k`` nearest neighbours (Euclidean in ``features`` (N, F)) of each ``asked`` row that share
    its integer label (N,)."""
    near, _ = nearest_neighbours(np.asarray(features, np.float64).reshape(len(labels), -1), asked, k)
    return float((labels[near] == labels[asked][:, None]).mean())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors (0 when either is zero)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 0.0 if norm == 0 else float(np.dot(a, b) / norm)


def pc1_against_size(codes: np.ndarray, diameters: np.ndarray | None) -> dict[str, Any]:
    """PC1's share of the posterior means' variance and its Pearson r with diameter (mm) over the rows that
    have one; {} when the means do not vary."""
    codes = np.asarray(codes, np.float64)
    if len(codes) < 3 or np.allclose(codes.var(axis=0).sum(), 0.0):
        return {}
    pca = PCA(n_components=1).fit(codes)
    result: dict[str, Any] = {"pc1_variance_fraction": float(pca.explained_variance_ratio_[0])}
    if diameters is not None:
        known = np.isfinite(diameters)
        scores = pca.transform(codes)[known, 0]
        if known.sum() >= 3 and scores.std() > 0 and diameters[known].std() > 0:
            result["pc1_diameter_r"] = float(np.corrcoef(scores, diameters[known])[0, 1])
            result["pc1_diameter_samples"] = int(known.sum())
    return result


def probe_verdict(results: Mapping[str, Mapping[str, Any]], size: str | None) -> dict[str, Any]:
    """Does the latent probe beat the size-only probe (``size``'s baseline)? {} when either did not score."""
    latent, control = results.get("latent_means", {}), results.get(size or "", {})
    if latent.get("auc_mean") is None or control.get("auc_mean") is None:
        return {}
    low = latent.get("auc_ci_low")
    return {"size_column": size, "latent_auc": latent["auc_mean"], "size_auc": control["auc_mean"],
            "beats_size": bool(low is not None and low > control["auc_mean"]),
            "rule": "the latent AUC's 95 % interval lies wholly above the diameter-only AUC"}
