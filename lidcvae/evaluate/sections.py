"""The report's sections, one per question a researcher asks, built from metrics.json's parts and figures.

Each builder returns a ``Section``; a part that could not be computed says so in a visible line
(class ``skipped``) instead of disappearing. A claim of structure is made only beside its size-only
control and only when it beats it (``lidcvae.evaluate.claims``); samples are named for what they are
(nodules, or MNIST's digits: ``provenance.Vocabulary``).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lidcvae.evaluate.figures import Drawn
from lidcvae.evaluate.provenance import Vocabulary, vocabulary
from lidcvae.evaluate.report import Section, figure_html, table_html

__all__ = ["SECTION_IDS", "reconstruction_section", "latent_section", "probe_section", "retrieval_section",
           "generative_section", "training_section", "extra_section"]

SECTION_IDS = ("reconstruction", "latent-space", "probe", "retrieval", "generative", "training")

_NODULES = vocabulary("lidc")


def _skipped(text: str) -> str:
    return f'<p class="skipped">{html.escape(text)}</p>'


def _figures(made: Sequence[Drawn]) -> str:
    return "".join(figure_html(drawn.png, drawn.caption, Path(drawn.name).stem) for drawn in made)


def _split_rows(splits: Mapping[str, Any], nodule_error: Mapping[str, Any], patients: Mapping[str, int | None],
                ct: bool) -> list[list]:
    rows = []
    for name, s in splits.items():
        coverage = f"{nodule_error[name]['mask_fraction']:.2%}" if name in nodule_error else "–"
        ratio = s["mse_normalised"] / s["mean_patch_mse_normalised"] if s["mean_patch_mse_normalised"] else float("nan")
        counts = [s["samples"], "–" if patients.get(name) is None else patients[name], coverage] if ct else [s["samples"]]
        rows.append([name, *counts, s["elbo_nats"], s["iwae_log_likelihood_nats"], s["kl_nats"], s["psnr_db"], s["ssim"], ratio])
    return rows


def reconstruction_section(splits: Mapping[str, Any], nodule_error: Mapping[str, Any], made: Sequence[Drawn],
                           hu: bool, kept_voxels: int | None = None, words: Vocabulary = _NODULES,
                           patients: Mapping[str, int | None] | None = None, mask: str = "consensus (50 %) mask") -> Section:
    """Likelihood and error per split with its n and mask coverage, the error inside vs outside the mask
    (``mask`` names it), outlined montages.

    ``kept_voxels``: r of ``model.context: nodule`` (the model saw only the mask dilated by r voxels), or None.
    """
    unit = "HU" if hu else "model scale"
    rows = _split_rows(splits, nodule_error, patients or {}, words.has_patients)
    body = [] if rows else [_skipped("No split was scored (evaluate.splits has no samples): likelihood and error tables not computed.")]
    if rows:
        counted = (f"Per split, with its {words.many}, patients and the share of the patch its masks cover: log-likelihoods "
                   "of different splits are comparable only where these match (a split whose masks cover less is scored "
                   "mostly on the constant fill). " if words.has_patients else f"Per split, with its {words.many}. ")
        header = ["split", words.many, "patients", "mask share"] if words.has_patients else ["split", words.many]
        body += [f"<p>{counted}ELBO and IWAE: log-likelihood bounds "
                 "in nats per sample, higher is better; KL in nats, ≥ 0; PSNR in dB and SSIM (1 = identical) higher is "
                 "better; the last column is the reconstruction MSE over the MSE of always answering the training set's "
                 "mean input (below 1 is better than a collapsed model).</p>",
                 table_html([*header, "ELBO (nats)", "IWAE log-lik. (nats)", "KL (nats)", "PSNR (dB)", "SSIM",
                             "MSE ÷ mean-input MSE"], rows)]
    if nodule_error:
        key = "hu" if hu else "model_scale"
        body.append(f"<p>Error on the nodule itself: root-mean-square error in {unit} (lower is better) inside the {mask} "
                    "and outside it, averaged over each split's nodules. A nodule error far above the background "
                    "error means the model keeps the surroundings and loses the nodule.</p>")
        if kept_voxels is not None:
            body.append(f"<p>This model sees the image only within {kept_voxels} voxel{'' if kept_voxels == 1 else 's'} of the "
                        f"{mask} (model.context: nodule); beyond that its input is one constant lung value, so the error "
                        "outside the mask is mostly that ring and the constant, and the montages show the input as the "
                        "model saw it.</p>")
        body.append(table_html(["split", "nodules", f"RMSE inside mask ({unit})", f"RMSE outside mask ({unit})", "mask share of the patch"],
                               [[n, e["nodules"], e[f"rmse_inside_{key}"], e[f"rmse_outside_{key}"], f"{e['mask_fraction']:.2%}"]
                                for n, e in nodule_error.items()]))
    elif hu:
        body.append(_skipped("No masks for these samples (a split with a row lacking its mask file, e.g. coordinates "
                             "without a diameter): error inside vs outside the nodule not measured, montages not outlined."))
    body.append(_figures(made))
    return Section("reconstruction", f"Does it reconstruct the {words.one}?", "".join(body))


def latent_section(collapse: Mapping[str, Any], made: Sequence[Drawn], words: Vocabulary = _NODULES) -> Section:
    """Active units by the report's one rule, PCA-90 explained, PC1 against diameter, KL per dimension sorted."""
    active = collapse.get("active_units")
    counted = (f"<b>{active} of {collapse['latent_size']}</b> latent dimensions are active" if active is not None
               else f"Active units not counted: {html.escape(collapse.get('active_units_note', ''))}")
    fraction = collapse["pca_variance_fraction"]
    body = (f"<p>{counted}. Rule (the only collapse measure in this report and metrics.json): "
            f"{html.escape(collapse['active_unit_rule'])}, over the {collapse['samples']} embedded {words.many}. "
            f"<b>PCA-{fraction:.0%} = {collapse['pca_dims_for_variance']}</b>: the fewest principal components of the posterior "
            f"means that hold {fraction:.0%} of their variance across the {words.many}, i.e. how many independent directions "
            f"the codes really vary in (with N {words.many} at most N − 1). Many active units with a PCA-{fraction:.0%} of 1 or 2 "
            f"mean the {words.many} differ along very few directions that many coordinates share: a redundant code, not a "
            f"rich one. Total KL: {collapse['kl_total_nats']:.4g} nats per sample.</p>")
    pc1 = collapse.get("pc1", {})
    if "pc1_diameter_r" in pc1:
        strong = abs(pc1["pc1_diameter_r"]) >= 0.7
        body += (f"<p>Size-only control: PC1 holds {pc1['pc1_variance_fraction']:.0%} of the variance and correlates "
                 f"r = {pc1['pc1_diameter_r']:.2f} with diameter ({pc1['pc1_diameter_samples']} nodules)"
                 + (": the main direction of the latent space is largely the nodule's size.</p>" if strong else ".</p>"))
    elif words.has_patients:
        body += _skipped("PC1 not compared with size: no diameter column, or fewer than 3 nodules with one.")
    return Section("latent-space", "Did the latent space collapse?", body + _figures(made))


def _probe_text(probe: Mapping[str, Any], words: Vocabulary) -> str:
    averaging = (f" With {probe['classes']} classes the AUC is one-vs-rest, macro-averaged (the unweighted mean of each "
                 "class against the rest)." if probe.get("classes", 2) > 2 else "")
    groups = "patient" if words.has_patients else f"group ({html.escape(str(probe.get('group_column', 'id')))})"
    text = (f"<p>Logistic regression predicting <code>{html.escape(str(probe.get('label_column')))}</code> from each "
            f"representation, {probe['folds']}-fold cross-validation grouped by {groups} ({probe['labelled_samples']} "
            f"labelled {words.many}" + (f", {probe.get('patients', '?')} patients" if words.has_patients else "")
            + f"). ROC AUC: higher is better, 0.5 is chance; 95 % interval from resampling {groups}s with replacement.{averaging}</p>")
    control = probe.get("size_control", {})
    if control:
        claim = ("the latent features beat diameter alone" if control["beats_size"] else
                 "the latent features do not beat diameter alone, so no claim is made that they carry more than size")
        text += (f"<p><b>Size-only control:</b> latent AUC {control['latent_auc']:.3f} against {control['size_auc']:.3f} from "
                 f"{html.escape(control['size_column'])} alone: {claim} (rule: {html.escape(control['rule'])}).</p>")
    elif words.has_patients:
        text += _skipped("No diameter column to probe with alone: the latent AUC has no size-only control and is no claim.")
    return text


def probe_section(probe: Mapping[str, Any], made: Sequence[Drawn], representation: tuple[str, pd.DataFrame] | str | None,
                  words: Vocabulary = _NODULES) -> Section:
    """Probe vs baselines (diameter the size-only control) with bootstrap intervals and ROC curves; the benchmark table."""
    body = []
    if probe.get("skipped"):
        body.append(_skipped(f"The probe did not run: {probe['skipped']}"))
    elif probe.get("results"):
        body.append(_probe_text(probe, words))
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


def _agreement_text(retrieval: Mapping[str, Any], words: Vocabulary) -> str:
    agreement, chance = retrieval["label_agreement"], retrieval["label_agreement_by_chance"]
    by_size = retrieval.get("label_agreement_by_diameter")
    patients = retrieval.get("label_agreement_patients")
    text = (f"<p>Over {retrieval['label_agreement_queries']} labelled {words.many}"
            + (f" from {patients} patients" if patients is not None else "") + " (up to 2,000, drawn at random), "
            f"<b>{agreement:.1%}</b> of their {retrieval['k']} nearest neighbours share their label, against {chance:.1%} "
            "expected from the label frequencies alone")
    if by_size is not None:
        text += (f" and <b>{by_size:.1%}</b> for the same queries' {retrieval['k']} nearest by diameter alone "
                 f"({html.escape(retrieval['size_column'])}, the size-only control)")
    beats = agreement > chance and (by_size is None or agreement > by_size)
    if not beats:
        verdict = ("not above chance" if agreement <= chance else "not above diameter alone")
        return text + f": {verdict}, so no claim is made that the latent space groups by label.</p>"
    if by_size is None and words.has_patients:
        return text + ": above chance, but with no diameter to compare, this may be size alone.</p>"
    return text + ": the latent space groups by label beyond " + ("size." if by_size is not None else "chance.") + "</p>"


def retrieval_section(retrieval: Mapping[str, Any], made: Sequence[Drawn], words: Vocabulary = _NODULES) -> Section:
    """Nearest-neighbour gallery and the label agreement of neighbours against chance and against diameter."""
    heading = f"Does the latent space group similar {words.many}?"
    if retrieval.get("skipped"):
        return Section("retrieval", heading, _skipped(f"Not drawn: {retrieval['skipped']}"))
    text = _agreement_text(retrieval, words) if "label_agreement" in retrieval else ""
    return Section("retrieval", heading, text + _figures(made))


def generative_section(made: Sequence[Drawn], notes: Sequence[str], ct: bool = True) -> Section:
    """White 2016's visualisations: slerp between samples, attribute vectors, samples."""
    window = " Images are decoder means, lung window (W 1500, L −600 HU)." if ct else " Images are decoder means."
    body = ("<p>After White 2016, “Sampling Generative Networks”: what the decoder makes of paths through the latent space."
            f"{window}</p>")
    body += "".join(_skipped(n) for n in notes)
    return Section("generative", "What has the model learned to generate?", body + _figures(made))


def training_section(training: Mapping[str, Any], made: Sequence[Drawn]) -> Section:
    """Loss curves per epoch and every computed check with its rule (the run is healthy only if all pass)."""
    if not made:
        return Section("training", "Did training go well?", _skipped("No training history (metrics.csv) found: curves not drawn."))
    checks = training.get("checks", [])
    mark = {True: "passed", False: "FAILED", None: "not computable"}
    rows = [[c["name"], mark[c["passed"]], c["rule"], c["detail"]] for c in checks]
    verdict = ("<p>Every check passed: the curves look like a healthy run.</p>" if training.get("healthy")
               else '<p class="unhealthy">Not a healthy run: see the checks marked FAILED or not computable.</p>')
    best = training.get("best_epoch")
    where = f" The evaluated checkpoint is from epoch {best} (dashed line)." if best is not None else ""
    sign = ("<p>The curves show log p(x|z), the negative of metrics.csv's and the training log's reconstruction loss "
            f"(<code>rec</code>), so higher is better here.{where}</p>")
    return Section("training", "Did training go well?",
                   verdict + table_html(["check", "result", "rule", "found"], rows) + sign + _figures(made))


def extra_section(heading: str, fragment: str) -> Section:
    """A trusted HTML fragment made by another stage (the MNIST size table)."""
    return Section(f"extra-{''.join(c if c.isalnum() else '-' for c in heading)}", heading, fragment)
