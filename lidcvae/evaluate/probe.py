"""Downstream probe: how well a linear classifier reads a label off a representation.

A standardised logistic regression, cross-validated in folds grouped by patient (no patient in both
the training and the test side of a fold), scored by ROC AUC: the mean over folds, with a bootstrap
95% interval that resamples *patients* (a patient's nodules are correlated, so resampling nodules would
understate the spread). Baselines use the very same folds. For a binary label the pooled out-of-fold
scores also give a ROC curve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import rankdata
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["ProbeResult", "grouped_folds", "logistic_probe", "pca_logistic_probe", "probe_auc"]

Fold = tuple[np.ndarray, np.ndarray]


@dataclass
class ProbeResult:
    """One representation's cross-validated AUC; ``auc_mean`` is None when no fold could be scored."""

    name: str
    n_features: int
    n_samples: int
    auc_mean: float | None = None
    auc_ci_low: float | None = None
    auc_ci_high: float | None = None
    n_patients: int = 0
    fold_aucs: list[float] = field(default_factory=list)
    roc_fpr: list[float] = field(default_factory=list)
    roc_tpr: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def grouped_folds(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> tuple[list[Fold], list[str]]:
    """Stratified folds with no group on both sides; ([], [note]) when there are too few samples.

    Args:
        labels: (N,) integer class labels.
        groups: (N,) group keys (patient IDs), one fold side per group.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    n_groups, classes = len(np.unique(groups)), np.unique(labels)
    if len(classes) < 2 or n_groups < n_splits:
        note = (
            f"probe skipped: {len(labels)} labelled samples from {n_groups} patients in {len(classes)} "
            f"class(es); {n_splits}-fold grouped cross-validation needs at least {n_splits} patients and 2 classes."
        )
        return [], [note]
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups)), []


def logistic_probe() -> Pipeline:
    """Standardise every feature, then an L2 logistic regression (C = 1)."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def pca_logistic_probe(n_components: int) -> Callable[[], Pipeline]:
    """A factory for PCA(n_components) → standardise → logistic regression, fitted inside each fold."""
    return lambda: make_pipeline(PCA(n_components=n_components, random_state=0), StandardScaler(), LogisticRegression(max_iter=2000))


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Binary AUC on the positive-class column, one-vs-rest macro AUC for more classes.

    The same numbers as scikit-learn's ``roc_auc_score`` (``multi_class="ovr"``, macro), from ranks: the
    bootstrap calls this thousands of times, and sklearn's input checks made MNIST's probe take 90 s.
    """
    if scores.shape[1] == 2:
        return _binary_auc(labels == 1, scores[:, 1])
    return float(np.mean([_binary_auc(labels == c, scores[:, c]) for c in range(scores.shape[1])]))


def _binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann–Whitney U / (n₊·n₋))."""
    ranks = rankdata(scores)
    n_positive = int(positive.sum())
    n_negative = len(positive) - n_positive
    return float((ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def _scorable(labels: np.ndarray, n_classes: int) -> bool:
    return len(np.unique(labels)) == n_classes


def _bootstrap_mean_auc(
    fold_predictions: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_classes: int, bootstrap_samples: int, seed: int
) -> tuple[float | None, float | None]:
    """2.5 and 97.5 percentiles of the mean fold AUC when patients are resampled with replacement.

    Args:
        fold_predictions: per fold (labels (n,), scores (n, C), patient codes (n,) in 0..P−1); every
            patient sits on the test side of exactly one fold, so a drawn patient brings all its nodules
            (as many times as it was drawn) into its own fold.
    """
    rng = np.random.default_rng(seed)
    n_patients = 1 + max(int(groups.max()) for _, _, groups in fold_predictions)
    means = []
    for _ in range(bootstrap_samples):
        draws = np.bincount(rng.integers(0, n_patients, n_patients), minlength=n_patients)
        aucs = []
        for labels, scores, groups in fold_predictions:
            pick = np.repeat(np.arange(len(labels)), draws[groups])
            if _scorable(labels[pick], n_classes):
                aucs.append(_auc(labels[pick], scores[pick]))
        if aucs:
            means.append(np.mean(aucs))
    if not means:
        return None, None
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def probe_auc(
    name: str,
    features: np.ndarray,
    labels: np.ndarray,
    folds: list[Fold],
    make_classifier: Callable[[], Pipeline] = logistic_probe,
    *,
    bootstrap_samples: int,
    seed: int,
    groups: np.ndarray | None = None,
    n_features: int | None = None,
) -> ProbeResult:
    """Cross-validated AUC of ``make_classifier()`` on ``features`` (N, F) predicting ``labels`` (N,).

    Labels must be integers 0..C−1. A fold whose training or test side lacks a class is skipped
    with a note, never a crash.

    Args:
        bootstrap_samples: patient resamples for the 95% interval (``evaluate.probe.bootstrap_samples``).
        seed: seed of the bootstrap (``evaluate.seed``).
        groups: (N,) patient keys for the bootstrap; None resamples rows (each its own patient).
        n_features: what the classifier sees when it is not F (e.g. the PCA components of raw voxels).
    """
    features, labels = np.asarray(features, np.float64).reshape(len(labels), -1), np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    _, patient_codes = np.unique(groups.astype(str), return_inverse=True)
    result = ProbeResult(name=name, n_features=n_features or features.shape[1], n_samples=len(labels),
                         n_patients=int(patient_codes.max()) + 1 if len(labels) else 0)
    n_classes = len(np.unique(labels))
    fold_predictions = []
    for index, (train, test) in enumerate(folds):
        if not (_scorable(labels[train], n_classes) and _scorable(labels[test], n_classes)):
            result.notes.append(f"{name}: fold {index + 1} skipped, a class is missing from one side")
            continue
        classifier = make_classifier().fit(features[train], labels[train])
        fold_predictions.append((labels[test], classifier.predict_proba(features[test]), patient_codes[test]))
        result.fold_aucs.append(_auc(*fold_predictions[-1][:2]))
    if result.fold_aucs:
        result.auc_mean = float(np.mean(result.fold_aucs))
        result.auc_ci_low, result.auc_ci_high = _bootstrap_mean_auc(fold_predictions, n_classes, bootstrap_samples, seed)
        if n_classes == 2:
            pooled_labels = np.concatenate([p[0] for p in fold_predictions])
            fpr, tpr, _ = roc_curve(pooled_labels, np.concatenate([p[1][:, 1] for p in fold_predictions]))
            result.roc_fpr, result.roc_tpr = fpr.tolist(), tpr.tolist()
    elif folds:
        result.notes.append(f"{name}: no fold could be scored")
    return result
