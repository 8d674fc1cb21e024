#!/usr/bin/env python
"""Stage 1, coordinates route: a table of points (LUNA16's annotations.csv columns) + CT found by series UID
→ 64³ 1 mm patches (NIfTI), manifest.parquet, failures.parquet, as the LIDC route writes them.

Command line (the whole table in one process):
    python pipelines/extract_coordinates.py --candidates annotations.csv --images-root /data/LUNA16 --out DIR [--config FILE]
From Snakemake (`candidates` set in the config), the same library runs as three rules: index, one job per
series, gather (extract_coordinates_index.py, extract_coordinates_scan.py, extract_gather.py; see
rules/extract.smk with the coordinates route of rules/routes.smk).
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import config_from_args, run_script, setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", required=True, type=Path,
                        help="table: seriesuid|image_path,coordX,coordY,coordZ[,diameter_mm,...]")
    parser.add_argument("--images-root", type=Path, help="folder of DICOM series and/or <seriesuid>.mhd/.nii/.nii.gz/.nrrd "
                        "(not needed when the table has image_path)")
    parser.add_argument("--out", required=True, type=Path, help="output folder for patches and tables")
    parser.add_argument("--config", type=Path, help="YAML config; its 'extract' section is used")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)

    from lidcvae.extract.coordinates import extract_coordinates_cohort

    run = config_from_args(parser, args.config, [])
    manifest, failures = extract_coordinates_cohort(args.candidates, args.images_root, args.out, run.extract)
    print(f"{len(manifest)} nodule(s) → {args.out / 'manifest.parquet'}; {len(failures)} failure row(s) → {args.out / 'failures.parquet'}")
    return 0


if __name__ == "__main__":
    run_script(main, None, globals())
