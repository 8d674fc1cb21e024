"""The evaluate stage's computing and writing: metrics.json, figures/*.png, the projector and report.html for one
run, from inputs already read (``lidcvae.evaluate.inputs.read_data``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lidcvae.embed import posterior_arrays
from lidcvae.evaluate import sections, visualise
from lidcvae.evaluate.retrieval import retrieval
from lidcvae.evaluate.collapse import collapse_warnings
from lidcvae.evaluate.generative import generative_pictures, legible_zoom
from lidcvae.evaluate.headline import RunInfo, headline_html, key_numbers
from lidcvae.evaluate.parts import collapse_part, latent_pca_figure, probe_part, representation_table, training_part
from lidcvae.evaluate.inputs import EvaluationData, SplitData
from lidcvae.evaluate.provenance import (
    NOT_SPLIT, Vocabulary, checkpoint_origin, mask_name, out_of_distribution, size_column, vocabulary,
)
from lidcvae.evaluate.outputs import write_outputs
from lidcvae.evaluate.report import render_report
from lidcvae.evaluate.settings import EvaluateSettings
from lidcvae.evaluate.split_metrics import evaluate_split
from lidcvae.intensity import HUWindow
from lidcvae.models.base import VAE
from lidcvae.train.checkpoint import TrainedModel

__all__ = ["SplitData", "evaluate_model", "evaluate_run"]

logger = logging.getLogger(__name__)


def _scope_notes(hu_window: HUWindow | None, words: Vocabulary) -> list[str]:
    """What each number is computed on, for a reader who would otherwise have to read this module."""
    masks = "the mask errors and montages cover every split; " if words.has_patients else "the montages cover every split; "
    folds = "each patient" if words.has_patients else "each group"
    notes = [f"ELBO, IWAE, MSE / PSNR / SSIM are per evaluated split; {masks}KL per dimension, active units, PCA, "
             "retrieval, attribute vectors, the projector and the probe use every embedded sample, train included (the "
             f"probe's folds keep {folds} on one side; the encoder never saw a label). A number from fewer than 10 samples"
             + (" or 5 patients" if words.has_patients else "") + " is greyed and not a headline."]
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


def _with_masks(data: SplitData) -> SplitData:
    """``data`` with its consensus masks: as given, or channel 1 of a two-channel CT input (> 0.5)."""
    if data.masks is not None or data.images.ndim != 5 or data.images.shape[1] != 2:
        return data
    return SplitData(data.images, data.table, data.images[:, 1:2] > 0.5)


def _warn(messages: list[str]) -> list[str]:
    for message in messages:
        logger.warning(message)
    return messages


def _score_splits(model: VAE, splits: Mapping[str, SplitData], settings: EvaluateSettings, hu_window: HUWindow | None,
                  info: RunInfo) -> tuple[dict, list[str], list[str]]:
    """ELBO, IWAE and errors of ``settings.splits`` (every split when none of them is present: a checkpoint
    run's one cohort), the collapse and out-of-distribution warnings, the notes of unscored splits."""
    names = [s for s in settings.splits if s in splits and len(splits[s].images)]
    if not any(s in splits for s in settings.splits):
        names = [s for s in splits if len(splits[s].images)]
    scored, warnings = {}, []
    for name in names:
        result = evaluate_split(model, splits[name].images, _mean_patch(splits, name), settings, hu_window)
        scored[name] = result.metrics
        warnings += _warn(collapse_warnings(result.metrics["active_units"], model.latent_size, settings.min_active_units,
                                            result.metrics["mse_normalised"], result.metrics["mean_patch_mse_normalised"], name,
                                            len(splits[name].images)))
        if info.origin is not None and not info.origin.trained_here:  # a cohort the checkpoint never saw
            warnings += _warn(out_of_distribution(name, result.metrics, info.origin.validation))
    unscored = [f"split '{s}' has no samples; not scored" for s in settings.splits if s in splits and s not in scored]
    return scored, warnings, unscored


def _patients(splits: Mapping[str, SplitData], words: Vocabulary) -> dict[str, int | None]:
    return {n: int(s.table["patient_id"].nunique()) if words.has_patients and "patient_id" in s.table.columns else None
            for n, s in splits.items()}


def evaluate_model(model: VAE, splits: Mapping[str, SplitData], embeddings: pd.DataFrame, out_dir: str | os.PathLike,
                   settings: EvaluateSettings, hu_window: HUWindow | None, history: pd.DataFrame | None = None,
                   sections_html: Sequence[tuple[str, str]] = (), info: RunInfo | None = None) -> dict:
    """Compute every metric and draw every figure in memory, then write metrics.json, figures/, projector/ and
    report.html under ``out_dir`` together (``outputs.write_outputs``), so a failure leaves no half-written set.

    Args:
        model: the trained VAE (put in eval mode here).
        splits: data by split name; ``settings.splits`` are scored (all of them when none of those names is
            present: a checkpoint run's single ``cohort``), every split gets montages and mask errors.
        embeddings: the embed stage's table (posterior means/log-variances and labels, every split).
        hu_window: the model's HU window for CT (HU metrics, lung-window figures); None for other images.
        history: the trainer's metrics.csv for the loss curves and checks (a checkpoint run's is only the
            out-of-distribution reference: it shows no training section of its own).
        sections_html: extra (heading, trusted HTML fragment) pairs for the report.
        info: cohort, config and checkpoint origin for the headline.
    """
    model.eval()
    info = info or RunInfo()
    words = vocabulary(info.dataset)
    tables = {n: s.table for n, s in splits.items() if len(s.table)}
    mask = mask_name(info.mask_kind or "consensus")
    size = size_column(embeddings)
    metrics: dict[str, Any] = {}
    notes = _scope_notes(hu_window, words)
    metrics["splits"], warnings, unscored = _score_splits(model, splits, settings, hu_window, info)
    notes = unscored + notes
    metrics["nodule_error"], recon_figures = visualise.nodule_reconstruction(
        model, {n: _with_masks(s) for n, s in splits.items() if len(s.images)}, settings.batch_size, settings.montage_samples,
        legible_zoom(settings.image_zoom, model.event_shape[-1]), hu_window, mask, words.many)
    for error in metrics["nodule_error"].values():
        error["mask"] = mask
    codes, logvars = posterior_arrays(embeddings)
    metrics["collapse"], kl_figures = collapse_part(codes, logvars, embeddings, size, settings)
    kl_figures.append(latent_pca_figure(codes, embeddings, settings.probe.label_column, words))
    metrics["training"], curve_figures, training_text = training_part(history if info.trained_here else None,
                                                                      info.origin.epoch if info.origin else None)
    if info.origin is not None:
        metrics["checkpoint"] = info.origin.to_dict()
    metrics["probe"], roc_figures, probe_notes = probe_part(embeddings, splits, settings, size)
    notes += probe_notes
    images = _aligned_images(embeddings, splits)
    if images is None:
        metrics["retrieval"], gallery = {"skipped": "the embeddings' inputs were not found among the loaded splits"}, []
    else:
        metrics["retrieval"], gallery = retrieval(codes, embeddings, images, hu_window, settings.retrieval_queries,
                                                  settings.retrieval_neighbours, settings.probe.label_column, size, words.many)
        if settings.projector:
            metrics["projector"] = "projector (tensorboard --logdir on this folder, PROJECTOR tab)"
    metrics["attributes"], generated, generative_notes, source = generative_pictures(model, codes, embeddings, settings, hu_window)
    metrics["samples"] = {"source": source, "function": "lidcvae.evaluate.sampling.latent_samples"}
    metrics["warnings"], metrics["notes"] = warnings, notes
    evaluated = next(iter(metrics["splits"]), None)
    verdict = metrics["training"] if curve_figures else None
    numbers = key_numbers(metrics, evaluated, tables, info)
    headline = headline_html(info, {NOT_SPLIT if n == "cohort" else n: t for n, t in tables.items()}, training_text, numbers, verdict)
    page = [
        sections.reconstruction_section(metrics["splits"], metrics["nodule_error"], recon_figures, hu_window is not None,
                                        info.context_voxels if hu_window is not None else None, words,
                                        _patients(splits, words), mask),
        sections.latent_section(metrics["collapse"], kl_figures, words),
        sections.probe_section(metrics["probe"], roc_figures, representation_table(settings.representation_table), words),
        sections.retrieval_section(metrics["retrieval"], gallery, words),
        sections.generative_section(generated, generative_notes, hu_window is not None),
        *([sections.training_section(metrics["training"], curve_figures)] if info.trained_here else []),
        *(sections.extra_section(heading, fragment) for heading, fragment in sections_html),
    ]
    html_page = render_report(f"lidcvae evaluation report: {info.name}", headline, page,
                              {k: v for k, v in metrics.items() if k not in ("warnings", "notes")}, warnings, notes)
    drawn = [*recon_figures, *kl_figures, *roc_figures, *gallery, *generated, *curve_figures]
    projected = (codes, embeddings, images) if images is not None and settings.projector else None
    write_outputs(Path(out_dir), metrics, drawn, projected, hu_window, html_page)
    return metrics


def evaluate_run(trained: TrainedModel, data: EvaluationData, out_dir: str | os.PathLike, settings: EvaluateSettings,
                 info: RunInfo | None = None) -> dict:
    """Evaluate a checkpoint's model (``load_model``) on what ``read_data`` read: ``evaluate_model`` with the
    headline's model, loss, input facts and origin (file, epoch, validation reference) taken from the checkpoint.

    Args:
        out_dir: where metrics.json, figures/, projector/ and report.html go.
        settings: the typed ``evaluate`` section.
        info: the run's name and cohort (``RunInfo.for_run``).
    """
    info = info or RunInfo()
    origin = checkpoint_origin(trained, info.trained_here, data.history, data.splits["train"].table if "train" in data.splits else None)
    info = replace(info, model=trained.model_config, train=trained.train_config, origin=origin,
                   context_voxels=trained.input.context_voxels, digits=trained.input.dataset == "mnist", mask_kind=data.mask_kind)
    return evaluate_model(trained.model, data.splits, data.embeddings, out_dir, settings, data.hu_window, data.history,
                          data.extra_html, info)
