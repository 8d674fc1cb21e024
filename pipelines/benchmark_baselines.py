#!/usr/bin/env python
"""Benchmark, the no-network rows (rule benchmark_baselines): consensus diameter alone, raw-voxel PCA (fitted on
train + val) and, on the render route, the readers' own annotations (their mean diameter, + shape ratings,
+ density ratings: the ceilings of what the outlines and ratings hold, with no image).

Command line:
    python pipelines/benchmark_baselines.py --manifest M --out-dir features/ [--config FILE]
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import config_from_args, run_script, setup_logging


def write_baselines(manifest_path, out_dir, raw_pca, hu_window, fill_hu) -> list[Path]:
    """Write every no-network row into ``out_dir``; ``raw_pca``: the typed ``benchmark.raw_pca`` section."""
    from lidcvae.benchmark.features import raw_pca_features
    from lidcvae.benchmark.rows import annotation_feature_sets, write_feature_set
    from lidcvae.extract.manifest import read_manifest

    out_dir = Path(out_dir)
    written = [write_feature_set(out_dir / f"{name}.parquet", row["table"], row["title"], row["skip"], row["kind"])
               for name, row in annotation_feature_sets(read_manifest(manifest_path)).items()]
    table = raw_pca_features(manifest_path, raw_pca.crop, raw_pca.components, hu_window, fill_hu)
    title = f"raw-voxel PCA ({table.shape[1] - 1} components of the central {raw_pca.crop}³, fitted on train + val)"
    written.append(write_feature_set(out_dir / "raw-pca.parquet", table, title, (), "baseline"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, type=Path, help="the cohort's manifest")
    parser.add_argument("--out-dir", required=True, type=Path, help="output folder of the feature tables")
    parser.add_argument("--config", type=Path, help="YAML config (benchmark.raw_pca, model.hu_window)")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    run = config_from_args(parser, args.config, [])
    for path in write_baselines(args.manifest, args.out_dir, run.benchmark.raw_pca, run.model.hu_window,
                                run.model.context.fill_hu):
        print(path)
    return 0


def run_from_snakemake(smk) -> None:
    from lidcvae.benchmark.settings import RawPcaConfig

    write_baselines(smk.input.manifest, Path(smk.output.diameter).parent, RawPcaConfig.from_mapping(smk.params.raw_pca),
                    smk.params.hu_window, smk.params.fill_hu)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
