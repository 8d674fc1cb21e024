"""The report's sections, one per question a researcher asks, built from metrics.json's parts and figures.

Each builder returns a ``Section``; a part that could not be computed says so in a visible line
(class ``skipped``) instead of disappearing.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lidcvae.evaluate.report import Section, figure_html, table_html

__all__ = ["SECTION_IDS", "reconstruction_section", "latent_section", "probe_section", "retrieval_section",
           "generative_section", "training_section", "extra_section"]

SECTION_IDS = ("reconstruction", "latent-space", "probe", "retrieval", "generative", "training")

Figure = tuple[str, Path]


def _skipped(text: str) -> str:
    return f'<p class="skipped">{html.escape(text)}</p>'


def _figures(made: Sequence[Figure]) -> str:
    return "".join(figure_html(path, caption) for caption, path in made)


def reconstruction_section(splits: Mapping[str, Any], nodule_error: Mapping[str, Any], made: Sequence[Figure],
                           hu: bool, kept_voxels: int | None = None) -> Section:
    """Likelihood and error per split, the error inside vs outside the nodule mask, outlined montages.

    ``kept_voxels``: r of ``model.context: nodule`` (the model saw only the mask dilated by r voxels), or None.
    """
    unit = "HU" if hu else "model scale"
    rows = [[name, s["samples"], s["elbo_nats"], s["iwae_log_likelihood_nats"], s["kl_nats"], s["psnr_db"], s["ssim"],
             s["mse_normalised"] / s["mean_patch_mse_normalised"] if s["mean_patch_mse_normalised"] else float("nan")]
            for name, s in splits.items()]
    body = [] if rows else [_skipped("No split was scored (evaluate.splits has no samples): likelihood and error tables not computed.")]
    body += ["<p>Per split. ELBO and IWAE: log-likelihood bounds in nats per sample, higher is better; KL in nats, ≥ 0; "
            "PSNR in dB and SSIM (1 = identical) higher is better; the last column is the reconstruction MSE over the "
            "MSE of always answering the training set's mean input (below 1 is better than a collapsed model).</p>",
            table_html(["split", "samples", "ELBO (nats)", "IWAE log-lik. (nats)", "KL (nats)", "PSNR (dB)", "SSIM",
                        "MSE ÷ mean-input MSE"], rows)] if rows else []
    if nodule_error:
        key = "hu" if hu else "model_scale"
        body.append(f"<p>Error on the nodule itself: root-mean-square error in {unit} (lower is better) inside the consensus "
                    "mask and outside it, averaged over each split's nodules. A nodule error far above the background "
                    "error means the model keeps the surroundings and loses the nodule.</p>")
        if kept_voxels is not None:
            body.append(f"<p>This model sees the image only within {kept_voxels} voxel{'' if kept_voxels == 1 else 's'} of the "
                        "consensus mask (model.context: "
                        "nodule); beyond that its input is one constant lung value, so the error outside the mask is mostly "
                        "that ring and the constant, and the montages show the input as the model saw it.</p>")
        body.append(table_html(["split", "nodules", f"RMSE inside mask ({unit})", f"RMSE outside mask ({unit})", "mask share of the patch"],
                               [[n, e["nodules"], e[f"rmse_inside_{key}"], e[f"rmse_outside_{key}"], f"{e['mask_fraction']:.2%}"]
                                for n, e in nodule_error.items()]))
    else:
        body.append(_skipped("No consensus masks for these samples (images that are not CT, or a split with a row lacking its "
                             "mask file, e.g. coordinates without a diameter): error inside vs outside the nodule not "
                             "measured, montages not outlined."))
    body.append(_figures(made))
    return Section("reconstruction", "Does it reconstruct the nodule?", "".join(body))


def latent_section(collapse: Mapping[str, Any], made: Sequence[Figure]) -> Section:
    """Active units at the stated threshold, the PCA dimension, KL per dimension sorted."""
    body = (f"<p><b>{collapse['active_units']} of {collapse['latent_size']}</b> latent dimensions are active: their KL(q(z_d|x) ‖ N(0, 1)), "
            f"averaged over the {collapse['samples']} embedded samples, exceeds <b>{collapse['kl_active_threshold_nats']:g} nats</b> "
            "(an unused dimension copies the prior and costs ~0 nats). By Burda et al.'s criterion, variance over samples of the "
            f"posterior mean > {collapse['active_unit_threshold']:g}: {collapse['active_units_by_mean_variance']} dimensions. "
            f"<b>{collapse['pca_dims_for_variance']}</b> principal components hold {collapse['pca_variance_fraction']:.0%} of the "
            "posterior means' variance: active units count coordinates that vary, PCA counts independent directions, so many "
            "active units with few PCA dimensions means the code is redundant, not rich (with N samples at most N − 1 directions "
            f"can vary). Total KL: {collapse['kl_total_nats']:.4g} nats per sample.</p>")
    return Section("latent-space", "Did the latent space collapse?", body + _figures(made))


def probe_section(probe: Mapping[str, Any], made: Sequence[Figure], representation: tuple[str, pd.DataFrame] | str | None) -> Section:
    """Probe vs baselines with patient-bootstrap intervals and ROC curves; the representation benchmark table."""
    body = []
    if probe.get("skipped"):
        body.append(_skipped(f"The probe did not run: {probe['skipped']}"))
    elif probe.get("results"):
        body.append(f"<p>Logistic regression predicting <code>{html.escape(str(probe.get('label_column')))}</code> from each "
                    f"representation, {probe['folds']}-fold cross-validation grouped by patient ({probe['labelled_samples']} "
                    f"labelled samples, {probe.get('patients', '?')} patients). ROC AUC: higher is better, 0.5 is chance; "
                    "95 % interval from resampling patients with replacement.</p>")
        rows = [[name, r["n_features"], r["auc_mean"], r["auc_ci_low"], r["auc_ci_high"], len(r["fold_aucs"])]
                for name, r in probe["results"].items()]
        body.append(table_html(["features", "features seen by the classifier", "ROC AUC (mean over folds)", "95 % low",
                                "95 % high", "folds scored"], rows))
        if "raw_voxel_count" in probe:
            body.append(f"<p>raw_voxel_pca: PCA of the {probe['raw_voxel_count']} input voxels, fitted inside each training fold.</p>")
    else:
        body.append(_skipped("The probe is disabled (evaluate.probe.enabled: false)."))
    body.append(_figures(made))
    if isinstance(representation, tuple):
        source, table = representation
        body.append(f"<h3>Representation benchmark</h3><p>From {html.escape(source)}.</p>"
                    + table_html(list(map(str, table.columns)), table.astype(object).values.tolist()))
    elif isinstance(representation, str):
        body.append(_skipped(representation))
    return Section("probe", "Are the features useful?", "".join(body))


def retrieval_section(retrieval: Mapping[str, Any], made: Sequence[Figure]) -> Section:
    """Nearest-neighbour gallery and the label agreement of neighbours against chance."""
    if retrieval.get("skipped"):
        return Section("retrieval", "Does the latent space group similar nodules?", _skipped(f"Not drawn: {retrieval['skipped']}"))
    text = ""
    if "label_agreement" in retrieval:
        agreement, chance = retrieval["label_agreement"], retrieval["label_agreement_by_chance"]
        verdict = ("above chance: the latent space groups by label" if agreement > chance
                   else "not above chance: the latent space does not group by label")
        text = (f"<p>Over {retrieval.get('label_agreement_queries', 'the')} labelled samples (up to 2,000, drawn at random), "
                f"<b>{agreement:.1%}</b> of their {retrieval['k']} nearest neighbours share their label, against {chance:.1%} "
                f"expected from the label frequencies alone: {verdict}.</p>")
    return Section("retrieval", "Does the latent space group similar nodules?", text + _figures(made))


def generative_section(made: Sequence[Figure], notes: Sequence[str]) -> Section:
    """White 2016's visualisations: slerp between nodules, attribute vectors, samples."""
    body = ("<p>After White 2016, “Sampling Generative Networks”: what the decoder makes of paths through the latent space. "
            "Images are decoder means, lung window (W 1500, L −600 HU) for CT.</p>")
    body += "".join(_skipped(n) for n in notes)
    return Section("generative", "What has the model learned to generate?", body + _figures(made))


def training_section(training: Mapping[str, Any], made: Sequence[Figure]) -> Section:
    """Loss curves per epoch and the health sentences."""
    if not made:
        return Section("training", "Did training go well?", _skipped("No training history (metrics.csv) found: curves not drawn."))
    problems = training.get("health", [])
    verdict = ("".join(f'<p class="unhealthy">{html.escape(p)}</p>' for p in problems) if problems
               else "<p>The curves look like a healthy run: reconstruction rose fast then slowly, and the KL peaked before the end.</p>")
    return Section("training", "Did training go well?", verdict + _figures(made))


def extra_section(heading: str, fragment: str) -> Section:
    """A trusted HTML fragment made by another stage (the MNIST size table)."""
    return Section(f"extra-{''.join(c if c.isalnum() else '-' for c in heading)}", heading, fragment)
