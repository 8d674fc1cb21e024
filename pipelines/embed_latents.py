#!/usr/bin/env python
"""Embed nodules with a trained VAE: posterior means z000… and log-variances logvar000…, one row per nodule.

Command line (any manifest in the extract format, including nodules the model never saw):
    python pipelines/embed_latents.py --checkpoint results/phantom/train/checkpoints/best.pt \\
        --manifest results/phantom/extract/manifest.parquet --out embeddings.parquet
Without --manifest, every split of the config's dataset is embedded (e.g. --config configs/mnist.yaml).
"""


import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lidcvae.cli import config_from_args, setup_logging  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="trained checkpoint (best.pt or last.pt)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", type=Path, help="nodule manifest (extract/manifest.parquet format)")
    source.add_argument("--config", type=Path, help="workflow config whose dataset splits are embedded instead")
    parser.add_argument("--out", required=True, type=Path, help="output Parquet table")
    parser.add_argument("--batch-size", type=int, default=16, help="patches encoded together (default 16)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)

    from lidcvae.embed import embed_dataset, embed_manifest
    from lidcvae.train.checkpoint import CheckpointMismatch

    if args.manifest:
        try:
            table = embed_manifest(args.checkpoint, args.manifest, args.out, args.batch_size, args.device)
        except (CheckpointMismatch, FileNotFoundError) as error:
            parser.exit(2, f"error: {error}\n")
    else:
        table = embed_dataset(args.checkpoint, config_from_args(parser, args.config, []), args.out, args.batch_size, args.device)
    print(f"{len(table)} rows → {args.out}")
    return 0


def run_from_snakemake(smk) -> None:
    """rules/embed.smk: the manifest when the rule has one, else the workflow config's dataset."""
    setup_logging(smk.log[0])
    import torch

    from lidcvae.embed import embed_dataset, embed_manifest

    torch.set_num_threads(smk.threads)
    if "manifest" in smk.input.keys():
        embed_manifest(smk.input.checkpoint, smk.input.manifest, smk.output.embeddings, smk.params.batch_size, smk.params.device)
    else:
        embed_dataset(smk.input.checkpoint, dict(smk.config), smk.output.embeddings, smk.params.batch_size, smk.params.device)


if __name__ == "__main__":
    if "snakemake" in globals():
        run_from_snakemake(snakemake)  # noqa: F821
    else:
        sys.exit(main())
