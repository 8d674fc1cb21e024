#!/usr/bin/env python
"""Evaluate a trained VAE: metrics.json (ELBO, IWAE, MSE/PSNR/SSIM, active units, dim(z) suggestion, probe),
figures/*.png and one self-contained report.html.

Command line:
    python pipelines/evaluate.py --checkpoint results/phantom/train/checkpoints/best.pt \\
        --embeddings results/phantom/embed/embeddings.parquet --run-dir results/phantom/train \\
        --out-dir results/phantom/evaluate --config configs/default.yaml --set evaluate.iwae_samples=100
"""


import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lidcvae.cli import config_from_args, setup_logging  # noqa: E402



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="trained checkpoint")
    parser.add_argument("--embeddings", required=True, type=Path, help="table from embed_latents.py")
    parser.add_argument("--run-dir", required=True, type=Path, help="training folder holding metrics.csv")
    parser.add_argument("--out-dir", required=True, type=Path, help="where metrics.json, figures/, report.html go")
    parser.add_argument("--config", type=Path, help="workflow config (default: built-in defaults)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides (YAML values)")
    parser.add_argument("--include-html", nargs="*", default=[], type=Path, help="HTML fragments to add to the report")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)

    from lidcvae.evaluate import evaluate_run

    config = config_from_args(parser, args.config, args.set)
    metrics = evaluate_run(args.checkpoint, args.embeddings, args.run_dir, args.out_dir, config, args.include_html)
    print(f"{len(metrics['warnings'])} warning(s); report: {args.out_dir / 'report.html'}")
    return 0


def run_from_snakemake(smk) -> None:
    """rules/evaluate.smk."""
    setup_logging(smk.log[0])
    import torch

    from lidcvae.evaluate import evaluate_run

    torch.set_num_threads(smk.threads)
    config = dict(smk.config)
    if "manifest" in smk.input.keys():  # this run's cohort, whichever cohort the checkpoint was trained on
        config["train"] = {**config["train"], "manifest": str(smk.input.manifest)}
    evaluate_run(smk.input.checkpoint, smk.input.embeddings, smk.params.run_dir, smk.params.out_dir, config,
                 list(smk.input.get("extra_html", [])))


if __name__ == "__main__":
    if "snakemake" in globals():
        run_from_snakemake(snakemake)  # noqa: F821
    else:
        sys.exit(main())
