"""The evaluate stage end to end: metrics.json, figures/*.png, the projector and report.html for one run."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from lidcvae.embed import posterior_arrays, read_embeddings
from lidcvae.evaluate import figures, sections, visualise
from lidcvae.evaluate.collapse import (
    active_units, active_units_by_kl, collapse_warnings, kl_per_dimension, pca_dimension_suggestion, posterior_mean_variance,
)
from lidcvae.evaluate.generative import generative_pictures, legible_zoom
from lidcvae.evaluate.headline import RunInfo, headline_html, key_numbers
from lidcvae.evaluate.probe_run import run_probe
from lidcvae.evaluate.projector import write_projector
from lidcvae.evaluate.report import write_report
from lidcvae.evaluate.settings import EvaluateSettings
from lidcvae.evaluate.split_metrics import evaluate_split
from lidcvae.evaluate.training_curves import plot_training_curves, training_health, training_seconds
from lidcvae.intensity import HUWindow
from lidcvae.io import atomic_path
from lidcvae.models.base import VAE
from lidcvae.train.checkpoint import load_model

if TYPE_CHECKING:
    from lidcvae.data.mnist import MnistConfig

__all__ = ["SplitData", "evaluate_model", "evaluate_run"]

logger = logging.getLogger(__name__)
LABEL_NAMES = {0: "benign (label 0)", 1: "malignant (label 1)"}


@dataclass
class SplitData:
    """One split's inputs (N, *event_shape) in model scale, its table (one row per input) and, for CT,
    the consensus masks (N, 1, S, S, S) bool fitted like the inputs (None: taken from input channel 1
    of a two-channel model, else none)."""

    images: torch.Tensor
    table: pd.DataFrame
    masks: torch.Tensor | None = None


def _scope_notes(hu_window: HUWindow | None) -> list[str]:
    """What each number is computed on, for a reader who would otherwise have to read this module."""
    notes = ["ELBO, IWAE, MSE / PSNR / SSIM are per evaluated split; the nodule-mask errors and montages cover every "
             "split; KL per dimension, active units, the dim(z) suggestion, retrieval, attribute vectors, the projector and "
             "the probe use every embedded sample, train included (the probe's folds keep each patient on one side; the "
             "encoder never saw a label)."]
    if hu_window is not None:
        window = f"[{hu_window.lower_hu:g}, {hu_window.upper_hu:g}] HU"
        notes.append(f"MSE in HU² and RMSE in HU are measured inside the model's window {window} (voxels outside it are "
                     "clipped before encoding) and scaled by its width, not on raw HU.")
    return notes


def _mean_patch(splits: Mapping[str, SplitData], evaluated: str) -> np.ndarray:
    """Mean training input (the best constant reconstruction); the evaluated split's mean without a train split."""
    source = splits.get("train")
    if source is None or len(source.images) == 0:
        source = splits[evaluated]
    return source.images.float().mean(dim=0).numpy()


def _aligned_images(embeddings: pd.DataFrame, splits: Mapping[str, SplitData]) -> np.ndarray | None:
    """The input of every embeddings row (N, *event_shape), matched by nodule_id or id; None if any is missing."""
    for key in ("nodule_id", "id"):
        if key in embeddings.columns and all(key in s.table.columns for s in splits.values()):
            where = {str(k): (name, i) for name, s in splits.items() for i, k in enumerate(s.table[key])}
            if all(str(k) in where for k in embeddings[key]):
                return np.stack([splits[where[str(k)][0]].images[where[str(k)][1]].numpy() for k in embeddings[key]])
    return None


def _collapse_section(means: np.ndarray, logvars: np.ndarray, settings: EvaluateSettings, figure_dir: Path) -> tuple[dict, list]:
    kl = kl_per_dimension(means, logvars)
    variance = posterior_mean_variance(means)
    figures.plot_kl_per_dimension(kl, settings.kl_active_threshold_nats, figure_dir / "kl_per_dimension.png")
    section = {
        "samples": len(means), "latent_size": means.shape[1],
        "active_units": active_units_by_kl(kl, settings.kl_active_threshold_nats),
        "kl_active_threshold_nats": settings.kl_active_threshold_nats,
        "active_units_by_mean_variance": active_units(means, settings.active_unit_threshold),
        "active_unit_threshold": settings.active_unit_threshold,
        "kl_total_nats": float(kl.sum()),
        "pca_dims_for_variance": pca_dimension_suggestion(means, settings.pca_variance_fraction),
        "pca_variance_fraction": settings.pca_variance_fraction,
        "kl_per_dimension_nats": kl.tolist(), "posterior_mean_variance": variance.tolist(),
    }
    caption = (f"KL per latent dimension in nats per sample, sorted, log axis; blue bars exceed the stated threshold of "
               f"{settings.kl_active_threshold_nats:g} nats (red dashed line) and count as active.")
    return section, [(caption, figure_dir / "kl_per_dimension.png")]


def _probe(embeddings: pd.DataFrame, splits: Mapping, settings: EvaluateSettings, figure_dir: Path) -> tuple[dict, list, list]:
    if not settings.probe.enabled:
        return {"results": {}}, [], []
    probe, notes = run_probe(embeddings, splits, settings.probe, settings.seed)
    curves = {name: (r["roc_fpr"], r["roc_tpr"], r["auc_mean"]) for name, r in probe.get("results", {}).items() if r.get("roc_fpr")}
    if not curves:
        return probe, [], notes
    figures.plot_roc_curves(curves, figure_dir / "roc.png")
    return probe, [("ROC curves of the probe and its baselines from the pooled out-of-fold predictions (the table's AUC is "
                    "the mean over folds).", figure_dir / "roc.png")], notes


def _representation_table(path: str | None) -> tuple[str, pd.DataFrame] | str:
    if not path:
        return ("No representation benchmark table given (evaluate.representation_table: a CSV such as the one "
                "benchmarks/representation.py writes).")
    if not Path(path).is_file():
        return f"evaluate.representation_table: {path} not found; the benchmark table is not shown."
    return str(path), pd.read_csv(path)


def _training(history: pd.DataFrame | None, figure_dir: Path) -> tuple[dict, list, str]:
    if history is None:
        return {"health": []}, [], "no training history (metrics.csv) found"
    plot_training_curves(history, figure_dir / "loss_curves.png")
    seconds = training_seconds(history)
    section = {"epochs": len(history), "training_seconds": seconds, "health": training_health(history)}
    duration = "" if seconds is None else (f" in {seconds:.0f} s" if seconds < 120 else f" in {seconds / 60:.1f} min")
    text = f"{len(history)} epochs{duration} of epoch wall time"
    caption = ("Training curves per epoch on linear axes: reconstruction log-likelihood log p(x|z) (top, nats per sample, "
               "higher is better) and KL (bottom, nats per sample), training batches (left) and validation (right).")
    return section, [(caption, figure_dir / "loss_curves.png")], text


def _with_masks(data: SplitData) -> SplitData:
    """``data`` with its consensus masks: as given, or channel 1 of a two-channel CT input (> 0.5)."""
    if data.masks is not None or data.images.ndim != 5 or data.images.shape[1] != 2:
        return data
    return SplitData(data.images, data.table, data.images[:, 1:2] > 0.5)


def _warn(messages: list[str]) -> list[str]:
    for message in messages:
        logger.warning(message)
    return messages


def evaluate_model(model: VAE, splits: Mapping[str, SplitData], embeddings: pd.DataFrame, out_dir: str | os.PathLike,
                   settings: EvaluateSettings, hu_window: HUWindow | None, history: pd.DataFrame | None = None,
                   sections_html: Sequence[tuple[str, str]] = (), info: RunInfo | None = None) -> dict:
    """Compute every metric, draw every figure and write metrics.json, projector/ and report.html under ``out_dir``.

    Args:
        model: the trained VAE (put in eval mode here).
        splits: data by split name; ``settings.splits`` are scored, every split gets montages and mask errors.
        embeddings: the embed stage's table (posterior means/log-variances and labels, every split).
        hu_window: the model's HU window for CT (HU metrics, lung-window figures); None for other images.
        history: the trainer's metrics.csv for the loss curves.
        sections_html: extra (heading, trusted HTML fragment) pairs for the report.
        info: cohort and config for the headline.
    """
    out_dir, model, info = Path(out_dir), model.eval(), info or RunInfo()
    figure_dir = out_dir / "figures"
    metrics: dict[str, Any] = {"splits": {}}
    warnings, notes = [], []
    for name in [s for s in settings.splits if s in splits and len(splits[s].images)]:
        result = evaluate_split(model, splits[name].images, _mean_patch(splits, name), settings, hu_window)
        metrics["splits"][name] = result.metrics
        warnings += _warn(collapse_warnings(result.metrics["active_units"], model.latent_size, settings.min_active_units,
                                            result.metrics["mse_normalised"], result.metrics["mean_patch_mse_normalised"], name,
                                            len(splits[name].images)))
    notes += [f"split '{s}' has no samples; not scored" for s in settings.splits if s not in metrics["splits"]]
    notes += _scope_notes(hu_window)
    metrics["nodule_error"], recon_figures = visualise.nodule_reconstruction(
        model, {n: _with_masks(s) for n, s in splits.items() if len(s.images)}, settings.batch_size, settings.montage_samples,
        legible_zoom(settings.image_zoom, model.event_shape[-1]), hu_window, figure_dir)
    codes, logvars = posterior_arrays(embeddings)
    metrics["collapse"], kl_figures = _collapse_section(codes, logvars, settings, figure_dir)
    metrics["training"], curve_figures, training_text = _training(history, figure_dir)
    metrics["probe"], roc_figures, probe_notes = _probe(embeddings, splits, settings, figure_dir)
    notes += probe_notes
    labels = embeddings[settings.probe.label_column] if settings.probe.label_column in embeddings.columns else pd.Series([pd.NA] * len(embeddings))
    names = LABEL_NAMES if set(labels.dropna().unique()) <= {0, 1} else {}  # LIDC's malignancy; MNIST digits by value
    figures.plot_latent_pca(codes, labels, figure_dir / "latent_pca.png", names)
    kl_figures.append(("Posterior means, first two principal components, coloured by label.", figure_dir / "latent_pca.png"))
    images = _aligned_images(embeddings, splits)
    if images is None:
        metrics["retrieval"], gallery = {"skipped": "the embeddings' inputs were not found among the loaded splits"}, []
    else:
        metrics["retrieval"], gallery = visualise.retrieval(codes, embeddings, images, hu_window, figure_dir, settings.retrieval_queries,
                                                            settings.retrieval_neighbours, settings.probe.label_column)
        if settings.projector:
            write_projector(codes, embeddings, images, out_dir / "projector", hu_window)
            metrics["projector"] = "projector (tensorboard --logdir on this folder, PROJECTOR tab)"
    metrics["attributes"], generated, generative_notes, source = generative_pictures(model, codes, embeddings, settings,
                                                                                      hu_window, figure_dir)
    metrics["samples"] = {"source": source, "function": "lidcvae.evaluate.sampling.latent_samples"}
    metrics["warnings"], metrics["notes"] = warnings, notes
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    evaluated = next(iter(metrics["splits"]), None)
    headline = headline_html(info, {n: s.table for n, s in splits.items() if len(s.table)}, training_text,
                             key_numbers(metrics, evaluated), metrics["training"]["health"])
    page = [
        sections.reconstruction_section(metrics["splits"], metrics["nodule_error"], recon_figures, hu_window is not None,
                                        info.context_voxels if hu_window is not None else None),
        sections.latent_section(metrics["collapse"], kl_figures),
        sections.probe_section(metrics["probe"], roc_figures, _representation_table(settings.representation_table)),
        sections.retrieval_section(metrics["retrieval"], gallery),
        sections.generative_section(generated, generative_notes),
        sections.training_section(metrics["training"], curve_figures),
        *(sections.extra_section(heading, fragment) for heading, fragment in sections_html),
    ]
    shown = {k: v for k, v in metrics.items() if k not in ("warnings", "notes")}
    write_report(out_dir / "report.html", f"lidcvae evaluation report: {info.name}", headline, page, shown, warnings, notes)
    return metrics


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


def evaluate_run(checkpoint: str | os.PathLike, embeddings_path: str | os.PathLike, history_path: str | os.PathLike | None,
                 out_dir: str | os.PathLike, settings: EvaluateSettings, *, manifest: str | os.PathLike | None = None,
                 mnist: MnistConfig | None = None, extra_html: Sequence[str | os.PathLike] = (),
                 info: RunInfo | None = None) -> dict:
    """Load a checkpoint, its data splits (with consensus masks for CT) and embeddings, then ``evaluate_model``.

    Args:
        checkpoint: a trainer checkpoint (best.pt / last.pt).
        embeddings_path: the table written by ``lidcvae.embed.embed_manifest``.
        history_path: the training history metrics.csv; None (or a missing file) draws no loss curves.
        out_dir: where metrics.json, figures/, projector/ and report.html go.
        settings: the typed ``evaluate`` section.
        manifest: the extraction manifest whose patches are evaluated (CT); the checkpoint's own
            ``model`` and ``train`` sections decide how they become model input.
        mnist: the typed ``mnist`` section instead, for digits.
        extra_html: HTML fragments to include in the report (e.g. the MNIST size table), if they exist.
        info: the run's name and cohort for the headline (``RunInfo.for_run``); the model and loss it
            describes are the checkpoint's (``load_model``).
    """
    from lidcvae.data import PatchSource, load_split

    if (manifest is None) == (mnist is None):
        raise ValueError("evaluate_run: give exactly one of manifest (CT patches) or mnist (digits)")
    trained = load_model(checkpoint, map_location="cpu")
    model = trained.model
    source = mnist if mnist is not None else PatchSource.for_input(manifest, trained.input)
    hu_window = HUWindow.from_bounds(source.hu_window) if isinstance(source, PatchSource) else None
    splits = {}
    for split in ("train", "val", "test"):
        loaded = load_split(source, split)
        table = loaded.table.reset_index(drop=True)
        splits[split] = SplitData(loaded.images, table, _consensus_masks(table, source))
    history = pd.read_csv(history_path) if history_path is not None and Path(history_path).is_file() else None
    extra = [(Path(p).stem, Path(p).read_text()) for p in extra_html if Path(p).is_file()]
    return evaluate_model(model, splits, read_embeddings(embeddings_path), out_dir, settings, hu_window, history, extra,
                          replace(info or RunInfo(), model=trained.model_config, train=trained.train_config,
                                  context_voxels=trained.input.context_voxels))
