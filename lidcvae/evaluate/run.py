"""The evaluate stage end to end: metrics.json, figures/*.png and report.html for one trained run."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from lidcvae.embed import posterior_arrays, read_embeddings
from lidcvae.evaluate import figures
from lidcvae.evaluate.collapse import (
    active_units, collapse_warnings, kl_per_dimension, pca_dimension_suggestion, posterior_mean_variance,
)
from lidcvae.evaluate.probe_run import run_probe
from lidcvae.evaluate.report import write_report
from lidcvae.evaluate.sampling import latent_samples
from lidcvae.evaluate.settings import EvaluateSettings
from lidcvae.evaluate.split_metrics import SplitResult, evaluate_split
from lidcvae.intensity import HUWindow
from lidcvae.io import atomic_path
from lidcvae.models.base import VAE

if TYPE_CHECKING:
    from lidcvae.data.mnist import MnistConfig

__all__ = ["SplitData", "evaluate_model", "evaluate_run", "sample_source"]

logger = logging.getLogger(__name__)
LABEL_NAMES = {0: "benign (label 0)", 1: "malignant (label 1)"}


@dataclass
class SplitData:
    """One split's inputs (N, *event_shape) in model scale and its table (one row per input)."""

    images: torch.Tensor
    table: pd.DataFrame


def _scope_notes(hu_window: HUWindow | None) -> list[str]:
    """What each number is computed on, for a reader who would otherwise have to read this module."""
    notes = ["ELBO, IWAE, MSE / PSNR / SSIM and active units are per split; KL per dimension, the dim(z) "
             "suggestion, the PCA scatter and the malignancy probe use every embedded nodule, train included "
             "(the probe's folds keep each patient on one side; the encoder never saw a label)."]
    if hu_window is not None:
        window = f"[{hu_window.lower_hu:g}, {hu_window.upper_hu:g}] HU"
        notes.append(f"MSE in HU² is measured inside the model's window {window} (voxels outside it are "
                     "clipped before encoding) and scaled by its width², not on raw HU.")
    return notes


def _mean_patch(splits: Mapping[str, SplitData], evaluated: str) -> np.ndarray:
    """Mean training input (the best constant reconstruction); the evaluated split's mean without a train split."""
    source = splits.get("train")
    if source is None or len(source.images) == 0:
        source = splits[evaluated]
    return source.images.float().mean(dim=0).numpy()


def _interpolation_pair(result: SplitResult, table: pd.DataFrame, label_column: str) -> tuple[int, int]:
    """Two samples to interpolate between: of different labels when there are any, else the first two."""
    labels = table[label_column] if label_column in table.columns else pd.Series([pd.NA] * len(table))
    for first in range(len(table)):
        for second in range(first + 1, len(table)):
            if pd.notna(labels.iloc[first]) and pd.notna(labels.iloc[second]) and labels.iloc[first] != labels.iloc[second]:
                return first, second
    return 0, min(1, len(table) - 1)


@torch.no_grad()
def _decode_display(model: VAE, codes: np.ndarray, hu_window: HUWindow | None) -> np.ndarray:
    decoded = model.mean_image(model.decode(torch.as_tensor(codes, dtype=torch.float32))).numpy()
    return figures.to_display(decoded, hu_window)


def _image_figures(model: VAE, result: SplitResult, data: SplitData, settings: EvaluateSettings,
                   hu_window: HUWindow | None, figure_dir: Path, embeddings: pd.DataFrame | None = None) -> list[tuple[str, Path]]:
    zoom, made = settings.image_zoom, []
    montage = figures.reconstruction_montage(figures.to_display(result.first_inputs, hu_window),
                                             figures.to_display(result.first_reconstructions, hu_window))
    figures.save_image(montage, figure_dir / "reconstruction_montage.png", zoom)
    made.append(("Reconstructions: per sample the input (top) above its reconstruction from the posterior mean "
                 "(bottom); volumes as axial, coronal and sagittal centre slices, lung window.", figure_dir / "reconstruction_montage.png"))
    source, codes = sample_source(settings, embeddings)
    prior = latent_samples(source, settings.prior_samples, model.latent_size, np.random.default_rng(settings.seed), *codes)
    figures.save_image(figures.image_rows([_decode_display(model, prior, hu_window)]), figure_dir / "prior_samples.png", zoom)
    made.append((SAMPLE_CAPTIONS[source], figure_dir / "prior_samples.png"))
    first, second = _interpolation_pair(result, data.table, settings.probe.label_column)
    paths = figures.interpolation_codes(result.posterior_mean[first], result.posterior_mean[second], settings.interpolation_steps)
    figures.save_image(figures.image_rows([_decode_display(model, p, hu_window) for p in paths]), figure_dir / "interpolation.png", zoom)
    made.append((f"Interpolation between samples {first} and {second} of the split: linear (top row), "
                 "spherical (bottom row).", figure_dir / "interpolation.png"))
    return made


SAMPLE_CAPTIONS = {
    "prior": "Samples from the prior z ~ N(0, I), decoder means.",
    "aggregate_posterior": "Samples from a full-covariance Gaussian fitted to the training nodules' posteriors "
                           "(the aggregate posterior; lidcvae.evaluate.sampling), decoder means.",
}


def sample_source(settings: EvaluateSettings, embeddings: pd.DataFrame | None) -> tuple[str, tuple]:
    """``evaluate.sample_from`` and the train split's (posterior means, log-variances) to fit it to.

    Falls back to ``prior`` when fewer than two training codes are embedded.
    """
    if settings.sample_from == "prior" or embeddings is None or embeddings.empty:
        return "prior", (None, None)
    rows = embeddings[embeddings["split"] == "train"] if "split" in embeddings.columns else embeddings
    means, logvars = posterior_arrays(rows)
    if len(means) < 2 or not means.shape[1]:
        return "prior", (None, None)
    return settings.sample_from, (means, logvars)


def _collapse_section(embeddings: pd.DataFrame, settings: EvaluateSettings, figure_dir: Path) -> tuple[dict, Path]:
    means, logvars = posterior_arrays(embeddings)
    kl = kl_per_dimension(means, logvars)
    variance = posterior_mean_variance(means)
    figures.plot_kl_per_dimension(kl, variance, settings.active_unit_threshold, figure_dir / "kl_per_dimension.png")
    section = {
        "samples": len(means),
        "latent_size": means.shape[1],
        "active_units": active_units(means, settings.active_unit_threshold),
        "active_unit_threshold": settings.active_unit_threshold,
        "kl_total_nats": float(kl.sum()),
        "pca_dims_for_variance": pca_dimension_suggestion(means, settings.pca_variance_fraction),
        "pca_variance_fraction": settings.pca_variance_fraction,
        "kl_per_dimension_nats": kl.tolist(),
        "posterior_mean_variance": variance.tolist(),
    }
    return section, figure_dir / "kl_per_dimension.png"


def _warn(messages: list[str]) -> list[str]:
    for message in messages:
        logger.warning(message)
    return messages


def evaluate_model(model: VAE, splits: Mapping[str, SplitData], embeddings: pd.DataFrame, out_dir: str | os.PathLike,
                   settings: EvaluateSettings, hu_window: HUWindow | None = None, history: pd.DataFrame | None = None,
                   sections: Sequence[tuple[str, str]] = ()) -> dict:
    """Compute every metric, draw every figure and write metrics.json and report.html under ``out_dir``.

    Args:
        model: the trained VAE (put in eval mode here).
        splits: data by split name; ``settings.splits`` are evaluated, ``train`` gives the mean patch.
        embeddings: the embed stage's table (posterior means/log-variances and labels, every split).
        hu_window: the model's HU window for CT (HU² metrics, lung-window figures); None for other images.
        history: the trainer's metrics.csv for the loss curves.
        sections: extra (heading, HTML fragment) pairs for the report.
    """
    out_dir, model = Path(out_dir), model.eval()
    figure_dir = out_dir / "figures"
    metrics: dict[str, Any] = {"splits": {}}
    warnings, notes, made = [], [], []
    for name in [s for s in settings.splits if s in splits and len(splits[s].images)]:
        result = evaluate_split(model, splits[name].images, _mean_patch(splits, name), settings, hu_window)
        metrics["splits"][name] = result.metrics
        warnings += _warn(collapse_warnings(result.metrics["active_units"], model.latent_size, settings.min_active_units,
                                            result.metrics["mse_normalised"], result.metrics["mean_patch_mse_normalised"], name))
        if not made:
            made = _image_figures(model, result, splits[name], settings, hu_window, figure_dir, embeddings)
            metrics["samples"] = {"source": sample_source(settings, embeddings)[0],
                                  "function": "lidcvae.evaluate.sampling.latent_samples"}
    notes += [f"split '{s}' has no samples; not evaluated" for s in settings.splits if s not in metrics["splits"]]
    notes += _scope_notes(hu_window)
    metrics["collapse"], kl_figure = _collapse_section(embeddings, settings, figure_dir)
    if history is not None:
        figures.plot_loss_curves(history, figure_dir / "loss_curves.png")
        made.append(("Training curves, reconstruction and KL drawn apart.", figure_dir / "loss_curves.png"))
    else:
        notes.append("no training history (metrics.csv) found: loss curves not drawn")
    made.append(("KL per latent dimension, sorted; blue bars are active units.", kl_figure))
    labels = _labels(embeddings, settings)
    # Binary labels are LIDC's malignancy; anything else (MNIST digits) is shown by its value.
    names = LABEL_NAMES if set(labels.dropna().unique()) <= {0, 1} else {}
    figures.plot_latent_pca(*posterior_arrays(embeddings)[:1], labels, figure_dir / "latent_pca.png", names)
    made.append(("Posterior means, 2-D PCA, coloured by label.", figure_dir / "latent_pca.png"))
    if settings.probe.enabled:
        metrics["probe"], probe_notes = run_probe(embeddings, splits, settings.probe, settings.seed)
        notes += probe_notes
    metrics["warnings"], metrics["notes"] = warnings, notes
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    write_report(out_dir / "report.html", "lidcvae evaluation report", _report_metrics(metrics), made, warnings, notes, sections)
    return metrics


def _labels(embeddings: pd.DataFrame, settings: EvaluateSettings) -> pd.Series:
    column = settings.probe.label_column
    return embeddings[column] if column in embeddings.columns else pd.Series([pd.NA] * len(embeddings))


def _report_metrics(metrics: dict) -> dict:
    """What the report's table shows: metrics.json without the per-dimension lists and the message lists."""
    shown = {k: v for k, v in metrics.items() if k not in ("warnings", "notes")}
    return shown


def evaluate_run(checkpoint: str | os.PathLike, embeddings_path: str | os.PathLike, history_path: str | os.PathLike | None,
                 out_dir: str | os.PathLike, settings: EvaluateSettings, *, manifest: str | os.PathLike | None = None,
                 mnist: MnistConfig | None = None, extra_html: Sequence[str | os.PathLike] = ()) -> dict:
    """Load a checkpoint, its data splits and embeddings, then ``evaluate_model``.

    Args:
        checkpoint: a trainer checkpoint (best.pt / last.pt).
        embeddings_path: the table written by ``lidcvae.embed.embed_manifest``.
        history_path: the training history metrics.csv; None (or a missing file) draws no loss curves.
        out_dir: where metrics.json, figures/ and report.html go.
        settings: the typed ``evaluate`` section.
        manifest: the extraction manifest whose patches are evaluated (CT); the checkpoint's own
            ``model`` and ``train`` sections decide how they become model input.
        mnist: the typed ``mnist`` section instead, for digits.
        extra_html: HTML fragments to include in the report (e.g. the MNIST size table), if they exist.
    """
    from lidcvae.data import PatchSource, load_split
    from lidcvae.train.checkpoint import load_model

    if (manifest is None) == (mnist is None):
        raise ValueError("evaluate_run: give exactly one of manifest (CT patches) or mnist (digits)")
    model, trained_config = load_model(checkpoint, map_location="cpu")
    source = mnist if mnist is not None else PatchSource.for_checkpoint(manifest, trained_config)
    hu_window = HUWindow.from_bounds(source.hu_window) if isinstance(source, PatchSource) else None
    splits = {}
    for split in ("train", "val", "test"):
        loaded = load_split(source, split)
        splits[split] = SplitData(loaded.images, loaded.table.reset_index(drop=True))
    history = pd.read_csv(history_path) if history_path is not None and Path(history_path).is_file() else None
    sections = [(Path(p).stem, Path(p).read_text()) for p in extra_html if Path(p).is_file()]
    return evaluate_model(model, splits, read_embeddings(embeddings_path), out_dir, settings, hu_window, history, sections)
