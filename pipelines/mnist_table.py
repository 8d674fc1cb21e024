#!/usr/bin/env python
"""MNIST model-size table: train each (hidden, latent) size of the MLP VAE with the same budget, then
score ELBO, importance-sampled log-likelihood (IWAE, k = mnist.table.importance_samples) and MSE.

Command line:
    python pipelines/mnist_table.py --config configs/mnist.yaml --out results/mnist/mnist_table
Writes OUT/table.csv, OUT/table.html (a fragment the report includes) and OUT/runs/h<H>_z<D>/.
"""


import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import config_from_args, run_script, setup_logging
from lidcvae.workflow.lock import folder_lock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, help="YAML config with dataset: mnist")
    parser.add_argument("--out", required=True, type=Path, help="output folder for the table and its runs")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides (YAML values)")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)

    from lidcvae.experiments.mnist_table import build_size_table

    run = config_from_args(parser, args.config, args.set)
    with folder_lock(args.out, "the MNIST size table"):  # it trains runs/h<H>_z<D>/ in place
        table = build_size_table(run, args.out, run.mnist.table.sizes)
    print(table.to_string(index=False))
    return 0


def run_from_snakemake(smk) -> None:
    """rules/mnist.smk: build the table under ``params.out_dir`` from the workflow config."""
    import torch

    from lidcvae.experiments.mnist_table import build_size_table
    from lidcvae.run_config import RunConfig

    torch.set_num_threads(smk.threads)
    run = RunConfig.from_mapping(smk.config, source="snakemake config")
    build_size_table(run, smk.params.out_dir, run.mnist.table.sizes)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals(), lock=lambda smk: (smk.params.out_dir, "the MNIST size table"))
