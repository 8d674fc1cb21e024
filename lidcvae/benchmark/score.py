"""Score every row of the benchmark once on the test patients, with patient-bootstrap intervals and paired rows.

For each row (a ``FeatureRow``, see ``lidcvae.benchmark.rows``) and each target
(``lidcvae.benchmark.targets``) not in the row's ``skip``:

- selection score: a probe (``lidcvae.benchmark.probes``) chosen and fitted on **train** only, scored on
  **val**, the split every choice (variant, epochs, probe) may be made on;
- test score: a probe chosen and fitted on **train + val**, scored once on **test**: AUC (binary) or R²
  (ordinal), with a patient-bootstrap 95 % interval (``lidcvae.benchmark.bootstrap``);
- paired differences: the row's test score minus the control row's (the untrained copy), minus
  consensus diameter alone's and, where the run has it, minus pyradiomics' (``RADIOMICS_ROW``), on the test
  nodules both rows have, the interval from the same resamples.

A nodule enters a row's fit and score only where it has the target and finite features for that row.
A cell that cannot be scored (no test patient, fewer than 2 of them, one class or one value on either side
of the probe, a row whose sidecar says it is ``unscored``) has status ``skipped`` and a ``reason`` in words;
so has a target the row's features contain.
A split may be empty (a cohort of one or two patients): its cells say so rather than stop the table.
``score_benchmark`` returns the long table ``table.csv`` holds; ``lidcvae.benchmark.table`` formats it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from lidcvae.benchmark.bootstrap import patient_resamples, percentile_interval, score_metric
from lidcvae.benchmark.rows import (DIAMETER_ROW, RADIOMICS_ROW, BenchmarkInputError, FeatureRow,
                                   consensus_diameter_row, read_feature_set, with_diameter)
from lidcvae.benchmark.probes import fit_probe, probe_predict
from lidcvae.benchmark.settings import BenchmarkConfig
from lidcvae.benchmark.table import CONTAINS_TARGET, format_markdown
from lidcvae.benchmark.targets import benchmark_targets, target_values
from lidcvae.evaluate.representation import Target
from lidcvae.io import atomic_path, read_parquet

__all__ = ["TABLE_COLUMNS", "score_benchmark", "score_files"]

log = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "row", "title", "kind", "target", "target_title", "metric", "status", "reason", "n_test_nodules", "n_test_patients",
    "test", "ci_low", "ci_high", "val", "n_val_nodules", "diff_vs_control", "diff_vs_control_ci_low",
    "diff_vs_control_ci_high", "diff_vs_diameter", "diff_vs_diameter_ci_low", "diff_vs_diameter_ci_high",
    "diff_vs_radiomics", "diff_vs_radiomics_ci_low", "diff_vs_radiomics_ci_high",
]


@dataclass
class _Cohort:
    """The manifest's splits as boolean masks, and each test nodule's patient as an index into the resamples."""

    manifest: pd.DataFrame
    splits: dict[str, np.ndarray]
    patients: np.ndarray  # (N,) patient IDs
    test_patient: np.ndarray  # (N,) index into the sorted test patients, −1 off the test split
    resamples: np.ndarray  # (B, P) patient counts


def _cohort(manifest: pd.DataFrame, settings: BenchmarkConfig) -> _Cohort:
    missing = [c for c in ("nodule_id", "patient_id", "split") if c not in manifest.columns]
    if missing:
        raise BenchmarkInputError(f"the manifest has no column {', '.join(missing)}")
    manifest = manifest.reset_index(drop=True).assign(nodule_id=lambda m: m["nodule_id"].astype(str))
    split = manifest["split"].astype(str).to_numpy()
    splits = {name: split == name for name in ("train", "val", "test")}
    for name, mask in splits.items():
        if not mask.any():  # a cohort of a few patients; each cell it leaves unscored says why
            log.warning("the manifest's %s split holds no nodule", name)
    patients = manifest["patient_id"].astype(str).to_numpy()
    test_patients, index = np.unique(patients[splits["test"]], return_inverse=True)
    test_patient = np.full(len(manifest), -1)
    test_patient[splits["test"]] = index
    resamples = patient_resamples(len(test_patients), settings.bootstrap_samples, settings.seed)
    return _Cohort(manifest, splits, patients, test_patient, resamples)


def _aligned(row: FeatureRow, manifest: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(N, F) features in manifest order and (N,) whether the nodule has them all finite."""
    features = row.features.reindex(manifest["nodule_id"]).to_numpy(np.float64)
    return features, np.isfinite(features).all(axis=1)


def _predictions(row: FeatureRow, target: Target, cohort: _Cohort, settings: BenchmarkConfig) -> dict:
    """Val predictions of the train-only probe and test predictions of the train + val probe (NaN = not scored)."""
    features, has_features = _aligned(row, cohort.manifest)
    values = target_values(cohort.manifest, target)
    usable = has_features & np.isfinite(values)
    result = {"values": values, "usable": usable, "val": np.full(len(values), np.nan),
              "test": np.full(len(values), np.nan)}
    for fit_on, score_on in ((("train",), "val"), (("train", "val"), "test")):
        fit_rows = usable & np.logical_or.reduce([cohort.splits[s] for s in fit_on])
        fitted = fit_probe(features[fit_rows], values[fit_rows], cohort.patients[fit_rows], target.kind,
                           settings.inner_folds, settings.seed)
        score_rows = usable & cohort.splits[score_on]
        if fitted is not None and score_rows.any():
            result[score_on][score_rows] = probe_predict(fitted[0], target.kind, features[score_rows])
    return result


def _test_scores(kind: str, values: np.ndarray, predicted: np.ndarray, mask: np.ndarray,
                 cohort: _Cohort) -> tuple[float, np.ndarray]:
    """The point score on the masked test nodules and its (B,) resampled scores."""
    truth, guess, patient = values[mask], predicted[mask], cohort.test_patient[mask]
    point = float(score_metric(kind, truth, guess, np.ones((1, len(truth))))[0]) if mask.any() else float("nan")
    return point, score_metric(kind, truth, guess, cohort.resamples[:, patient]) if mask.any() else np.array([])


def _paired(kind: str, row: dict, reference: dict | None, cohort: _Cohort) -> tuple[float, float, float]:
    """Row minus reference on the test nodules both scored: (difference, 95 % low, high); NaN if either is missing."""
    if reference is None:
        return float("nan"), float("nan"), float("nan")
    both = np.isfinite(row["test"]) & np.isfinite(reference["test"])
    if not both.any():
        return float("nan"), float("nan"), float("nan")
    row_point, row_boot = _test_scores(kind, row["values"], row["test"], both, cohort)
    ref_point, ref_boot = _test_scores(kind, reference["values"], reference["test"], both, cohort)
    return (row_point - ref_point, *percentile_interval(row_boot - ref_boot))


def _record(row: FeatureRow, target: Target, status: str, reason: str = "") -> dict:
    record = dict.fromkeys(TABLE_COLUMNS, float("nan"))
    record.update(row=row.name, title=row.title, kind=row.kind, target=target.column, target_title=target.title,
                  metric=target.metric, status=status, reason=reason, n_test_nodules=0, n_test_patients=0,
                  n_val_nodules=0)
    return record


def _one_value(values: np.ndarray) -> bool:
    return len(np.unique(values)) < 2


def _why_unscored(target: Target, predicted: dict, cohort: _Cohort) -> str:
    """Why the test cell has no score, in words ('' when it has one): every reason that applies, '; '-joined."""
    values, usable, test = predicted["values"], predicted["usable"], cohort.splits["test"]
    tested, fitted = usable & test, usable & (cohort.splits["train"] | cohort.splits["val"])
    same = "one class" if target.kind == "binary" else "one value"
    reasons = []
    if not test.any():
        reasons.append("the test split holds no patient")
    elif not tested.any():
        reasons.append(f"no test nodule has {target.title} and this row's features")
    else:
        if len(np.unique(cohort.patients[tested])) < 2:
            reasons.append("1 test patient (a patient-bootstrap interval needs 2 or more)")
        if _one_value(values[tested]):
            reasons.append(f"the {int(tested.sum())} test nodule(s) hold {same} only")
    if not fitted.any():
        reasons.append(f"no train or val nodule has {target.title} and this row's features: nothing to fit")
    elif _one_value(values[fitted]):
        reasons.append(f"the {int(fitted.sum())} train + val nodule(s) hold {same} only: nothing to fit")
    return "; ".join(reasons)


def _scored(row: FeatureRow, target: Target, predicted: dict, references: dict, cohort: _Cohort) -> dict:
    tested = predicted["usable"] & cohort.splits["test"]
    valued = np.isfinite(predicted["val"])
    reason = _why_unscored(target, predicted, cohort)
    record = _record(row, target, "skipped" if reason else "scored", reason)
    record.update(n_test_nodules=int(tested.sum()), n_test_patients=len(np.unique(cohort.patients[tested])),
                  n_val_nodules=int((predicted["usable"] & cohort.splits["val"]).sum()))
    if valued.any():
        val_truth, val_guess = predicted["values"][valued], predicted["val"][valued]
        record["val"] = float(score_metric(target.kind, val_truth, val_guess, np.ones((1, len(val_truth))))[0])
    if reason:
        return record
    point, resampled = _test_scores(target.kind, predicted["values"], predicted["test"], tested, cohort)
    record.update(test=point, **dict(zip(("ci_low", "ci_high"), percentile_interval(resampled))))
    for name, reference in references.items():
        difference = _paired(target.kind, predicted, reference, cohort)
        record.update(zip((f"diff_vs_{name}", f"diff_vs_{name}_ci_low", f"diff_vs_{name}_ci_high"), difference))
    return record


def score_benchmark(manifest: pd.DataFrame, rows: Sequence[FeatureRow], control: str,
                    settings: BenchmarkConfig) -> pd.DataFrame:
    """The long score table: one record per (row, target), columns ``TABLE_COLUMNS``, rows in the given order.

    Args:
        manifest: the cohort manifest (nodule_id, patient_id, split ∈ train/val/test, the targets' columns).
        rows: the rows to score. Consensus diameter alone (``DIAMETER_ROW``) is added from the manifest
            when no row of that name is given: every row is paired against it. Each ``model`` row is followed
            by itself + consensus diameter (``rows.with_diameter``).
        control: the name of the control row (the untrained copy) every row is paired against.
        settings: ``bootstrap_samples``, ``inner_folds``, ``seed``, ``density_targets``.

    Raises:
        BenchmarkInputError: no row named ``control``, repeated row names, a missing column.
    """
    names = [row.name for row in rows]
    if len(set(names)) != len(names):
        raise BenchmarkInputError(f"repeated row name(s): {sorted({n for n in names if names.count(n) > 1})}")
    if control not in names:
        raise BenchmarkInputError(f"the control row {control!r} is not among the rows ({', '.join(names) or 'none'})")
    cohort = _cohort(manifest, settings)
    rows = list(rows) if DIAMETER_ROW in names else [*rows, consensus_diameter_row(cohort.manifest)]
    diameter = next(row for row in rows if row.name == DIAMETER_ROW)
    rows = [shown for row in rows for shown in ((row, with_diameter(row, diameter)) if row.kind == "model" else (row,))]
    records = []
    with threadpool_limits(1):  # BLAS threads only slow these small fits down
        for target in benchmark_targets(cohort.manifest, settings.density_targets):
            log.info("scoring %s on %d rows", target.title, len(rows))
            predictions = {row.name: _predictions(row, target, cohort, settings)
                           for row in rows if target.column not in row.skip and not row.unscored}
            references = {"control": predictions.get(control), "diameter": predictions.get(DIAMETER_ROW),
                          "radiomics": predictions.get(RADIOMICS_ROW)}
            for row in rows:
                if row.name in predictions:
                    records.append(_scored(row, target, predictions[row.name], references, cohort))
                else:
                    reason = CONTAINS_TARGET if target.column in row.skip else row.unscored
                    records.append(_record(row, target, "skipped", reason))
    return pd.DataFrame.from_records(records, columns=TABLE_COLUMNS)


def score_files(manifest_path: str | os.PathLike, feature_paths: Sequence[str | os.PathLike], control: str,
                settings: BenchmarkConfig, table_md: str | os.PathLike, table_csv: str | os.PathLike) -> pd.DataFrame:
    """Read the manifest and every row's feature file, score them, write ``table_csv`` and ``table_md``.

    Returns the long table written to ``table_csv``.
    """
    manifest = read_parquet(manifest_path)
    rows = [read_feature_set(path) for path in feature_paths]
    table = score_benchmark(manifest, rows, control, settings)
    markdown = format_markdown(table, control, DIAMETER_ROW, settings.bootstrap_samples, RADIOMICS_ROW)
    for path, write in ((table_csv, lambda tmp: table.to_csv(tmp, index=False)),
                        (table_md, lambda tmp: Path(tmp).write_text(markdown))):
        with atomic_path(path) as tmp:
            write(tmp)
    return table
