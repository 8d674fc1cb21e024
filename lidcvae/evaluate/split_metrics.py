"""Per-split evaluation of a trained VAE: ELBO, IWAE, reconstruction quality, active units, speed."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from lidcvae.evaluate.collapse import active_dimensions
from lidcvae.evaluate.likelihood import elbo_terms, iwae_log_likelihood
from lidcvae.evaluate.reconstruction import per_sample_mse, psnr_db, structural_similarity_per_sample
from lidcvae.evaluate.settings import EvaluateSettings
from lidcvae.intensity import HUWindow
from lidcvae.models.base import VAE

__all__ = ["SplitResult", "evaluate_split"]


@dataclass
class SplitResult:
    """A split's metrics plus what the figures need: posterior means and the first reconstructions."""

    metrics: dict
    posterior_mean: np.ndarray
    first_inputs: np.ndarray
    first_reconstructions: np.ndarray


@dataclass
class _Accumulator:
    elbo: list
    log_likelihood: list
    kl: list
    iwae: list
    mse: list
    baseline_mse: list
    ssim: list
    means: list
    logvars: list
    inputs: list
    reconstructions: list


@torch.no_grad()
def _evaluate_batch(model: VAE, x: torch.Tensor, mean_patch: np.ndarray, settings: EvaluateSettings,
                    generator: torch.Generator, totals: _Accumulator, seconds: dict) -> None:
    mean, logvar = model.encode(x)
    noise = torch.randn(mean.shape, generator=generator)
    terms = elbo_terms(model, x, noise)
    start = time.perf_counter()
    totals.iwae.append(iwae_log_likelihood(model, x, settings.iwae_samples, settings.iwae_chunk_size, generator).numpy())
    seconds["iwae"] += time.perf_counter() - start
    inputs = x.numpy()
    reconstructions = model.mean_image(model.decode(mean)).numpy()
    totals.elbo.append(terms.elbo.numpy())
    totals.log_likelihood.append(terms.log_likelihood.numpy())
    totals.kl.append(terms.kl.numpy())
    totals.mse.append(per_sample_mse(inputs, reconstructions))
    totals.baseline_mse.append(per_sample_mse(inputs, np.broadcast_to(mean_patch, inputs.shape)))
    totals.ssim.append(structural_similarity_per_sample(inputs, reconstructions))
    totals.means.append(mean.numpy())
    totals.logvars.append(logvar.numpy())
    kept = sum(len(a) for a in totals.inputs)
    keep = max(settings.montage_samples - kept, 0)
    totals.inputs.append(inputs[:keep])
    totals.reconstructions.append(reconstructions[:keep])


def _summary(totals: _Accumulator, hu_window: HUWindow | None, settings: EvaluateSettings, n_voxels: int,
             seconds: dict) -> dict:
    joined = {name: np.concatenate(getattr(totals, name)) for name in ("elbo", "log_likelihood", "kl", "iwae", "mse", "baseline_mse", "ssim")}
    count = len(joined["elbo"])
    active = active_dimensions(np.concatenate(totals.means), np.concatenate(totals.logvars))
    metrics = {
        "samples": count,
        "elbo_nats": float(joined["elbo"].mean()),
        "reconstruction_log_likelihood_nats": float(joined["log_likelihood"].mean()),
        "kl_nats": float(joined["kl"].mean()),
        "iwae_log_likelihood_nats": float(joined["iwae"].mean()),
        "iwae_samples": settings.iwae_samples,
        "iwae_nats_per_element": float(joined["iwae"].mean() / n_voxels),
        "mse_normalised": float(joined["mse"].mean()),
        "psnr_db": float(psnr_db(joined["mse"]).mean()),
        "ssim": float(joined["ssim"].mean()),
        "mean_patch_mse_normalised": float(joined["baseline_mse"].mean()),
        "active_units": None if active is None else int(active.sum()),  # collapse.ACTIVE_UNIT_RULE; None under 10 samples
        "iwae_samples_per_second": count / max(seconds["iwae"], 1e-9),
    }
    if hu_window is not None:
        metrics["mse_hu2"] = metrics["mse_normalised"] * hu_window.width_hu**2
        metrics["mean_patch_mse_hu2"] = metrics["mean_patch_mse_normalised"] * hu_window.width_hu**2
    return metrics


def evaluate_split(model: VAE, images: torch.Tensor, mean_patch: np.ndarray, settings: EvaluateSettings,
                   hu_window: HUWindow | None) -> SplitResult:
    """Evaluate ``images`` (N, *event_shape), model scale, batch by batch so memory stays flat in N and k.

    ``mean_patch`` (*event_shape) is the dataset's mean input: the reconstruction a collapsed model makes.
    """
    model.eval()
    generator = torch.Generator().manual_seed(settings.seed)
    totals = _Accumulator(*([] for _ in range(11)))
    seconds = {"iwae": 0.0}
    for batch in images.split(settings.batch_size):
        _evaluate_batch(model, batch.float(), mean_patch, settings, generator, totals, seconds)
    metrics = _summary(totals, hu_window, settings, int(np.prod(images.shape[1:])), seconds)
    return SplitResult(metrics, np.concatenate(totals.means), np.concatenate(totals.inputs), np.concatenate(totals.reconstructions))
