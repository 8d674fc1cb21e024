"""The report's headline: what was trained, on what, for how long, and the few numbers that say how well.

Sign convention, stated once on the page and kept everywhere (tables, curves, metrics.json): a
log-likelihood is a log density in nats per sample, higher is better (for a continuous density it may
be positive); a KL is in nats per sample, ≥ 0.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lidcvae.evaluate.report import table_html

__all__ = ["RunInfo", "KeyNumber", "SIGN_CONVENTION", "data_rows", "model_description", "key_numbers", "headline_html"]

SIGN_CONVENTION = ("Sign convention: log-likelihoods (ELBO, IWAE, log p(x|z)) are log densities in nats per sample, "
                   "higher is better; for a continuous density they can be positive. KL is in nats per sample, ≥ 0. "
                   "The same numbers, with the same sign, appear in every table and curve.")


@dataclass(frozen=True)
class RunInfo:
    """What the headline says about the run: its name and cohort, the model/train sections the
    checkpoint was trained with (``ModelConfig``, ``TrainConfig``) and the run's ``EmbedConfig`` (how
    the embeddings were made); None when unknown."""

    name: str = "run"
    cohort: str = "unnamed cohort"
    model: Any = None
    train: Any = None
    embed: Any = None
    context_voxels: int | None = None  # the checkpoint's input record: r of a nodule-only context, else None

    @classmethod
    def for_run(cls, run: Any) -> RunInfo:
        """Name and cohort of a ``RunConfig`` (MNIST, coordinates table, LIDC-IDRI download or phantom)."""
        if run.dataset == "mnist":
            cohort = f"MNIST digits from {run.mnist.data_dir}"
        elif run.candidates is not None:
            cohort = f"nodule coordinates from {run.candidates}, CT from {run.images_root}"
        elif run.dicom_root is None:
            cohort = "phantom cohort: synthetic CT on real LIDC-IDRI slice geometry and contours"
        else:
            cohort = f"LIDC-IDRI DICOM from {run.dicom_root}"
        return cls(name=run.name, cohort=f"{cohort} (run '{run.name}')", embed=run.embed)


@dataclass
class KeyNumber:
    """One headline number: its value with unit, which direction is better, and what it means."""

    name: str
    value: str
    direction: str
    meaning: str


def _counts(table: pd.DataFrame) -> list[Any]:
    def distinct(column: str) -> Any:
        return int(table[column].nunique()) if column in table.columns else "–"
    labelled = int(table["label"].notna().sum()) if "label" in table.columns else "–"
    return [len(table), distinct("patient_id"), distinct("series_instance_uid"), labelled]


def data_rows(tables: Mapping[str, pd.DataFrame]) -> list[list[Any]]:
    """Per split and in all: nodules (samples), patients, scans and labelled samples; '–' where a column is absent."""
    rows = [[split, *_counts(table)] for split, table in tables.items()]
    if len(tables) > 1:
        rows.append(["all", *_counts(pd.concat(tables.values(), ignore_index=True))])
    return rows


def _sigma_text(sigma: Any) -> str:
    mode = {"learned": "calibrated"}.get(sigma.mode, sigma.mode)
    if mode == "calibrated":
        per = " per input channel (image and mask each their own)" if sigma.per_channel else ""
        return (f"σ calibrated{per}: σ² is set to each training batch's mean squared error (its maximum-likelihood value, "
                "Rybkin et al. 2021), not learned by gradient descent; evaluation uses the running estimate")
    return (f"σ fixed: σ² = exp({sigma.log_sigma2:g}) = {math.exp(sigma.log_sigma2):.3g} "
            f"(σ = {math.exp(sigma.log_sigma2 / 2):.3g} in [0, 1] units)")


def _input_text(model: Any) -> str:
    """What one input is and how its squared error is weighted (the mask channel and weight of issue 12)."""
    channels = "the windowed HU image and the consensus mask (0/1) as two channels" if model.mask_channel else "the windowed HU image"
    if model.context.kind == "nodule":
        kept = model.context.dilate_voxels
        channels += (f", the image kept within {kept} voxel{'' if kept == 1 else 's'} of the consensus mask and set to "
                     f"{model.context.fill_hu:g} HU elsewhere")
    weight = model.reconstruction_weight
    if weight.kind == "mask":
        where = f"×{weight.peak:g} on the consensus mask dilated by {weight.dilate_voxels} voxels"
    elif weight.kind == "gaussian":
        where = f"up to ×{weight.peak:g} by a centred Gaussian (σ = {weight.sigma_voxels:g} voxels)"
    else:
        where = ""
    return channels, (f"squared error weighted {where}" if where else "squared error weighted uniformly")


def _embedding_text(info: RunInfo) -> str:
    """How a nodule's code was made: one encoder pass, or the mean over the orientations training showed."""
    from lidcvae.data.augment import orientation_moves

    if not info.embed.average_orientations:
        return "; embeddings: posterior means, one orientation"
    if info.train is None:
        return "; embeddings: each nodule's posterior mean averaged over the orientations its training augmentation drew"
    count = len(orientation_moves(info.train.augment.flips, info.train.augment.rot90))
    return ("; embeddings: posterior means, one orientation (training drew no flips or turns)" if count == 1 else
            f"; embeddings: each nodule's posterior mean averaged over the {count} orientations its training augmentation drew")


def model_description(info: RunInfo) -> tuple[str, str]:
    """(model, loss) sentences from the checkpoint's config, the σ mode named for what it does."""
    model, train = info.model, info.train
    if model is None:
        return "not recorded.", "not recorded."
    if model.name == "mlp_vae":
        architecture = f"MLP VAE, hidden layers {list(model.hidden_sizes)}, latent size {model.latent_size}"
        decoder = ("Bernoulli decoder (binary cross-entropy summed over pixels)" if model.likelihood == "bernoulli"
                   else f"Gaussian decoder, σ fixed: σ² = exp({model.sigma.log_sigma2:g})")
    else:
        channels, weighting = _input_text(model)
        architecture = (f"3D convolutional VAE (MONAI VarAutoEncoder), input {model.input_size}³ voxels at 1 mm: {channels}; "
                        f"channels {list(model.channels)}, latent size {model.latent_size}")
        pooling = model.mask_pooling
        if pooling.enabled:
            regions = "the consensus mask and its edge band" if pooling.edge else "the consensus mask"
            pooled = [f"encoder levels {list(pooling.levels)}"] if pooling.levels else []
            pooled += [f"a soft histogram of the image ({pooling.histogram_bins} bins)"] if pooling.histogram_bins else []
            architecture += f"; {' and '.join(pooled)} also averaged over {regions} into μ and log σ² (model.mask_pooling)"
        if model.bn_vae.enabled:
            architecture += f", BN-VAE (γ = {model.bn_vae.gamma:g})"
        if info.embed is not None:
            architecture += _embedding_text(info)
        decoder = (f"Gaussian decoder, sum over all voxels of the squared error / (2σ²), {weighting}; "
                   f"{_sigma_text(model.sigma)}")
    if train is None:
        return architecture + ".", f"{decoder}."
    warmup = f" after a {train.kl_warmup_steps}-step linear KL warm-up" if train.kl_warmup_steps else ""
    free_bits = f", free bits {train.free_bits:g} nats per dimension" if train.free_bits else ""
    view = model.histogram_view if model.name == "conv_vae3d" else None  # the MLP has no second view
    histogram = (f" − {view.weight:g}·log p(h|z), h the nodule's {view.bins}-bin density histogram over the consensus "
                 "mask and its edge band, decoded linearly from z with its own calibrated σ² (model.histogram_view),"
                 if view is not None and view.enabled else "")
    loss = (f"negative ELBO = −log p(x|z){histogram} + β·KL(q(z|x) ‖ N(0, I)) with β = {train.beta:g}{warmup}{free_bits}; "
            f"{decoder}.")
    return architecture + ".", loss


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}g}"


def key_numbers(metrics: Mapping[str, Any], split: str | None) -> list[KeyNumber]:
    """4–6 numbers from metrics.json: likelihood, nodule error, collapse and the probe where each exists."""
    numbers = []
    scores = metrics.get("splits", {}).get(split, {}) if split else {}
    if scores:
        numbers.append(KeyNumber(f"IWAE log-likelihood, {split} (k = {scores['iwae_samples']})",
                                 f"{_fmt(scores['iwae_log_likelihood_nats'])} nats per sample", "higher is better",
                                 "the tightest estimate of log p(x) here: how probable the model finds unseen inputs "
                                 "(every input channel: with the mask channel, the image and the mask together)"))
        ratio = scores["mse_normalised"] / scores["mean_patch_mse_normalised"] if scores["mean_patch_mse_normalised"] else None
        numbers.append(KeyNumber(f"reconstruction MSE ÷ mean-input MSE, {split}", _fmt(ratio, 3), "lower is better",
                                 "below 1: reconstructions beat the dataset's mean input (what a collapsed model outputs)"))
    nodule = metrics.get("nodule_error", {}).get(split or "", {})
    if nodule.get("rmse_inside_hu") is not None:
        numbers.append(KeyNumber(f"RMSE inside the nodule mask, {split}", f"{_fmt(nodule['rmse_inside_hu'], 3)} HU",
                                 "lower is better", f"error on the nodule itself (outside it: {_fmt(nodule['rmse_outside_hu'], 3)} HU)"))
    collapse = metrics.get("collapse", {})
    if collapse:
        numbers.append(KeyNumber("active latent units", f"{collapse['active_units']} of {collapse['latent_size']}",
                                 "higher means more of z is used",
                                 f"dimensions with mean KL > {collapse['kl_active_threshold_nats']:g} nats per sample"))
        numbers.append(KeyNumber(f"PCA dimensions for {collapse['pca_variance_fraction']:.0%} of the variance",
                                 str(collapse["pca_dims_for_variance"]), "information (not better/worse)",
                                 "directions the posterior means actually vary in: the seeds' suggestion for dim(z)"))
    probe = metrics.get("probe", {}).get("results", {})
    if "latent_means" in probe and probe["latent_means"].get("auc_mean") is not None:
        latent = probe["latent_means"]
        baseline = next((f"{name} {_fmt(r['auc_mean'], 3)}" for name, r in probe.items()
                         if name != "latent_means" and r.get("auc_mean") is not None), "no baseline")
        numbers.append(KeyNumber(f"probe ROC AUC from the latents ({metrics['probe'].get('label_column', 'label')})",
                                 f"{_fmt(latent['auc_mean'], 3)} [{_fmt(latent['auc_ci_low'], 3)}, {_fmt(latent['auc_ci_high'], 3)}]",
                                 "higher is better; 0.5 = chance", f"linear probe, patient-grouped folds, 95% patient bootstrap; baseline: {baseline}"))
    elif metrics.get("probe", {}).get("skipped"):
        numbers.append(KeyNumber("probe ROC AUC from the latents", "not run", "–", metrics["probe"]["skipped"]))
    return numbers[:6]


def headline_html(info: RunInfo, tables: Mapping[str, pd.DataFrame], training: str, numbers: Sequence[KeyNumber],
                  verdicts: Sequence[str]) -> str:
    """The headline block: data table, model and loss, training time, key numbers, sign convention."""
    architecture, loss = model_description(info)
    data = table_html(["split", "nodules / samples", "patients", "scans", "labelled"], data_rows(tables))
    keys = "".join(f"<tr><td>{html.escape(k.name)}</td><td class='value'>{html.escape(k.value)}</td>"
                   f"<td>{html.escape(k.direction)}</td><td>{html.escape(k.meaning)}</td></tr>" for k in numbers)
    verdict = "".join(f"<li class='unhealthy'>{html.escape(v)}</li>" for v in verdicts)
    return (f"<p><b>Data:</b> {html.escape(info.cohort)}. <b>Training:</b> {html.escape(training)}.</p>"
            "<table class='keynumbers'><tr><th>key number</th><th>value</th><th>direction</th>"
            f"<th>meaning</th></tr>{keys}</table>"
            + (f"<ul>{verdict}</ul>" if verdict else "")
            + f"<div class='facts'><div>{data}</div><div><p><b>Model:</b> {html.escape(architecture)}</p>"
            f"<p><b>Loss:</b> {html.escape(loss)}</p></div></div><p class='convention'>{html.escape(SIGN_CONVENTION)}</p>")
