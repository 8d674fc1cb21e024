#!/usr/bin/env python
"""Representation benchmark: how much of each painted nodule property a feature set lets a linear probe read.

    python benchmarks/representation.py [--config configs/representation.yaml] [--variants NAME ...]
                                        [--out results/representation] [--retrain]

Stages (each timed; the cohort and extraction are built once and reused when their outputs exist):

1. the phantom cohort of the config (``phantom.n_scans`` scans) and its extraction (64³ patches, masks);
2. feature sets: consensus diameter; pyradiomics (shape, first-order, GLCM) on image + consensus mask;
   raw-voxel PCA (the central 32³ voxels, PCA fitted inside each fold);
3. one VAE per model variant (``VARIANTS``: config overrides on top of ``--config``), trained on the
   manifest's train split, then every nodule embedded (posterior means averaged over the patch's 16
   orientations, ``embed.average_orientations``); rows ``<variant>`` (latents) and ``<variant> +
   diameter``; for the default's two seeds also ``<variant>, one orientation`` (the same checkpoint,
   one encoder pass); and the default model with its random initial weights, never trained (a control:
   what the input alone gives a convolutional encoder);
4. every feature set probed on the same R × K patient-grouped folds (lidcvae.evaluate.representation).

Prints one Markdown table (rows = feature sets, columns = targets, mean ± sd over the R repeats) and
writes it with the timings to ``<out>/table.md`` and ``<out>/scores.json`` for benchmarks/RESULTS.md.

GPU-sized variant: ``--config configs/representation-gpu.yaml`` (200 scans, full-size channels,
more epochs; see that file).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lidcvae.config import set_dotted  # noqa: E402
from lidcvae.embed import EmbedConfig, embed_manifest, encode_batches, posterior_arrays  # noqa: E402
from lidcvae.evaluate.representation import (  # noqa: E402
    FeatureSet, Target, format_paired, format_table, pca_probe, repeated_grouped_folds, score_table,
)
from lidcvae.io import atomic_path  # noqa: E402
from lidcvae.run_config import RunConfig, load_config  # noqa: E402
from lidcvae.workflow.cli import setup_logging  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("representation")

# Model variants compared, as dotted config overrides on top of the benchmark config (whose model is the
# schema default: a 32³ crop, the mask channel, mask weight ×10, a 1-voxel nodule context, σ per channel,
# encoder levels 0–1 and a 16-bin soft histogram of the image pooled over the mask and its edge band, and
# that density histogram decoded from z, its log-likelihood ×1000).
# "seed-recipe" is configs/seed-recipe.yaml's model (64³ input, one channel, uniform squared error, dim(z) = 256);
# the row marked (default) is the schema defaults (configs/lidc.yaml's model; the 13-nodule demo,
# configs/demo.yaml, keeps a 3-voxel context and no mask pooling).
# The seed recipe trains at 64³ (8× the voxels of a 32³ crop), so it gets a quarter of the epochs to
# fit the benchmark's hour; its row says so.
UNIFORM = {"kind": "uniform", "peak": 1.0}
MASK10 = {"kind": "mask", "peak": 10.0, "dilate_voxels": 3}
# The rows before model.mask_pooling became the default flatten the encoder's last level only; those
# before model.context and per-channel σ also see the whole patch with one σ²; those before
# mask_pooling.histogram_bins pool the encoder levels without the image's soft histogram; and every row
# before model.histogram_view decodes no density histogram from z.
NO_VIEW = {"model.histogram_view.enabled": False}
NO_HISTOGRAM = {"model.mask_pooling.histogram_bins": 0, **NO_VIEW}
FLAT = {"model.mask_pooling.enabled": False, **NO_VIEW}
WHOLE = {**FLAT, "model.context.kind": "full", "model.sigma.per_channel": False}
DEFAULT = "mask pooling + histogram + histogram view ×1000 (default)"
DEFAULT_SEED_1 = "mask pooling + histogram + histogram view ×1000, seed 1"
DEFAULT_240 = "mask pooling + histogram + histogram view ×1000, 240 epochs"
DEFAULT_240_SEED_1 = "mask pooling + histogram + histogram view ×1000, 240 epochs, seed 1"
DEFAULT_60 = "mask pooling + histogram + histogram view ×1000, 60 epochs"
DEFAULT_60_SEED_1 = "mask pooling + histogram + histogram view ×1000, 60 epochs, seed 1"
VARIANTS: dict[str, dict[str, object]] = {
    # = configs/seed-recipe.yaml's model section, on the benchmark config's channels
    "seed-recipe (64³, 30 epochs)": {**WHOLE, "model.input_size": 64, "model.mask_channel": False,
                                     "model.reconstruction_weight": UNIFORM, "train.epochs": 30},
    "crop32": {**WHOLE, "model.input_size": 32, "model.mask_channel": False, "model.reconstruction_weight": UNIFORM},
    "crop32 + gaussian weight ×20": {**WHOLE, "model.input_size": 32, "model.mask_channel": False,
                                     "model.reconstruction_weight": {"kind": "gaussian", "peak": 20.0, "sigma_voxels": 6.0}},
    "crop32 + mask channel": {**WHOLE, "model.input_size": 32, "model.mask_channel": True, "model.reconstruction_weight": UNIFORM},
    "crop32 + mask channel + mask weight ×10": {**WHOLE, "model.input_size": 32, "model.mask_channel": True,
                                                "model.reconstruction_weight": MASK10},
    "crop32 + mask channel + mask weight ×30": {**WHOLE, "model.input_size": 32, "model.mask_channel": True,
                                                "model.reconstruction_weight": {"kind": "mask", "peak": 30.0, "dilate_voxels": 3}},
    # One σ² per channel: the image is no longer scored against an error level set by the mask's edges.
    "crop32 + mask channel + σ per channel": {**WHOLE, "model.input_size": 32, "model.mask_channel": True,
                                              "model.reconstruction_weight": UNIFORM, "model.sigma.per_channel": True},
    "crop32 + mask channel + mask weight ×10 + σ per channel": {**WHOLE, "model.input_size": 32, "model.mask_channel": True,
                                                                "model.sigma.per_channel": True, "model.reconstruction_weight": MASK10},
    # Less pressure towards the prior: β = 0.25, or KL free below 0.5 nats per dimension.
    "mask weight ×10 + β 0.25": {**WHOLE, "train.beta": 0.25},
    "mask weight ×10 + free bits 0.5": {**WHOLE, "train.free_bits": 0.5},
    # Only the nodule's neighbourhood (model.context: nodule; lung HU beyond): the mask dilated by 3 voxels
    # (a cube of edge 7), with one σ² and with one per channel, and without batch norm.
    "mask weight ×10 + nodule context": {**WHOLE, "model.context.kind": "nodule", "model.context.dilate_voxels": 3},
    "nodule context 3 voxels + σ per channel": {**FLAT, "model.context.dilate_voxels": 3},
    # Without batch norm (model.norm: null): with batch 4 the running statistics make the val loss jumpy.
    "nodule context 3 voxels + σ per channel, no batch norm": {**FLAT, "model.context.dilate_voxels": 3, "model.norm": None},
    # The mask dilated by 1 voxel; twice, with another seed, to show the run-to-run spread.
    "nodule context 1 voxel + σ per channel": FLAT,
    "nodule context 1 voxel + σ per channel, seed 1": {**FLAT, "train.seed": 1},
    # Encoder levels 0–1 also averaged over the consensus mask into μ and log σ² (lidcvae.models.pooling):
    # over the mask alone, and over its edge band too, twice, with two seeds.
    "mask pooling, levels 0–1": {"model.mask_pooling.edge": False, **NO_HISTOGRAM},
    "mask pooling, levels 0–1 + edge band": NO_HISTOGRAM,
    "mask pooling, levels 0–1 + edge band, seed 1": {"train.seed": 1, **NO_HISTOGRAM},
    # A 16-bin soft histogram of the image pooled beside the levels, with two seeds.
    "mask pooling, levels 0–1 + edge band + histogram": NO_VIEW,
    "mask pooling, levels 0–1 + edge band + histogram, seed 1": {"train.seed": 1, **NO_VIEW},
    # Less pressure towards the prior, now that the pooled path makes density and margin readable.
    "mask pooling + histogram, β 0.25": {"train.beta": 0.25, **NO_VIEW},
    "mask pooling + histogram, β 0.25, seed 1": {"train.beta": 0.25, "train.seed": 1, **NO_VIEW},
    # The default: z also decodes the nodule's density histogram over the mask and its edge band, its
    # log-likelihood counted 1000 times (lidcvae.models.histogram_view), with two seeds.
    DEFAULT: {},
    DEFAULT_SEED_1: {"train.seed": 1},
    # The default's validation loss still fell at epoch 120 (best checkpoints at epochs 117 and 116):
    # the same model trained twice as long, and half as long, with two seeds each.
    DEFAULT_240: {"train.epochs": 240},
    DEFAULT_240_SEED_1: {"train.epochs": 240, "train.seed": 1},
    DEFAULT_60: {"train.epochs": 60},
    DEFAULT_60_SEED_1: {"train.epochs": 60, "train.seed": 1},
}

# Embedded a second time in one orientation (embed.average_orientations: false), so the table shows what
# the 16-orientation average adds with the same checkpoint.
ONE_ORIENTATION = (DEFAULT, DEFAULT_SEED_1)
UNTRAINED = "untrained encoder (the default model, random weights)"
# Rows compared with radiomics repeat by repeat on the same folds, below the table.
PAIRED = (DEFAULT, DEFAULT_SEED_1, DEFAULT_60, DEFAULT_60_SEED_1, DEFAULT_240, DEFAULT_240_SEED_1, UNTRAINED)

TARGETS = [
    Target("label", "binary", "malignancy"),
    *(Target(c, "ordinal", c) for c in ("subtlety", "internalStructure", "calcification", "sphericity",
                                        "margin", "lobulation", "spiculation", "texture")),
    Target("log_diameter", "ordinal", "log diameter"),
]
PCA_COMPONENTS = 32
PCA_CROP = 32


def _timed(timings: dict, name: str):
    class Timer:
        def __enter__(self):
            self.start = time.perf_counter()

        def __exit__(self, *exc):
            timings[name] = round(time.perf_counter() - self.start, 1)
            log.info("%s: %.1f s", name, timings[name])

    return Timer()


def build_cohort(config: RunConfig, out: Path, timings: dict) -> Path:
    """Phantom DICOM + extraction under ``out``, reused when their completion markers exist; the manifest."""
    from lidcvae.extract import extract_cohort
    from lidcvae.phantom import write_phantom_cohort

    record, manifest = out / "phantom" / "cohort.json", out / "extract" / "manifest.parquet"
    if manifest.is_file():
        timings["cohort and extract (reused)"] = 0.0
        return manifest
    if not record.is_file():
        with _timed(timings, "phantom cohort (s)"):
            write_phantom_cohort(out / "phantom" / "dicom", config.phantom, record)
    else:
        rows = json.loads(record.read_text())["series"]
        timings["phantom cohort (s, reused; build + write summed over scans)"] = round(sum(r["build_s"] + r["write_s"] for r in rows), 1)
    if not manifest.is_file():
        with _timed(timings, "extract (s)"):
            extract_cohort(out / "phantom" / "dicom", out / "extract", config.extract, None, config.phantom.workers)
    return manifest


def cohort_table(manifest_path: Path) -> pd.DataFrame:
    from lidcvae.extract.manifest import read_manifest

    table = read_manifest(manifest_path).reset_index(drop=True)
    table["log_diameter"] = np.log(table["consensus_diameter_mm"].astype(float))
    table["label"] = pd.to_numeric(table["label"], errors="coerce")
    return table


def baseline_feature_sets(table: pd.DataFrame, config: RunConfig, out: Path, workers: int, timings: dict) -> list[FeatureSet]:
    from lidcvae.data import PatchSource
    from lidcvae.data.lidc import images_from_table
    from lidcvae.evaluate.radiomics import radiomics_table

    diameter = table[["consensus_diameter_mm"]].to_numpy(float)
    cache = out / "radiomics.parquet"
    with _timed(timings, "radiomics (s)"):
        if cache.is_file() and len(pd.read_parquet(cache)) == len(table):
            radiomics = pd.read_parquet(cache)
        else:
            radiomics = radiomics_table(table, workers)
            with atomic_path(cache) as tmp:
                radiomics.to_parquet(tmp)
    with _timed(timings, "raw voxels (s)"):
        source = PatchSource(out / "extract" / "manifest.parquet", PCA_CROP, config.model.hu_window, "crop", mask_channel=False,
                             context_voxels=None, fill_hu=config.model.context.fill_hu)
        voxels = images_from_table(table, source).flatten(1).numpy()
    return [
        FeatureSet("consensus diameter", diameter, skip=("log_diameter",)),
        FeatureSet(f"radiomics ({radiomics.shape[1]} pyradiomics features)", radiomics.to_numpy()),
        FeatureSet(f"raw-voxel PCA ({PCA_COMPONENTS} of the central {PCA_CROP}³)", voxels, pca_probe(PCA_COMPONENTS)),
    ]


def variant_config(base: RunConfig, variant: dict[str, object], threads: int) -> RunConfig:
    config = base.to_dict()
    config["train"].update(threads=threads, progress=False)
    for key, value in variant.items():
        set_dotted(config, key, copy.deepcopy(value))
    return RunConfig.from_mapping(config, "benchmark variant")


def run_dir_of(out: Path, name: str) -> Path:
    return out / "runs" / "".join(c if c.isascii() and c.isalnum() else "_" for c in name)


def train_variant(config: RunConfig, run_dir: Path, manifest: Path, retrain: bool) -> float | None:
    """Train one variant in this (worker) process with one thread; seconds taken, None when reused."""
    from lidcvae.train import train
    from lidcvae.workflow.cli import setup_logging

    if not retrain and (run_dir / "checkpoints" / "best.pt").is_file():
        return None
    for stale in (run_dir / "checkpoints").glob("*.pt"):
        stale.unlink()
    setup_logging(run_dir / "train.log")
    torch.set_num_threads(1)
    started = time.perf_counter()
    train(config, run_dir, manifest=manifest)
    return round(time.perf_counter() - started, 1)


def _epochs_trained(run_dir: Path) -> int:
    """Epochs finished so far (the trainer's metrics.csv rows)."""
    history = run_dir / "metrics.csv"
    return len(pd.read_csv(history)) if history.is_file() else 0


def _means(embeddings: pd.DataFrame, table: pd.DataFrame) -> np.ndarray:
    """(N, D) posterior means in the cohort table's row order."""
    return posterior_arrays(embeddings.set_index("nodule_id").loc[table["nodule_id"]])[0]


def latent_feature_sets(name: str, table: pd.DataFrame, out: Path, timings: dict) -> list[FeatureSet]:
    run_dir = run_dir_of(out, name)
    best, manifest = run_dir / "checkpoints" / "best.pt", out / "extract" / "manifest.parquet"
    with _timed(timings, f"embed {name} (s)"):
        means = _means(embed_manifest(best, manifest, run_dir / "embeddings.parquet", EmbedConfig.from_mapping({})), table)
    diameter = table[["consensus_diameter_mm"]].to_numpy(float)
    sets = [FeatureSet(name, means), FeatureSet(f"{name} + diameter", np.hstack([means, diameter]), skip=("log_diameter",))]
    if name in ONE_ORIENTATION:
        plain = embed_manifest(best, manifest, run_dir / "embeddings-one-orientation.parquet",
                               EmbedConfig.from_mapping({"average_orientations": False}))
        sets.append(FeatureSet(f"{name}, one orientation", _means(plain, table)))
    return sets


def untrained_feature_sets(config: RunConfig, table: pd.DataFrame, manifest: Path, timings: dict) -> list[FeatureSet]:
    """The default model as initialised (``train.seed``), never trained, embedded like the trained rows: how
    much of a row comes from what the input shows (nodule context, mask channel) rather than from training."""
    from lidcvae.data import PatchSource
    from lidcvae.data.lidc import images_from_table
    from lidcvae.data.model_input import ModelInput
    from lidcvae.models import build_model

    default = variant_config(config, {}, 1)
    torch.manual_seed(default.train.seed)
    model = build_model(default.model)
    with _timed(timings, "embed untrained (s)"):
        record = ModelInput.for_training(default.dataset, default.model, default.train.patch_fit, manifest)
        images = images_from_table(table, PatchSource.for_input(manifest, record))
        augment = default.train.augment
        averaged = encode_batches(model, images, 16, device="cpu", average_over=(augment.flips, augment.rot90))[0]
        plain = encode_batches(model, images, 16, device="cpu")[0]
    return [FeatureSet(UNTRAINED, averaged.astype(np.float64)),
            FeatureSet(f"{UNTRAINED}, one orientation", plain.astype(np.float64))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "representation.yaml")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"from {list(VARIANTS)}")
    parser.add_argument("--out", type=Path, help="default: results/<config name>")
    parser.add_argument("--retrain", action="store_true", help="train even where a checkpoint exists")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: probe the variants' best checkpoints as they are now (the table says how "
                             "many epochs each had run); writes table-only.md / scores-table-only.json")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="threads of the radiomics and probe stages")
    parser.add_argument("--jobs", type=int, default=5, help="model variants trained at once (one thread each)")
    args = parser.parse_args(argv)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {list(VARIANTS)}")
    config = load_config(args.config)
    out = args.out or Path(config.results_dir) / config.name
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-table-only" if args.table_only else ""
    setup_logging(out / f"benchmark{suffix}.log")
    torch.set_num_threads(args.threads)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    manifest = build_cohort(config, out, timings)
    table = cohort_table(manifest)
    # Variants train in parallel worker processes (one thread each) while the baselines are computed.
    missing = [n for n in args.variants if not (run_dir_of(out, n) / "checkpoints" / "best.pt").is_file()]
    if args.table_only and missing:
        parser.error(f"--table-only: no checkpoint yet for {missing}")
    with ProcessPoolExecutor(1 if args.table_only else args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = {} if args.table_only else {
            name: pool.submit(train_variant, variant_config(config, VARIANTS[name], 1), run_dir_of(out, name), manifest,
                              args.retrain)
            for name in args.variants}
        feature_sets = baseline_feature_sets(table, config, out, args.threads, timings)
        for name, job in jobs.items():
            seconds = job.result()
            timings[f"train {name} (s{', reused' if seconds is None else ''})"] = seconds
    feature_sets += untrained_feature_sets(config, table, manifest, timings)
    for name in args.variants:
        feature_sets += latent_feature_sets(name, table, out, timings)
    strata = table["label"].fillna(-1).astype(int).to_numpy()
    repeats = repeated_grouped_folds(table["patient_id"].to_numpy(), strata, args.folds, args.repeats, seed=0)
    with _timed(timings, "probes (s)"):
        results = score_table(feature_sets, table, TARGETS, repeats)
    timings["total (s)"] = round(time.perf_counter() - started, 1)
    epochs = {name: _epochs_trained(run_dir_of(out, name)) for name in args.variants}

    n_labelled = int(table["label"].notna().sum())
    header = (f"{len(table)} nodules ({n_labelled} with a malignancy label) from {table['patient_id'].nunique()} patients; "
              f"{args.repeats} × {args.folds}-fold patient-grouped CV, the same folds for every row; cell = mean ± sd over "
              f"the {args.repeats} repeats of the pooled out-of-fold score. Malignancy: ROC AUC of a logistic probe "
              "(0.5 chance, higher better). Characteristics (readers' median rating, 1–5; calcification 1–6; internal "
              "structure 1–4) and log diameter: R² of a ridge probe (0 = the training mean, higher better). '–' = not "
              "scored (the row contains the diameter itself).")
    text = format_table(results, TARGETS, {fs.name: fs.features.shape[1] for fs in feature_sets})
    radiomics = next(name for name in results if name.startswith("radiomics"))
    text += (f"\n\nPaired with radiomics on the same folds: cell = mean ± sd over the {args.repeats} repeats of (row − "
             "radiomics), positive = the row scores higher, and (n/R) = the repeats in which it scored at least as high.\n\n"
             + format_paired(results, [name for name in PAIRED if name in results], radiomics, TARGETS))
    text += "\n\nEpochs run when the table was taken, of those configured (each row embeds with its lowest-val-loss checkpoint so far): " + "; ".join(
        f"{name}: {done}/{variant_config(config, VARIANTS[name], 1).train.epochs}" for name, done in epochs.items())
    machine = f"{platform.node()} ({os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} threads)"
    print(header + "\n\n" + text + "\n\nTimings: " + json.dumps(timings) + "\nMachine: " + machine)
    with atomic_path(out / ("table-only.md" if args.table_only else "table.md")) as tmp:
        tmp.write_text(header + "\n\n" + text + "\n\nTimings (s): " + json.dumps(timings) + "\n\nMachine: " + machine + "\n")
    scores = {fs: {t: {"per_repeat": s.per_repeat, "spearman": s.spearman, "n": s.n_samples} for t, s in targets.items()}
              for fs, targets in results.items()}
    with atomic_path(out / f"scores{suffix}.json") as tmp:
        tmp.write_text(json.dumps({"scores": scores, "timings": timings, "machine": machine}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
