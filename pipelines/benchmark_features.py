#!/usr/bin/env python
"""Benchmark, a model's row (rules benchmark_variant_features and benchmark_untrained): posterior means of every
nodule, averaged over the orientations the model trained on, as a feature table (lidcvae.benchmark.rows).

Command line:
    python pipelines/benchmark_features.py --manifest M --out features/variant-default.parquet \\
        (--checkpoint runs/default/model.pt --title "trained default" | --untrained configs/benchmark/variants/default.yaml)
The untrained row is the variant's architecture at its train seed's random weights, never trained.
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import run_script, setup_logging


def write_row(manifest, out, average_orientations: bool, checkpoint=None, untrained=None, title=None) -> int:
    """Embed with a trained ``checkpoint`` or an ``untrained`` variant config, averaged over the trained
    orientations or not (``benchmark.average_orientations``); write the row; returns nodules."""
    from lidcvae.benchmark.features import latent_features, untrained_features
    from lidcvae.benchmark.rows import write_feature_set
    from lidcvae.embed.config import EmbedConfig
    from lidcvae.run_config import load_config

    embed = EmbedConfig.from_mapping({"average_orientations": average_orientations})
    if untrained is not None:
        table = untrained_features(load_config(untrained), manifest, embed)
        write_feature_set(out, table, title or f"untrained {Path(untrained).stem} (random weights)", (), "control")
    else:
        table = latent_features(checkpoint, manifest, embed)
        write_feature_set(out, table, title or f"trained {Path(checkpoint).parent.name} (VAE μ)", (), "model")
    return len(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, type=Path, help="the cohort's manifest")
    parser.add_argument("--out", required=True, type=Path, help="output: <row>.parquet (and its .json sidecar)")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=Path, help="a trained variant's checkpoint")
    model.add_argument("--untrained", type=Path, help="a variant config: its model at the train seed's random weights")
    parser.add_argument("--title", help="the row's name in the table")
    parser.add_argument("--one-orientation", action="store_true", help="encode each nodule once, not averaged")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    count = write_row(args.manifest, args.out, not args.one_orientation, args.checkpoint, args.untrained, args.title)
    print(f"{count} nodule(s) → {args.out}")
    return 0


def run_from_snakemake(smk) -> None:
    import torch

    torch.set_num_threads(smk.threads)
    if "checkpoint" in smk.input.keys():
        write_row(smk.input.manifest, smk.output.features, smk.params.average_orientations, checkpoint=smk.input.checkpoint,
                  title=f"trained {smk.wildcards.variant} (VAE μ)")
    else:
        write_row(smk.input.manifest, smk.output.features, smk.params.average_orientations, untrained=smk.input.variant)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
