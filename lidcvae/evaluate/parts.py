"""metrics.json's parts that come with a figure: collapse, probe and training, each (part, drawn figures, ...).

Each part holds what its section and the headline read, so the page and metrics.json say the same:
one active-unit rule (``collapse.ACTIVE_UNIT_RULE``), the probe beside its size-only control
(``claims.probe_verdict``), the training checks with their rules (``training_curves``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from lidcvae.evaluate import figures
from lidcvae.evaluate.claims import pc1_against_size, probe_verdict
from lidcvae.evaluate.collapse import (
    ACTIVE_UNIT_RULE, MIN_SAMPLES_FOR_UNITS, active_dimensions, kl_per_dimension, pca_dimension_suggestion, posterior_mean_variance,
)
from lidcvae.evaluate.figures import Drawn
from lidcvae.evaluate.probe_run import run_probe
from lidcvae.evaluate.provenance import Vocabulary
from lidcvae.evaluate.settings import EvaluateSettings
from lidcvae.evaluate.training_curves import best_epoch_row, healthy, plot_training_curves, training_checks, training_seconds

__all__ = ["collapse_part", "latent_pca_figure", "probe_part", "training_part", "representation_table"]

LABEL_NAMES = {0: "benign (label 0)", 1: "malignant (label 1)"}


def collapse_part(means: np.ndarray, logvars: np.ndarray, table: pd.DataFrame, size: str | None,
                  settings: EvaluateSettings) -> tuple[dict, list[Drawn]]:
    """Active units by the one rule, PCA-90, PC1 against diameter (``size``'s column of ``table``), KL per dimension."""
    kl = kl_per_dimension(means, logvars)
    active = active_dimensions(means, logvars)
    diameters = pd.to_numeric(table[size], errors="coerce").to_numpy(np.float64) if size else None
    section = {
        "samples": len(means), "latent_size": means.shape[1],
        "active_units": None if active is None else int(active.sum()), "active_unit_rule": ACTIVE_UNIT_RULE,
        "kl_total_nats": float(kl.sum()),
        "pca_dims_for_variance": pca_dimension_suggestion(means, settings.pca_variance_fraction),
        "pca_variance_fraction": settings.pca_variance_fraction,
        "pc1": pc1_against_size(means, diameters),
        "kl_per_dimension_nats": kl.tolist(), "posterior_mean_variance": posterior_mean_variance(means).tolist(),
        "posterior_variance_mean": np.exp(np.asarray(logvars, np.float64)).mean(axis=0).tolist(),
    }
    if active is None:
        section["active_units_note"] = f"{len(means)} samples, under the {MIN_SAMPLES_FOR_UNITS} a variance across samples needs"
    caption = ("KL per latent dimension in nats per sample, sorted, log axis; blue: active by the report's rule (posterior "
               "mean varies across samples more than the encoder's own variance).")
    return section, [Drawn("kl_per_dimension.png", caption, figures.plot_kl_per_dimension(kl, active))]


def latent_pca_figure(means: np.ndarray, table: pd.DataFrame, label_column: str, words: Vocabulary) -> Drawn:
    """The posterior means (N, D) on their first two principal components, coloured by ``label_column``."""
    labels = table[label_column] if label_column in table.columns else pd.Series([pd.NA] * len(table))
    names = LABEL_NAMES if set(labels.dropna().unique()) <= {0, 1} else {}  # LIDC's malignancy; MNIST digits by value
    return Drawn("latent_pca.png", f"Posterior means of every embedded {words.one}, first two principal components, "
                 "coloured by label.", figures.plot_latent_pca(means, labels, names))


def probe_part(embeddings: pd.DataFrame, splits, settings: EvaluateSettings,
               size: str | None) -> tuple[dict, list[Drawn], list[str]]:
    """The probe with diameter (``size``) always among its baselines, and whether the latents beat it."""
    if not settings.probe.enabled:
        return {"results": {}}, [], []
    probe_settings = settings.probe
    if size and size not in probe_settings.baseline_columns:
        probe_settings = replace(probe_settings, baseline_columns=(*probe_settings.baseline_columns, size))
    probe, notes = run_probe(embeddings, splits, probe_settings, settings.seed)
    probe["group_column"] = probe_settings.group_column
    if probe_settings.label_column in embeddings.columns:
        probe["classes"] = int(embeddings[probe_settings.label_column].dropna().nunique())
    probe["size_control"] = probe_verdict(probe.get("results", {}), size)
    curves = {name: (r["roc_fpr"], r["roc_tpr"], r["auc_mean"]) for name, r in probe.get("results", {}).items() if r.get("roc_fpr")}
    if not curves:
        return probe, [], notes
    caption = ("ROC curves of the probe and its baselines (diameter alone the size-only control) from the pooled "
               "out-of-fold predictions (the table's AUC is the mean over folds).")
    return probe, [Drawn("roc.png", caption, figures.plot_roc_curves(curves))], notes


def representation_table(path: str | None) -> tuple[str, pd.DataFrame] | str:
    """The representation benchmark's CSV to show, or the line that says why there is none."""
    if not path:
        return ("No representation benchmark table given (evaluate.representation_table: a CSV with one row per "
                "feature set; the benchmark's own table is benchmark/table.md of a configs/benchmark/ run, and "
                "benchmarks/RESULTS.md holds the published one).")
    if not Path(path).is_file():
        return f"evaluate.representation_table: {path} not found; the benchmark table is not shown."
    return str(path), pd.read_csv(path)


def training_part(history: pd.DataFrame | None, checkpoint_epoch: int | None) -> tuple[dict, list[Drawn], str]:
    """Curves, every check and the verdict of a history; ``checkpoint_epoch`` is the evaluated weights' epoch."""
    if history is None:
        return {"health": [], "checks": [], "healthy": False}, [], "no training history (metrics.csv) found"
    best = best_epoch_row(history, checkpoint_epoch)
    checks = training_checks(history)
    seconds = training_seconds(history)
    epochs = history["epoch"].to_numpy() if "epoch" in history.columns else np.arange(1, len(history) + 1)
    section = {"epochs": len(history), "training_seconds": seconds, "healthy": healthy(checks),
               "checks": [c.to_dict() for c in checks],
               "health": [c.detail if c.passed is False else f"{c.name}: {c.detail}" for c in checks if c.passed is not True],
               "best_epoch": None if best is None else int(epochs[best])}
    duration = "" if seconds is None else (f" in {seconds:.0f} s" if seconds < 120 else f" in {seconds / 60:.1f} min")
    text = f"{len(history)} epochs{duration} of epoch wall time"
    if section["best_epoch"] is not None:
        text += f"; the evaluated checkpoint is from epoch {section['best_epoch']}"
    caption = ("Training curves per epoch on linear axes: reconstruction log-likelihood log p(x|z) = −(the reconstruction "
               "loss in metrics.csv and the training log), nats per sample, higher is better (top), and KL (bottom, nats per "
               "sample), training batches (left) and validation (right: the val split, held out from training and "
               "never trained on; for MNIST, digits of the train files set aside by the seeded split); dashed: the "
               "evaluated checkpoint's epoch.")
    return section, [Drawn("loss_curves.png", caption, plot_training_curves(history, best))], text
