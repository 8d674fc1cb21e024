"""The render route's patient split: once, seeded, stratified by whether a patient has a malignant nodule."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lidcvae.extract.manifest import SPLITS

__all__ = ["stratified_split"]


def _counts(n: int, train: float, val: float) -> np.ndarray:
    """(train, val, test) patient counts of a stratum of ``n``, by largest remainder (they sum to ``n``)."""
    shares = np.array([train, val, max(1.0 - train - val, 0.0)]) * n
    counts = np.floor(shares).astype(int)
    counts[np.argsort(counts - shares)[: n - counts.sum()]] += 1
    return counts


def stratified_split(patient_ids: pd.Series, labels: pd.Series, train: float, val: float, seed: int) -> pd.Series:
    """Assign each patient to train / val / test once, keeping each split's share of malignant patients.

    Patients are split into two strata, those with at least one nodule labelled 1 (malignant) and the
    rest; each stratum is shuffled by ``seed`` (its patients sorted first, so the cohort's order does not
    matter) and cut by the fractions.

    Args:
        patient_ids: (N,) one entry per nodule.
        labels: (N,) the nodules' malignancy labels (1, 0 or <NA>).
        train, val: patient fractions; the rest is test.
        seed: ``render.seed``.

    Returns:
        (N,) "train", "val" or "test", aligned with ``patient_ids``.
    """
    malignant = set(patient_ids[labels.fillna(0).astype(int).eq(1).to_numpy()])
    split_of: dict[str, str] = {}
    for stratum, patients in enumerate((sorted(malignant), sorted(set(patient_ids) - malignant))):
        order = np.random.default_rng([seed, stratum]).permutation(len(patients))
        names = np.repeat(SPLITS, _counts(len(patients), train, val))
        split_of.update({patients[i]: str(name) for i, name in zip(order, names)})
    return patient_ids.map(split_of)
