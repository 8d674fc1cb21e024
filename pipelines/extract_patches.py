#!/usr/bin/env python
"""Stage 1, extract: LIDC-IDRI DICOM → 64³ 1 mm nodule patches (NIfTI), manifest.parquet, failures.parquet.

Command line (the whole cohort in one process):
    python pipelines/extract_patches.py --dicom-root DIR --out DIR [--patients ID ...] [--workers N] [--config FILE]
From Snakemake, the same library runs as three rules with a script each (extract_index.py, extract_scan.py,
extract_gather.py): index, one job per series, gather (see rules/extract.smk).
"""


import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.run_config import load_config
from lidcvae.workflow.cli import run_rule, run_script, setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dicom-root", required=True, type=Path, help="LIDC-IDRI DICOM root (any folder layout)")
    parser.add_argument("--out", required=True, type=Path, help="output folder for patches and tables")
    parser.add_argument("--patients", nargs="+", metavar="ID", help="only these patient IDs (LIDC-IDRI-dddd)")
    parser.add_argument("--workers", type=int, help="scans processed in parallel (default: config extract.workers)")
    parser.add_argument("--config", type=Path, help="YAML config; its 'extract' section is used")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)

    # main() stops with one line itself (not only through run_script): tests call it directly.
    return run_rule(lambda: _extract(args))


def _extract(args: argparse.Namespace) -> int:
    from lidcvae.extract import extract_cohort

    run = load_config(args.config, {"patients": args.patients} if args.patients else None)
    manifest, failures = extract_cohort(args.dicom_root, args.out, run.extract, run.patients, args.workers)
    print(f"{len(manifest)} nodule(s) → {args.out / 'manifest.parquet'}; {len(failures)} failure row(s) → {args.out / 'failures.parquet'}")
    return 0


if __name__ == "__main__":
    run_script(main, None, globals())
