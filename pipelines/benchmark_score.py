#!/usr/bin/env python
"""Benchmark, last step (rule benchmark_table): every row's features → table.csv (long) and table.md.

Each row is ``<row>.parquet`` (``nodule_id`` + numeric features) with its ``<row>.json`` sidecar (title,
kind, skip): see lidcvae/benchmark/rows.py. Probes are fitted on train (scored on val) and on train + val
(scored once on test), with patient-bootstrap 95 % intervals and paired differences against the control
row and consensus diameter alone (added from the manifest when no ``consensus_diameter`` row is given).

Command line:
    python pipelines/benchmark_score.py --manifest extract/manifest.parquet \\
        --features benchmark/features/a.parquet ... --control untrained \\
        --table-md benchmark/table.md --table-csv benchmark/table.csv [--config FILE] [--set KEY=VALUE ...]
The config's ``benchmark`` section gives bootstrap_samples, inner_folds, seed and density_targets.
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import config_from_args, fail, run_script, setup_logging


def score(manifest, features, control, settings, table_md, table_csv) -> int:
    """Score the rows and write both tables (``settings``: the typed ``benchmark`` section); returns records."""
    from lidcvae.benchmark.rows import BenchmarkInputError
    from lidcvae.benchmark.score import score_files

    try:
        table = score_files(manifest, features, control, settings, table_md, table_csv)
    except BenchmarkInputError as error:  # a wrong input, said in one line naming it
        fail(error)
    return len(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, type=Path, help="the cohort manifest (splits, targets)")
    parser.add_argument("--features", nargs="+", required=True, type=Path, help="every row's <row>.parquet")
    parser.add_argument("--control", required=True, help="the control row's name (the untrained copy)")
    parser.add_argument("--table-md", required=True, type=Path, help="output: the markdown tables")
    parser.add_argument("--table-csv", required=True, type=Path, help="output: one line per (row, target)")
    parser.add_argument("--config", type=Path, help="YAML config; its 'benchmark' section is used")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    run = config_from_args(parser, args.config, args.set)
    count = score(args.manifest, args.features, args.control, run.benchmark, args.table_md, args.table_csv)
    print(f"{count} score(s) → {args.table_csv}, {args.table_md}")
    return 0


def run_from_snakemake(smk) -> None:
    from lidcvae.benchmark.settings import BenchmarkConfig

    settings = BenchmarkConfig.from_mapping(smk.config.get("benchmark"), source="snakemake config")
    score(smk.input.manifest, list(smk.input.features), smk.params.control, settings, smk.output.table_md,
          smk.output.table_csv)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
