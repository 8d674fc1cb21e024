#!/usr/bin/env python
"""Benchmark, one variant (rule benchmark_train): train a complete variant config on the cohort's train split,
selected on val (best.pt: the lowest validation loss).

Command line:
    python pipelines/benchmark_train.py --variant configs/benchmark/variants/default.yaml \\
        --manifest results/geometry/extract/manifest.parquet --run-dir results/geometry/benchmark/runs/default
A killed run continues from its own last.pt when that was made with the same settings and manifest.
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import run_script, setup_logging
from lidcvae.workflow.lock import folder_lock


def train_variant(variant_path, manifest, run_dir) -> Path:
    """Train the variant file's model and train sections (a complete config) on ``manifest``; returns best.pt."""
    from lidcvae.run_config import load_config
    from lidcvae.train import train

    return train(load_config(variant_path), run_dir, "same", manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", required=True, type=Path, help="a complete variant config (configs/benchmark/variants/)")
    parser.add_argument("--manifest", required=True, type=Path, help="the cohort's manifest (split column: train/val/test)")
    parser.add_argument("--run-dir", required=True, type=Path, help="output folder (checkpoints, metrics, tensorboard)")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    with folder_lock(args.run_dir, "training"):
        print(f"best checkpoint: {train_variant(args.variant, args.manifest, args.run_dir)}")
    return 0


def run_from_snakemake(smk) -> None:
    from lidcvae.io import publish

    best = train_variant(smk.input.variant, smk.input.manifest, Path(smk.params.run_dir))
    publish(best, smk.output.model)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals(), lock=lambda smk: (smk.params.run_dir, "training"))
