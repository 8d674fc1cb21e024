#!/usr/bin/env python
"""Extract, coordinates route, step 1 of 3 (rule extract_index with ``candidates`` set): read the table and
index every image under images_root once.

Command line:
    python pipelines/extract_coordinates_index.py --table annotations.csv --images-root DIR --index image_index.parquet \\
        --candidates candidates.parquet --row-failures candidate_failures.parquet --unreadable unreadable.parquet
(extract_coordinates.py runs all three steps in one process.)
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import run_script, setup_logging


def index_to(table_path, images_root, index_path, candidates_path, row_failures_path, unreadable_path, threads: int) -> int:
    """Validate the table, index its CT (each row's image_path, else ``images_root``); write the four tables.
    Returns the usable table rows.

    Row failures hold the table's unusable rows and those whose CT is missing.
    """
    import pandas as pd

    from lidcvae.extract.candidates import read_candidates
    from lidcvae.extract.coordinates import index_coordinates
    from lidcvae.io import write_parquet

    candidates, row_failures = read_candidates(table_path)
    candidates, index, unreadable, unknown = index_coordinates(candidates, images_root, Path(table_path).name, threads)
    write_parquet(pd.concat([f for f in (row_failures, unknown) if len(f)] or [row_failures], ignore_index=True),
                  row_failures_path)
    write_parquet(unreadable, unreadable_path)
    write_parquet(candidates, candidates_path)
    write_parquet(index, index_path)
    return len(candidates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, type=Path, help="seriesuid,coordX,coordY,coordZ[,diameter_mm,...]")
    parser.add_argument("--images-root", type=Path, help="folder of DICOM series and/or volume files (not with an image_path table)")
    parser.add_argument("--index", required=True, type=Path, help="output: one row per readable image file")
    parser.add_argument("--candidates", required=True, type=Path, help="output: the table's usable rows")
    parser.add_argument("--row-failures", required=True, type=Path, help="output: unusable rows, unknown series")
    parser.add_argument("--unreadable", required=True, type=Path, help="output: files whose header could not be read")
    parser.add_argument("--threads", type=int, default=4, help="header-reading threads (I/O bound; default 4)")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    rows = index_to(args.table, args.images_root, args.index, args.candidates, args.row_failures, args.unreadable, args.threads)
    print(f"{rows} usable row(s) → {args.candidates}")
    return 0


def run_from_snakemake(smk) -> None:
    index_to(smk.input.table, smk.params.images_root, smk.output.index, smk.output.candidates, smk.output.row_failures,
             smk.output.unreadable, smk.threads)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
