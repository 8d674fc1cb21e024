#!/usr/bin/env python
"""Evaluate a trained VAE: metrics.json (ELBO, IWAE, MSE/PSNR/SSIM, active units, dim(z) suggestion, probe),
figures/*.png, the TensorBoard projector and one self-contained report.html that opens on a headline.

Command line:
    python pipelines/evaluate.py --checkpoint results/phantom/train/checkpoints/best.pt \\
        --embeddings results/phantom/embed/embeddings.parquet --history results/phantom/train/metrics.csv \\
        --manifest results/phantom/extract/manifest.parquet \\
        --out-dir results/phantom/evaluate --config configs/demo.yaml --set evaluate.iwae_samples=100
"""


import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import config_from_args, fail, run_script, setup_logging
from lidcvae.workflow.lock import folder_lock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="trained checkpoint")
    parser.add_argument("--embeddings", required=True, type=Path, help="table from embed_latents.py")
    parser.add_argument("--history", type=Path, help="training history metrics.csv (loss curves; none drawn without it)")
    parser.add_argument("--manifest", type=Path, help="extraction manifest whose patches are evaluated (dataset lidc)")
    parser.add_argument("--out-dir", required=True, type=Path, help="where metrics.json, figures/, report.html go")
    parser.add_argument("--config", type=Path, help="workflow config (default: built-in defaults)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides (YAML values)")
    parser.add_argument("--include-html", nargs="*", default=[], type=Path, help="HTML fragments to add to the report")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)

    run = config_from_args(parser, args.config, args.set)
    if run.dataset == "lidc" and args.manifest is None:
        fail("--manifest is required for dataset lidc")
    with folder_lock(args.out_dir, "evaluation"):  # one writer of figures/ and report.html
        metrics = evaluate(run, args.checkpoint, args.embeddings, args.history, args.out_dir,
                           args.manifest if run.dataset == "lidc" else None, args.include_html)
    print(f"{len(metrics['warnings'])} warning(s); report: {args.out_dir / 'report.html'}")
    return 0


def evaluate(run, checkpoint: str | Path, embeddings: str | Path, history: str | Path | None, out_dir: str | Path,
             manifest: str | Path | None, extra_html: list[str | Path]) -> dict:
    """Load the checkpoint, read what its model is evaluated on (``run``: the typed ``RunConfig``; ``manifest``
    for CT, None for MNIST), evaluate; the metrics (see ``evaluate_run``)."""
    from lidcvae.evaluate import evaluate_run, read_data
    from lidcvae.evaluate.headline import RunInfo
    from lidcvae.train.checkpoint import load_model

    info = RunInfo.for_run(run)
    trained = load_model(checkpoint, map_location="cpu")
    data = read_data(trained.input, embeddings, history, manifest=manifest, mnist=run.mnist if run.dataset == "mnist" else None,
                     extra_html=extra_html, trained_here=info.trained_here)
    return evaluate_run(trained, data, out_dir, run.evaluate, info)


def run_from_snakemake(smk) -> None:
    """rules/evaluate.smk."""
    import torch

    from lidcvae.run_config import RunConfig

    torch.set_num_threads(smk.threads)
    run = RunConfig.from_mapping(smk.config, source="snakemake config")
    evaluate(run, smk.input.checkpoint, smk.input.embeddings, smk.params.history, smk.params.out_dir, smk.input.get("manifest"),
             list(smk.input.get("extra_html", [])))
    if "projector" in smk.output.keys():  # declared, but not written when no embedding's image was found
        Path(smk.output.projector).mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals(), lock=lambda smk: (smk.params.out_dir, "evaluation"))
