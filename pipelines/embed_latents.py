#!/usr/bin/env python
"""Embed nodules with a trained VAE: posterior means z000… and log-variances logvar000…, one row per nodule.

Command line (any manifest in the extract format, including nodules the model never saw):
    python pipelines/embed_latents.py --checkpoint results/phantom/train/checkpoints/best.pt \\
        --manifest results/phantom/extract/manifest.parquet --out embeddings.parquet
Without --manifest, every split of the config's dataset is embedded (e.g. --config configs/mnist.yaml).
"""


import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import config_from_args, run_script, setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="trained checkpoint (best.pt or last.pt)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", type=Path, help="nodule manifest (extract/manifest.parquet format)")
    source.add_argument("--config", type=Path, help="workflow config whose dataset splits are embedded instead")
    parser.add_argument("--out", required=True, type=Path, help="output Parquet table")
    parser.add_argument("--batch-size", type=int, help="patches encoded together (default: embed.batch_size)")
    parser.add_argument("--device", help="torch device (default: embed.device)")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)

    from lidcvae.embed import embed_dataset, embed_manifest

    overrides = {f"embed.{key}": value for key, value in (("batch_size", args.batch_size), ("device", args.device))
                 if value is not None}  # fmt: skip
    run = config_from_args(parser, args.config, [], overrides)
    if args.manifest:
        table = embed_manifest(args.checkpoint, args.manifest, args.out, run.embed)
    else:
        table = embed_dataset(args.checkpoint, run.mnist, args.out, run.embed)
    print(f"{len(table)} rows → {args.out}")
    return 0


def run_from_snakemake(smk) -> None:
    """rules/embed.smk: the manifest when the rule has one, else the workflow config's dataset."""
    import torch

    from lidcvae.embed import embed_dataset, embed_manifest
    from lidcvae.run_config import RunConfig

    torch.set_num_threads(smk.threads)
    run = RunConfig.from_mapping(smk.config, source="snakemake config")
    if "manifest" in smk.input.keys():
        embed_manifest(smk.input.checkpoint, smk.input.manifest, smk.output.embeddings, run.embed)
    else:
        embed_dataset(smk.input.checkpoint, run.mnist, smk.output.embeddings, run.embed)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
