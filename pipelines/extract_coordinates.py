#!/usr/bin/env python
"""Stage 1, coordinates route: a table of points (LUNA16's annotations.csv columns) + CT found by series UID
→ 64³ 1 mm patches (NIfTI), manifest.parquet, failures.parquet, as the LIDC route writes them.

Command line (the whole table in one process):
    python pipelines/extract_coordinates.py --candidates annotations.csv --images-root /data/LUNA16 --out DIR [--config FILE]
From Snakemake (`candidates` set in the config), the same library runs as three rules: index, one job per
series, gather (see rules/extract_coordinates.smk).
"""


import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lidcvae.cli import setup_logging  # noqa: E402
from lidcvae.config import ConfigError, load_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", required=True, type=Path, help="table: seriesuid,coordX,coordY,coordZ[,diameter_mm,...]")
    parser.add_argument("--images-root", required=True, type=Path, help="folder of DICOM series and/or <seriesuid>.mhd/.nii/.nii.gz/.nrrd")
    parser.add_argument("--out", required=True, type=Path, help="output folder for patches and tables")
    parser.add_argument("--config", type=Path, help="YAML config; its 'extract' section is used")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)

    from lidcvae.extract import DicomRootError
    from lidcvae.extract.candidates import CandidatesError
    from lidcvae.extract.coordinates import extract_coordinates_cohort

    try:
        config = load_config(args.config)
        manifest, failures = extract_coordinates_cohort(args.candidates, args.images_root, args.out, config["extract"])
    except (ConfigError, DicomRootError, CandidatesError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"{len(manifest)} nodule(s) → {args.out / 'manifest.parquet'}; {len(failures)} failure row(s) → {args.out / 'failures.parquet'}")
    return 0


def run_from_snakemake(smk) -> None:
    """Run one rule of rules/extract_coordinates.smk: 'index', 'scan' or 'gather' (``params.step``)."""
    setup_logging(smk.log[0])
    import pandas as pd

    from lidcvae.extract import ExtractSettings, gather_manifest
    from lidcvae.extract.candidates import read_candidates
    from lidcvae.extract.cohort import scan_part_paths
    from lidcvae.extract.coordinates import extract_coordinates_part, unknown_series_failures
    from lidcvae.extract.volumes import index_images
    from lidcvae.io import write_parquet

    settings = ExtractSettings.from_dict(smk.config["extract"])
    table_name = smk.params.table_name
    if smk.params.step == "index":
        candidates, row_failures = read_candidates(smk.input.table)
        index, unreadable = index_images(smk.params.images_root, threads=smk.threads)
        unknown = unknown_series_failures(candidates, index, smk.params.images_root, table_name)
        write_parquet(pd.concat([f for f in (row_failures, unknown) if len(f)] or [row_failures], ignore_index=True),
                      smk.output.row_failures)
        write_parquet(unreadable, smk.output.unreadable)
        write_parquet(candidates, smk.output.candidates)
        write_parquet(index, smk.output.index)
    elif smk.params.step == "scan":
        uid = smk.wildcards.series
        files = pd.read_parquet(smk.input.index, filters=[("series_instance_uid", "==", uid)])  # this series' rows only
        rows = pd.read_parquet(smk.input.candidates, filters=[("series_instance_uid", "==", uid)])
        extract_coordinates_part(files, rows, uid, Path(smk.params.out_dir), settings, table_name)
    else:
        out_dir = Path(smk.params.out_dir)
        parts = [scan_part_paths(out_dir, uid) for uid in smk.params.series]
        gather_manifest(parts, out_dir, settings, pd.read_parquet(smk.input.unreadable), pd.read_parquet(smk.input.row_failures))


if __name__ == "__main__":
    if "snakemake" in globals():
        run_from_snakemake(snakemake)  # noqa: F821
    else:
        sys.exit(main())
