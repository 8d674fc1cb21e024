"""The benchmark's linear probes, their regularisation chosen by patient-grouped CV on the fitting split only.

- binary target → standardise → L2 logistic regression, C ∈ ``LOGISTIC_CS``, chosen by the mean AUC of
  the inner folds (StratifiedGroupKFold: no patient on both sides, both classes in every fold where possible);
- ordinal / continuous target → standardise → ridge, α ∈ ``RIDGE_ALPHAS``, chosen by the pooled R² of the
  inner folds' held-out predictions (GroupKFold).

Folds are shuffled with the benchmark's seed; a tie goes to the stronger regularisation. The chosen probe is
refitted on all the rows it was given: the caller passes train (to score val) or train + val (to score test),
never a test nodule.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from lidcvae.evaluate.representation import LOGISTIC_CS, RIDGE_ALPHAS

__all__ = ["make_probe", "fit_probe", "probe_predict"]


def make_probe(kind: str, strength: float) -> Pipeline:
    """Unfitted probe: logistic with C = ``strength`` (binary), else ridge with α = ``strength``."""
    if kind == "binary":
        return make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=2000))
    return make_pipeline(StandardScaler(), Ridge(alpha=strength))


def _candidates(kind: str) -> list[float]:
    """Strongest regularisation first, so ``argmax``'s first-of-ties is the most regularised."""
    return sorted(LOGISTIC_CS) if kind == "binary" else sorted(RIDGE_ALPHAS, reverse=True)


def probe_predict(probe: Pipeline, kind: str, features: np.ndarray) -> np.ndarray:
    """(N,) malignancy probability (binary) or predicted value (ordinal)."""
    return probe.predict_proba(features)[:, 1] if kind == "binary" else probe.predict(features)


def _inner_folds(values: np.ndarray, groups: np.ndarray, kind: str, inner_folds: int, seed: int) -> list:
    n_folds = min(inner_folds, len(np.unique(groups)))
    if n_folds < 2:
        return []
    splitter = (StratifiedGroupKFold if kind == "binary" else GroupKFold)(n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(values)), values, groups))


def _inner_score(features, values, folds, kind: str, strength: float) -> float:
    held_out, fold_aucs = np.full(len(values), np.nan), []
    for train, test in folds:
        if len(np.unique(values[train])) < 2:
            continue
        probe = make_probe(kind, strength).fit(features[train], values[train])
        held_out[test] = probe_predict(probe, kind, features[test])
        if kind == "binary" and len(np.unique(values[test])) == 2:
            fold_aucs.append(roc_auc_score(values[test], held_out[test]))
    if kind == "binary":  # per fold: pooling would mix each fold's intercept into one ranking
        return float(np.mean(fold_aucs)) if fold_aucs else float("nan")
    scored = np.isfinite(held_out)
    return float(r2_score(values[scored], held_out[scored])) if scored.sum() > 1 else float("nan")


def fit_probe(features: np.ndarray, values: np.ndarray, groups: np.ndarray, kind: str, inner_folds: int,
              seed: int) -> tuple[Pipeline, float] | None:
    """The probe with its regularisation chosen by ``inner_folds`` patient-grouped folds, refitted on all rows.

    Args:
        features: (N, F) finite. values: (N,) finite targets. groups: (N,) patient IDs.

    Returns:
        (fitted probe, chosen C or α), or None when ``values`` hold a single value (nothing to fit).
    """
    if len(values) < 2 or len(np.unique(values)) < 2:
        return None
    candidates = _candidates(kind)
    folds = _inner_folds(values, groups, kind, inner_folds, seed)
    scores = np.array([_inner_score(features, values, folds, kind, c) for c in candidates]) if folds else np.array([])
    # no usable fold (too few patients or classes): the middle of the grid rather than an extreme
    chosen = candidates[int(np.nanargmax(scores))] if np.isfinite(scores).any() else candidates[len(candidates) // 2]
    return make_probe(kind, chosen).fit(features, values), chosen
