"""The representation benchmark's scoring: shared patient-grouped folds, linear probes, one table.

Every feature set (latents, radiomics, diameter, raw-voxel PCA ...) is scored on the same folds:
``repeated_grouped_folds`` assigns each *patient* to one of K folds, R times with different shuffles,
stratified by the malignancy label so every fold sees both classes. A probe is fitted on K−1 folds and
predicts the held-out fold. One repeat's score is the mean AUC over its K folds (binary), or the R² of
its K held-out predictions pooled (ordinal); a cell of the table is the mean ± sd over the R repeats.

Probes (features standardised inside each fold):

- binary target (malignancy label) → L2 logistic regression, its C ∈ {0.01, 0.1, 1} chosen by an inner 3-fold search;
  score = ROC AUC (0.5 = chance, 1 = perfect; higher is better);
- ordinal or continuous target (the 1–5 / 1–6 characteristics, log diameter) → ridge regression, its
  α chosen by efficient leave-one-out; score = R² of the out-of-fold predictions against the target
  (1 = perfect, 0 = no better than the training mean, negative = worse; higher is better). Spearman's
  ρ of the same predictions is kept alongside.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

__all__ = [
    "Target", "Score", "FeatureSet", "repeated_grouped_folds", "binary_probe", "ordinal_probe",
    "pca_probe", "score_target", "score_table", "format_table", "format_paired",
]

Fold = tuple[np.ndarray, np.ndarray]
RIDGE_ALPHAS = np.logspace(-2, 5, 15)
LOGISTIC_CS = (0.01, 0.1, 1.0)


@dataclass(frozen=True)
class Target:
    """One column to predict: ``kind`` is ``binary`` (scored by AUC) or ``ordinal`` (scored by R²)."""

    column: str
    kind: str
    title: str

    @property
    def metric(self) -> str:
        return "AUC" if self.kind == "binary" else "R²"


@dataclass
class Score:
    """Score of one feature set on one target, one value per repeat (NaN where unscorable)."""

    per_repeat: list[float] = field(default_factory=list)
    spearman: list[float] = field(default_factory=list)
    n_samples: int = 0

    @property
    def mean(self) -> float:
        values = np.asarray(self.per_repeat, float)
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    @property
    def sd(self) -> float:
        values = np.asarray(self.per_repeat, float)
        return float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else float("nan")


@dataclass
class FeatureSet:
    """A named (N, F) feature matrix aligned with the cohort table, and the probe factory to use.

    ``make_probe(kind)`` returns a fresh unfitted pipeline for ``binary`` or ``ordinal`` targets;
    ``skip`` lists target columns the features trivially encode (e.g. diameter → log diameter).
    """

    name: str
    features: np.ndarray
    make_probe: Callable[[str], Pipeline] | None = None
    skip: tuple[str, ...] = ()


def repeated_grouped_folds(
    groups: np.ndarray, strata: np.ndarray, n_splits: int, n_repeats: int, seed: int
) -> list[list[Fold]]:
    """R lists of K (train, test) index pairs; no group (patient) on both sides of any fold.

    Args:
        groups: (N,) patient IDs.
        strata: (N,) class used to balance folds (e.g. the label with NA as its own class).
        n_splits: K. n_repeats: R, each with its own shuffle (seed + repeat).

    Raises:
        ValueError: fewer groups than folds.
    """
    groups, strata = np.asarray(groups), np.asarray(strata)
    if len(np.unique(groups)) < n_splits:
        raise ValueError(f"{len(np.unique(groups))} patients cannot fill {n_splits} patient-grouped folds")
    repeats = []
    for repeat in range(n_repeats):
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + repeat)
        repeats.append(list(splitter.split(np.zeros(len(groups)), strata, groups)))
    return repeats


def binary_probe() -> Pipeline:
    """Standardise → L2 logistic regression with C ∈ LOGISTIC_CS from an inner 3-fold search (by AUC)."""
    return make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=LOGISTIC_CS, cv=3, scoring="roc_auc", max_iter=1000,
                                                                l1_ratios=(0.0,), use_legacy_attributes=False))


def ordinal_probe() -> Pipeline:
    """Standardise → ridge regression with α from efficient leave-one-out."""
    return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))


def default_probe(kind: str) -> Pipeline:
    return binary_probe() if kind == "binary" else ordinal_probe()


def pca_probe(n_components: int) -> Callable[[str], Pipeline]:
    """Probe factory with PCA(n_components) fitted inside each fold before the usual probe."""

    def make(kind: str) -> Pipeline:
        head = default_probe(kind)
        return Pipeline([("pca", PCA(n_components=n_components, random_state=0)), *head.steps])

    return make


def score_target(features: np.ndarray, values: np.ndarray, target: Target, repeats: list[list[Fold]],
                 make_probe: Callable[[str], Pipeline] = default_probe) -> Score:
    """Out-of-fold predictions of ``values`` (N,; NaN = missing, left out) from ``features`` (N, F).

    For each repeat, every fold's probe is fitted on the fold's training rows that have a value and
    predicts its test rows; scored by the mean fold AUC (binary) or the pooled R² (ordinal). Spearman's
    ρ is of the pooled predictions in both cases.
    """
    with threadpool_limits(1):  # BLAS threads only slow these small fits down
        return _score_target(features, values, target, repeats, make_probe)


def _score_target(features, values, target, repeats, make_probe) -> Score:
    features = np.asarray(features, np.float64).reshape(len(values), -1)
    values = np.asarray(values, np.float64)
    present = np.isfinite(values)
    score = Score(n_samples=int(present.sum()))
    for folds in repeats:
        predicted, fold_aucs = np.full(len(values), np.nan), []
        for train, test in folds:
            train, test = train[present[train]], test[present[test]]
            if len(test) == 0 or len(np.unique(values[train])) < 2:
                continue
            probe = make_probe(target.kind).fit(features[train], values[train])
            if target.kind == "binary":
                predicted[test] = probe.predict_proba(features[test])[:, 1]
                if len(np.unique(values[test])) == 2:
                    fold_aucs.append(roc_auc_score(values[test], predicted[test]))
            else:
                predicted[test] = probe.predict(features[test])
        scored = present & np.isfinite(predicted)
        truth, guess = values[scored], predicted[scored]
        if len(np.unique(truth)) < 2:
            score.per_repeat.append(float("nan"))
            score.spearman.append(float("nan"))
            continue
        # AUC per fold then averaged: pooling folds would mix each fold's intercept into the ranking.
        score.per_repeat.append(float(np.mean(fold_aucs)) if target.kind == "binary" and fold_aucs
                                else float("nan") if target.kind == "binary" else float(r2_score(truth, guess)))
        score.spearman.append(float(spearmanr(truth, guess).statistic))
    return score


def score_table(feature_sets: list[FeatureSet], table: pd.DataFrame, targets: list[Target],
                repeats: list[list[Fold]]) -> dict[str, dict[str, Score]]:
    """{feature set name: {target column: Score}} on the shared folds (skipped targets omitted)."""
    results: dict[str, dict[str, Score]] = {}
    for feature_set in feature_sets:
        results[feature_set.name] = {}
        for target in targets:
            if target.column in feature_set.skip:
                continue
            values = pd.to_numeric(table[target.column], errors="coerce").to_numpy(np.float64)
            results[feature_set.name][target.column] = score_target(
                feature_set.features, values, target, repeats, feature_set.make_probe or default_probe)
    return results


def format_table(results: Mapping[str, Mapping[str, Score]], targets: list[Target],
                 n_features: Mapping[str, int] | None = None) -> str:
    """Markdown table: rows = feature sets, columns = targets, cells ``mean ± sd`` ('–' = not scored)."""
    header = ["features", *(["dims"] if n_features else []), *(f"{t.title} ({t.metric})" for t in targets)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, scores in results.items():
        cells = [name, *([str(n_features.get(name, ""))] if n_features else [])]
        for target in targets:
            score = scores.get(target.column)
            if score is None or not np.isfinite(score.mean):
                cells.append("–")
            else:
                cells.append(f"{score.mean:.2f} ± {score.sd:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_paired(results: Mapping[str, Mapping[str, Score]], rows: list[str], reference: str,
                  targets: list[Target]) -> str:
    """Markdown table of each row's score minus ``reference``'s, paired repeat by repeat on the shared folds.

    Both scores of a repeat come from the same patient folds, so the fold-to-fold luck that makes a
    cell's ± wide cancels in the difference. Cell: ``mean ± sd`` over the repeats of (row − reference),
    positive = the row scores higher (better), and in how many repeats the row scored at least as high.
    """
    header = ["features", *(f"{t.title} (Δ{t.metric})" for t in targets)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in rows:
        cells = [f"{name} − {reference}"]
        for target in targets:
            row, base = results[name].get(target.column), results[reference].get(target.column)
            if row is None or base is None:
                cells.append("–")
                continue
            difference = np.asarray(row.per_repeat, float) - np.asarray(base.per_repeat, float)
            scored = difference[np.isfinite(difference)]
            if len(scored) == 0:
                cells.append("–")
                continue
            sd = f"{np.std(scored, ddof=1):.2f}" if len(scored) > 1 else "–"
            mean = round(float(np.mean(scored)), 2) + 0.0  # + 0.0: no "-0.00"
            cells.append(f"{mean:+.2f} ± {sd} ({int((scored >= 0).sum())}/{len(scored)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
