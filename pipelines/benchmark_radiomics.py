#!/usr/bin/env python
"""Benchmark, the radiomics row (rule benchmark_radiomics): pyradiomics shape features of every nodule's mask
(and first-order features of its HU on real CT; a rendered nodule's density is drawn, so shape alone).

Command line:
    python pipelines/benchmark_radiomics.py --manifest M --out features/radiomics.parquet [--first-order] [--workers N]
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import run_script, setup_logging


def write_radiomics(manifest_path, out, first_order: bool, workers: int) -> int:
    """Write the radiomics row; returns its feature count."""
    from lidcvae.benchmark.features import radiomics_features
    from lidcvae.benchmark.rows import write_feature_set
    from lidcvae.extract.manifest import read_manifest

    classes = ("shape", "firstorder") if first_order else ("shape",)
    table = radiomics_features(read_manifest(manifest_path), classes, workers)
    title = f"pyradiomics {' + '.join(classes)} ({table.shape[1] - 1} features, same masks)"
    write_feature_set(out, table, title, (), "baseline")
    return table.shape[1] - 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, type=Path, help="the cohort's manifest")
    parser.add_argument("--out", required=True, type=Path, help="output: radiomics.parquet (and its .json sidecar)")
    parser.add_argument("--first-order", action="store_true", help="also first-order features (real CT only)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    print(f"{write_radiomics(args.manifest, args.out, args.first_order, args.workers)} feature(s) → {args.out}")
    return 0


def run_from_snakemake(smk) -> None:
    write_radiomics(smk.input.manifest, smk.output.features, smk.params.first_order, smk.threads)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
