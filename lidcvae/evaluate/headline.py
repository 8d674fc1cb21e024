"""The report's headline: what was trained, on what, for how long, and the few numbers that say how well.

A number from fewer than ``MIN_SAMPLES`` (10) samples or ``MIN_PATIENTS`` (5) patients is greyed, with
the reason (``sample_support``), and never a headline.

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

from lidcvae.evaluate.provenance import NOT_SPLIT, CheckpointOrigin, Vocabulary, vocabulary
from lidcvae.evaluate.report import table_html

__all__ = ["MIN_SAMPLES", "MIN_PATIENTS", "RunInfo", "KeyNumber", "SIGN_CONVENTION", "sample_support", "data_header", "data_rows",
           "model_description", "key_numbers", "headline_html"]

MIN_SAMPLES = 10
MIN_PATIENTS = 5

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
    digits: bool = False  # an MNIST run (the report speaks of digits), else CT nodules
    trained_here: bool = True  # False: embed.checkpoint named weights trained elsewhere
    demo: bool = False  # the embedded demo's phantom cohort
    mask_kind: str | None = None  # the cohort manifest's mask_kind (provenance.mask_name)
    origin: CheckpointOrigin | None = None

    @property
    def dataset(self) -> str:
        """``mnist`` or ``lidc`` (the config's ``dataset``), as ``digits`` says."""
        return "mnist" if self.digits else "lidc"

    @classmethod
    def for_run(cls, run: Any) -> RunInfo:
        """Name and cohort of a ``RunConfig`` (MNIST, coordinates table, LIDC-IDRI download or phantom),
        whether it trains its own model (no ``embed.checkpoint``) and whether it is the phantom demo."""
        if run.dataset == "mnist":
            cohort = f"MNIST digits from {run.mnist.data_dir}"
        elif run.candidates is not None:
            cohort = f"nodule coordinates from {run.candidates}, CT from {run.images_root}"
        elif run.dicom_root is None:
            cohort = "phantom cohort: synthetic CT on real LIDC-IDRI slice geometry and contours"
        else:
            cohort = f"LIDC-IDRI DICOM from {run.dicom_root}"
        phantom = run.dataset != "mnist" and run.candidates is None and run.dicom_root is None
        return cls(name=run.name, cohort=f"{cohort} (run '{run.name}')", embed=run.embed, digits=run.dataset == "mnist",
                   trained_here=run.embed.checkpoint is None, demo=phantom)


@dataclass
class KeyNumber:
    """One headline number: its value with unit, which direction is better, what it means, what it was
    computed on (``support``: split, samples, patients) and, when that is under the minimum
    (``sample_support``), why it is greyed and not a headline."""

    name: str
    value: str
    direction: str
    meaning: str
    support: str = ""
    greyed: str | None = None


def _counts(table: pd.DataFrame, words: Vocabulary) -> list[Any]:
    def distinct(column: str) -> Any:
        return int(table[column].nunique()) if column in table.columns else "–"
    labelled = int(table["label"].notna().sum()) if "label" in table.columns else "–"
    if not words.has_patients:
        return [len(table), labelled]
    return [len(table), distinct("patient_id"), distinct("series_instance_uid"), labelled]


def data_header(words: Vocabulary) -> list[str]:
    """The data table's columns: MNIST has no patients or scans."""
    if not words.has_patients:
        return ["split", words.many, "labelled"]
    return ["split", words.many, "patients", "scans", "labelled"]


def data_rows(tables: Mapping[str, pd.DataFrame], words: Vocabulary | None = None) -> list[list[Any]]:
    """Per split and in all: samples, patients, scans and labelled samples ('–' where a column is absent;
    no patients or scans for MNIST)."""
    words = words or vocabulary("lidc")
    rows = [[split, *_counts(table, words)] for split, table in tables.items()]
    if len(tables) > 1:
        rows.append(["all", *_counts(pd.concat(tables.values(), ignore_index=True), words)])
    return rows


def _sigma_text(sigma: Any) -> str:
    mode = {"learned": "calibrated"}.get(sigma.mode, sigma.mode)
    if mode == "calibrated":
        per = " per input channel (image and mask each their own)" if sigma.per_channel else ""
        return (f"σ calibrated{per}: σ² is set to each training batch's mean squared error (its maximum-likelihood value, "
                "Rybkin et al. 2021), not learned by gradient descent; evaluation uses the running estimate")
    return (f"σ fixed: σ² = exp({sigma.log_sigma2:g}) = {math.exp(sigma.log_sigma2):.3g} "
            f"(σ = {math.exp(sigma.log_sigma2 / 2):.3g} in [0, 1] units)")


_MASK_SHORT = {"sphere": "sphere mask (a ball of diameter_mm)"}


def _input_text(model: Any, mask_kind: str | None = None) -> str:
    """What one input is and how its squared error is weighted (the mask channel and weight of issue 12);
    the mask named for what the cohort's is (``mask_kind``; the consensus mask when not recorded)."""
    mask = _MASK_SHORT.get(mask_kind or "", "consensus mask")
    channels = f"the windowed HU image and the {mask} (0/1) as two channels" if model.mask_channel else "the windowed HU image"
    if model.context.kind == "nodule":
        kept = model.context.dilate_voxels
        channels += (f", the image kept within {kept} voxel{'' if kept == 1 else 's'} of the {mask} and set to "
                     f"{model.context.fill_hu:g} HU elsewhere")
    weight = model.reconstruction_weight
    if weight.kind == "mask":
        where = f"×{weight.peak:g} on the {mask} dilated by {weight.dilate_voxels} voxels"
    elif weight.kind == "gaussian":
        where = f"up to ×{weight.peak:g} by a centred Gaussian (σ = {weight.sigma_voxels:g} voxels)"
    else:
        where = ""
    return channels, (f"squared error weighted {where}" if where else "squared error weighted uniformly")


def _embedding_text(info: RunInfo) -> str:
    """How a nodule's code was made: one encoder pass, or the mean over the orientations training showed."""
    if not info.embed.average_orientations:
        return "; embeddings: posterior means, one orientation"
    if info.train is None:
        return "; embeddings: each nodule's posterior mean averaged over the orientations its training augmentation drew"
    count = info.train.augment.orientation_count
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
        channels, weighting = _input_text(model, info.mask_kind)
        architecture = (f"3D convolutional VAE (MONAI VarAutoEncoder), input {model.input_size}³ voxels at 1 mm: {channels}; "
                        f"channels {list(model.channels)}, latent size {model.latent_size}")
        pooling = model.mask_pooling
        if pooling.enabled:
            mask = _MASK_SHORT.get(info.mask_kind or "", "consensus mask")
            regions = f"the {mask} and its edge band" if pooling.edge else f"the {mask}"
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
    histogram = (f" − {view.weight:g}·log p(h|z), h the nodule's {view.bins}-bin density histogram over the "
                 f"{_MASK_SHORT.get(info.mask_kind or '', 'consensus mask')} and its edge band, decoded linearly from z "
                 "with its own calibrated σ² (model.histogram_view),"
                 if view is not None and view.enabled else "")
    loss = (f"negative ELBO = −log p(x|z){histogram} + β·KL(q(z|x) ‖ N(0, I)) with β = {train.beta:g}{warmup}{free_bits}; "
            f"{decoder}.")
    return architecture + ".", loss


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}g}"


def _patients(table: pd.DataFrame | None, words: Vocabulary) -> int | None:
    if not words.has_patients or table is None or "patient_id" not in table.columns:
        return None
    return int(table["patient_id"].nunique())


def sample_support(samples: int, patients: int | None) -> str | None:
    """Why a number from ``samples`` (and ``patients``; None where there are none, MNIST) is too thin to
    headline, or None when it is not."""
    if samples < MIN_SAMPLES:
        return f"only {samples} sample(s), under the minimum of {MIN_SAMPLES}"
    if patients is not None and patients < MIN_PATIENTS:
        return f"only {patients} patient(s), under the minimum of {MIN_PATIENTS}"
    return None


def _support(where: str, samples: int, patients: int | None, words: Vocabulary) -> tuple[str, str | None]:
    """('<where>: N nodules, P patients', why it is too thin or None)."""
    text = f"{where}: {samples} {words.one if samples == 1 else words.many}" + ("" if patients is None else f", {patients} patient{'s' * (patients != 1)}")
    return text, sample_support(samples, patients)


def _split_numbers(metrics: Mapping[str, Any], split: str, table: pd.DataFrame | None, info: RunInfo,
                   words: Vocabulary) -> list[KeyNumber]:
    scores, nodule = metrics["splits"][split], metrics.get("nodule_error", {}).get(split, {})
    where = NOT_SPLIT if split == "cohort" else f"{split} split"
    support, greyed = _support(where, scores["samples"], _patients(table, words), words)
    channels = " (the image and the mask channel together)" if info.model is not None and getattr(info.model, "mask_channel", False) else ""
    coverage = (f"; the mask covers {nodule['mask_fraction']:.2%} of these patches, so the rest of the patch dominates it"
                if nodule else "")
    numbers = [KeyNumber(f"IWAE log-likelihood, {split} (k = {scores['iwae_samples']})",
                         f"{_fmt(scores['iwae_log_likelihood_nats'])} nats per sample", "higher is better",
                         f"the tightest estimate of log p(x) here: how probable the model finds these inputs{channels}{coverage}",
                         support, greyed)]
    ratio = scores["mse_normalised"] / scores["mean_patch_mse_normalised"] if scores["mean_patch_mse_normalised"] else None
    numbers.append(KeyNumber(f"reconstruction MSE ÷ mean-input MSE, {split}", _fmt(ratio, 3), "lower is better",
                             "below 1: reconstructions beat the dataset's mean input (what a collapsed model outputs)", support, greyed))
    if nodule.get("rmse_inside_hu") is not None:
        numbers.append(KeyNumber(f"RMSE inside the {nodule.get('mask', 'mask')}, {split}", f"{_fmt(nodule['rmse_inside_hu'], 3)} HU",
                                 "lower is better", f"error on the nodule itself (outside it: {_fmt(nodule['rmse_outside_hu'], 3)} HU)",
                                 support, greyed))
    return numbers


def _latent_numbers(metrics: Mapping[str, Any], everything: pd.DataFrame | None, words: Vocabulary) -> list[KeyNumber]:
    collapse = metrics.get("collapse", {})
    if not collapse:
        return []
    support, greyed = _support(f"every embedded {words.one}", collapse["samples"], _patients(everything, words), words)
    active = collapse.get("active_units")
    numbers = [KeyNumber("active latent units", "not counted" if active is None else f"{active} of {collapse['latent_size']}",
                         "information: how many coordinates tell samples apart", collapse["active_unit_rule"], support,
                         greyed or (collapse.get("active_units_note") if active is None else None))]
    pc1 = collapse.get("pc1", {})
    size = (f"; PC1 holds {pc1['pc1_variance_fraction']:.0%} of the variance" if "pc1_variance_fraction" in pc1 else "") + (
        f" and correlates r = {pc1['pc1_diameter_r']:.2f} with diameter" if "pc1_diameter_r" in pc1 else "")
    numbers.append(KeyNumber(f"PCA-{collapse['pca_variance_fraction']:.0%}: principal components for {collapse['pca_variance_fraction']:.0%} "
                             "of the variance", str(collapse["pca_dims_for_variance"]), "information (not better/worse)",
                             f"the fewest directions of the posterior means that hold {collapse['pca_variance_fraction']:.0%} of "
                             f"their variance across the {words.many} (at most N − 1){size}", support, greyed))
    return numbers


def _probe_number(metrics: Mapping[str, Any], words: Vocabulary) -> list[KeyNumber]:
    probe = metrics.get("probe", {})
    results, label = probe.get("results", {}), probe.get("label_column", "label")
    if probe.get("skipped"):
        return [KeyNumber(f"probe ROC AUC from the latents ({label})", "not run", "–", "", f"labelled {words.many}", probe["skipped"])]
    latent = results.get("latent_means", {})
    if latent.get("auc_mean") is None:
        return []
    support, greyed = _support(f"labelled {words.many}", probe["labelled_samples"], probe.get("patients") if words.has_patients else None, words)
    verdict = probe.get("size_control", {})
    value = f"{_fmt(latent['auc_mean'], 3)} [{_fmt(latent['auc_ci_low'], 3)}, {_fmt(latent['auc_ci_high'], 3)}]"
    if verdict:
        value += f"; diameter alone {_fmt(verdict['size_auc'], 3)}"
        claim = ("beats diameter alone" if verdict["beats_size"] else
                 "does not beat diameter alone: no claim that the features carry more than size")
    else:  # MNIST has no size to control for
        claim = "no size-only control (no diameter column)" if words.has_patients else ""
    averaging = f"; one-vs-rest AUC, macro-averaged over the {probe['classes']} classes" if probe.get("classes", 2) > 2 else ""
    return [KeyNumber(f"probe ROC AUC from the latents ({label})", value, "higher is better; 0.5 = chance",
                      f"linear probe, grouped folds, 95 % bootstrap over groups{averaging}" + (f"; {claim}" if claim else ""),
                      support, greyed)]


def key_numbers(metrics: Mapping[str, Any], split: str | None, tables: Mapping[str, pd.DataFrame] | None = None,
                info: RunInfo | None = None) -> list[KeyNumber]:
    """The headline's numbers from metrics.json, each with what it was computed on (split, samples, patients):
    likelihood, reconstruction and nodule error of ``split``, active units and PCA over every embedded
    sample, the probe beside its size-only control."""
    info, tables = info or RunInfo(), tables or {}
    words = vocabulary(info.dataset)
    numbers = _split_numbers(metrics, split, tables.get(split), info, words) if split in metrics.get("splits", {}) else []
    everything = pd.concat(tables.values(), ignore_index=True) if tables else None
    return numbers + _latent_numbers(metrics, everything, words) + _probe_number(metrics, words)


def _verdict_html(info: RunInfo, verdict: Mapping[str, Any] | None) -> str:
    """The checkpoint named and the training verdict (or why there is none), for the top of the page."""
    words = vocabulary(info.dataset)
    parts = [f"<p><b>Checkpoint:</b> {html.escape(info.origin.sentence(words))}</p>"] if info.origin else []
    if not info.trained_here:
        parts.append("<p><b>Training:</b> not part of this run (the model was trained elsewhere; its own run's report "
                     "shows its curves).</p>")
    elif verdict is None:
        parts.append("<p class='unhealthy'>Training not judged: no training history (metrics.csv) found.</p>")
    elif verdict["healthy"]:
        parts.append(f"<p class='healthy'><b>Training:</b> healthy by all {len(verdict['checks'])} computed checks "
                     f"({html.escape(', '.join(c['name'] for c in verdict['checks']))}; rules in the training section).</p>")
    else:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in verdict["health"])
        parts.append(f"<div class='unhealthy'><b>Training is not healthy:</b><ul>{items}</ul></div>")
    if info.demo:
        parts.append("<p class='demo'><b>This is the embedded plumbing demo</b>: a phantom cohort of a few nodules from a "
                     "handful of patients, so that every stage runs in minutes on 2 cores. Its numbers show that the "
                     "workflow works, not what the features are worth; for that see the representation benchmark's table, "
                     "benchmarks/RESULTS.md (hundreds of LIDC-IDRI nodules, each feature against diameter alone).</p>")
    return "".join(parts)


def _numbers_html(numbers: Sequence[KeyNumber]) -> str:
    shown = [k for k in numbers if k.greyed is None]
    thin = [k for k in numbers if k.greyed is not None]
    rows = "".join(f"<tr><td>{html.escape(k.name)}</td><td class='value'>{html.escape(k.value)}</td><td>{html.escape(k.support)}</td>"
                   f"<td>{html.escape(k.direction)}</td><td>{html.escape(k.meaning)}</td></tr>" for k in shown)
    text = ("<table class='keynumbers'><tr><th>key number</th><th>value</th><th>computed on</th><th>direction</th>"
            f"<th>meaning</th></tr>{rows}</table>") if shown else "<p class='skipped'>No number rests on enough samples to headline.</p>"
    if thin:
        rows = "".join(f"<tr><td>{html.escape(k.name)}</td><td>{html.escape(k.value)}</td><td>{html.escape(k.support)}</td>"
                       f"<td>{html.escape(k.greyed)}</td></tr>" for k in thin)
        text += ("<table class='greyed'><tr><th>too few samples to headline</th><th>value</th><th>computed on</th>"
                 f"<th>why greyed</th></tr>{rows}</table>")
    return text


def headline_html(info: RunInfo, tables: Mapping[str, pd.DataFrame], training: str, numbers: Sequence[KeyNumber],
                  verdict: Mapping[str, Any] | None) -> str:
    """The headline block: the checkpoint and training verdict first, the key numbers with their n (thin ones
    greyed), the data table, model and loss, the sign convention.

    Args:
        verdict: the training part ({"healthy", "checks", "health"}: the failed checks in words); None without a history.
    """
    words = vocabulary(info.dataset)
    architecture, loss = model_description(info)
    header, rows = data_header(words), data_rows(tables, words)
    data = table_html(header, rows)
    training_line = f" <b>Training:</b> {html.escape(training)}." if info.trained_here else ""
    return (_verdict_html(info, verdict) + f"<p><b>Data:</b> {html.escape(info.cohort)}.{training_line}</p>"
            + _numbers_html(numbers)
            + f"<div class='facts'><div>{data}</div><div><p><b>Model:</b> {html.escape(architecture)}</p>"
            f"<p><b>Loss:</b> {html.escape(loss)}</p></div></div><p class='convention'>{html.escape(SIGN_CONVENTION)}</p>")
