#!/usr/bin/env python
"""Benchmark, contrastive row: a SimCLR encoder on the reference variant's VAE encoder, trained on the train
nodules, its epoch chosen on val; every nodule's features (the posterior-mean head's output, before the
projection head, averaged over the trained orientations).

Command line:
    python pipelines/benchmark_contrastive.py --variant configs/benchmark/variants/default.yaml \\
        --manifest results/geometry/extract/manifest.parquet [--config configs/benchmark/geometry.yaml] \\
        [--set benchmark.contrastive.epochs=5] --checkpoint contrastive.pt --features contrastive.parquet
The variant file gives the model, the augmentation, seed, threads and device (train) and the embedding
batch and device (embed); --config's benchmark.contrastive gives epochs, batch, lr, τ, projection size and jitter.
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import config_from_args, run_script, setup_logging

TITLE = "contrastive (SimCLR, same backbone)"


def contrastive_row(variant_path, manifest, settings, checkpoint, features, average_orientations: bool) -> int:
    """Train (``settings``: the typed ``benchmark.contrastive``), embed every nodule, write the row's features
    (``<row>.parquet`` and its ``.json`` sidecar, ``lidcvae.benchmark.rows``); returns the rows written. Under
    two train nodules nothing is trained: the row's features are NaN and its sidecar says why (``unscored``)."""
    from lidcvae.benchmark.contrastive import FEATURE_PREFIX, embed_contrastive, train_contrastive
    from lidcvae.benchmark.rows import write_feature_set
    from lidcvae.extract.manifest import read_manifest
    from lidcvae.run_config import load_config

    variant = load_config(variant_path)
    Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
    Path(features).parent.mkdir(parents=True, exist_ok=True)
    if not train_contrastive(variant, settings, manifest, checkpoint):
        nodules = read_manifest(manifest)
        train = int((nodules["split"] == "train").sum())
        reason = f"not trained: the train split holds {train} nodule(s), SimCLR needs 2 or more to contrast"
        table = nodules[["nodule_id"]].assign(**{f"{FEATURE_PREFIX}000": float("nan")})
        write_feature_set(features, table, TITLE, skip=(), kind="model", unscored=reason)
        return len(table)
    table = embed_contrastive(checkpoint, manifest, variant.embed.batch_size, variant.embed.device, average_orientations)
    write_feature_set(features, table, TITLE, skip=(), kind="model")
    return len(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", required=True, type=Path, help="the reference variant's complete config file")
    parser.add_argument("--manifest", required=True, type=Path, help="nodule manifest with train/val splits")
    parser.add_argument("--config", type=Path, help="workflow config; its benchmark.contrastive section is used")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--checkpoint", required=True, type=Path, help="output: the encoder's checkpoint")
    parser.add_argument("--features", required=True, type=Path, help="output <row>.parquet: nodule_id + simclr000 … (and <row>.json)")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    run = config_from_args(parser, args.config, args.set)
    rows = contrastive_row(args.variant, args.manifest, run.benchmark.contrastive, args.checkpoint, args.features,
                           run.benchmark.average_orientations)
    print(f"{rows} rows → {args.features}")
    return 0


def run_from_snakemake(smk) -> None:
    """rules/benchmark.smk: input manifest and variant; output checkpoint and features."""
    from lidcvae.benchmark.settings import ContrastiveConfig

    settings = ContrastiveConfig.from_mapping(smk.config["benchmark"]["contrastive"], source="snakemake config")
    contrastive_row(smk.input.variant, smk.input.manifest, settings, smk.output.checkpoint, smk.output.features,
                    smk.params.average_orientations)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
