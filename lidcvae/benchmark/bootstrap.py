"""Patient-bootstrap intervals of the test scores, one set of resamples shared by every row.

A resample draws the test split's P patients with replacement; a nodule then counts as many times as its
patient was drawn. Rather than copy nodules, each resample is a (P,) count vector and a score is computed
with those counts as nodule weights: the weighted AUC / R² of a resample equals the plain score of the
copied nodules. Every row and target uses the same (B, P) counts, so a row's and its reference's scores
on resample b come from the same patients, and their difference is paired.

Interval: the 2.5th and 97.5th percentiles of the B resampled scores (or differences); a resample where
a score is undefined (an AUC whose drawn patients hold one class) is left out.
"""

from __future__ import annotations

import numpy as np

__all__ = ["patient_resamples", "weighted_auc", "weighted_r2", "score_metric", "percentile_interval"]


def patient_resamples(n_patients: int, n_resamples: int, seed: int) -> np.ndarray:
    """(B, P) integer counts: how often each of the P test patients is drawn in each of the B resamples."""
    rng = np.random.default_rng([seed, 27])
    draws = rng.integers(0, n_patients, size=(n_resamples, n_patients))
    counts = np.zeros((n_resamples, n_patients), np.int64)
    np.add.at(counts, (np.arange(n_resamples)[:, None], draws), 1)
    return counts


def weighted_auc(truth: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of ``score`` (N,) for binary ``truth`` (N,) under each row of ``weights`` (B, N) → (B,).

    Mann–Whitney form: the weighted share of (positive, negative) pairs the score orders correctly, ties
    counting one half. NaN where a resample holds no positive or no negative.
    """
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    order = np.argsort(score, kind="stable")
    sorted_score, positive = np.asarray(score)[order], np.asarray(truth)[order] == 1
    w = weights[:, order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    group = np.cumsum(np.r_[True, sorted_score[1:] != sorted_score[:-1]]) - 1
    negative_in_group = np.add.reduceat(w * ~positive, starts, axis=1)
    negative_below = np.cumsum(negative_in_group, axis=1) - negative_in_group
    correct = (w * positive * (negative_below[:, group] + 0.5 * negative_in_group[:, group])).sum(axis=1)
    pairs = (w * positive).sum(axis=1) * (w * ~positive).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, correct / np.where(pairs > 0, pairs, 1.0), np.nan)


def weighted_r2(truth: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """R² of ``predicted`` (N,) against ``truth`` (N,) under each row of ``weights`` (B, N) → (B,).

    1 − Σw(y − ŷ)² / Σw(y − ȳ_w)², ȳ_w the weighted mean of the resample; NaN where its truth is constant.
    """
    weights = np.atleast_2d(np.asarray(weights, np.float64))
    truth, predicted = np.asarray(truth, np.float64), np.asarray(predicted, np.float64)
    total = weights.sum(axis=1, keepdims=True)
    mean = (weights * truth).sum(axis=1, keepdims=True) / np.where(total > 0, total, 1.0)
    spread = (weights * (truth - mean) ** 2).sum(axis=1)
    residual = (weights * (truth - predicted) ** 2).sum(axis=1)
    # a constant truth leaves a spread of float rounding, not zero: compare against the values' scale
    defined = spread > 1e-12 * np.maximum(1.0, (weights * truth**2).sum(axis=1))
    return np.where(defined, 1.0 - residual / np.where(defined, spread, 1.0), np.nan)


def score_metric(kind: str, truth: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC for ``kind == "binary"``, else R², under each row of ``weights`` (B, N) → (B,)."""
    return (weighted_auc if kind == "binary" else weighted_r2)(truth, predicted, weights)


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """(2.5th, 97.5th) percentile of the finite ``values``; (NaN, NaN) when none is finite."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)
