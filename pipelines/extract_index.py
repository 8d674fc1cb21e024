#!/usr/bin/env python
"""Extract, step 1 of 3 (rule extract_index): read every DICOM header under a DICOM root once.

Command line:
    python pipelines/extract_index.py --dicom-root DIR --index dicom_index.parquet --unreadable unreadable.parquet
(extract_patches.py runs all three steps in one process.)
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import run_script, setup_logging


def index_to(dicom_root, index_path, unreadable_path, threads: int) -> int:
    """Index ``dicom_root``; write the readable files' index and the unreadable files' table. Returns files indexed."""
    from lidcvae.extract import index_dicom_tree
    from lidcvae.io import write_parquet

    index, unreadable = index_dicom_tree(dicom_root, threads=threads)
    write_parquet(unreadable, unreadable_path)
    write_parquet(index, index_path)
    return len(index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dicom-root", required=True, type=Path, help="LIDC-IDRI DICOM root (any folder layout)")
    parser.add_argument("--index", required=True, type=Path, help="output: one row per readable DICOM file")
    parser.add_argument("--unreadable", required=True, type=Path, help="output: files whose header could not be read")
    parser.add_argument("--threads", type=int, default=4, help="header-reading threads (I/O bound; default 4)")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    print(f"{index_to(args.dicom_root, args.index, args.unreadable, args.threads)} file(s) indexed → {args.index}")
    return 0


def run_from_snakemake(smk) -> None:
    index_to(smk.params.dicom_root, smk.output.index, smk.output.unreadable, smk.threads)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
