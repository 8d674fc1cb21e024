#!/usr/bin/env python
"""Extract, step 2 of 3 (rule extract_scan, one job per CT series): nodule patches and two part tables.

Command line:
    python pipelines/extract_scan.py --index dicom_index.parquet --series UID --out-dir DIR \\
        --nodules UID.nodules.parquet --failures UID.failures.parquet [--config FILE]
Patches go to DIR/patches/<PatientID>/. (extract_patches.py runs all three steps in one process.)
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import config_from_args, run_script, setup_logging


def extract_one(index_path, series_uid: str, out_dir, nodules_path, failures_path, settings) -> None:
    """Read this series' index rows only and extract it (``settings``: the typed ``extract`` section)."""
    import pandas as pd

    from lidcvae.extract import extract_series_part

    files = pd.read_parquet(index_path, filters=[("series_instance_uid", "==", series_uid)])
    extract_series_part(files, out_dir, nodules_path, failures_path, settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, type=Path, help="the index written by extract_index.py")
    parser.add_argument("--series", required=True, help="SeriesInstanceUID of the CT series")
    parser.add_argument("--out-dir", required=True, type=Path, help="extraction folder (patches/ go under it)")
    parser.add_argument("--nodules", required=True, type=Path, help="output: this series' manifest rows")
    parser.add_argument("--failures", required=True, type=Path, help="output: this series' failure rows")
    parser.add_argument("--config", type=Path, help="YAML config; its 'extract' section is used")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    run = config_from_args(parser, args.config, [])
    extract_one(args.index, args.series, args.out_dir, args.nodules, args.failures, run.extract)
    return 0


def run_from_snakemake(smk) -> None:
    from lidcvae.extract import ExtractSettings

    settings = ExtractSettings.from_mapping(smk.config["extract"], source="snakemake config")
    extract_one(smk.input.index, smk.wildcards.series, smk.params.out_dir, smk.output.nodules, smk.output.failures, settings)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
