#!/usr/bin/env python
"""Stage 1, extract: LIDC-IDRI DICOM → 64³ 1 mm nodule patches (NIfTI), manifest.parquet, failures.parquet.

Command line (the whole cohort in one process):
    python pipelines/extract_patches.py --dicom-root DIR --out DIR [--patients ID ...] [--workers N] [--config FILE]
From Snakemake, the same library runs as three rules: index, one job per series, gather (see rules/extract.smk).
"""


import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lidcvae.cli import run_rule, setup_logging, user_errors  # noqa: E402
from lidcvae.config import load_config  # noqa: E402


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

    from lidcvae.extract import extract_cohort

    try:
        config = load_config(args.config, {"patients": args.patients} if args.patients else None)
        manifest, failures = extract_cohort(args.dicom_root, args.out, config["extract"], config["patients"], args.workers)
    except user_errors() as error:
        parser.exit(2, f"error: {error}\n")
    print(f"{len(manifest)} nodule(s) → {args.out / 'manifest.parquet'}; {len(failures)} failure row(s) → {args.out / 'failures.parquet'}")
    return 0


def run_from_snakemake(smk) -> None:
    """Run one rule of rules/extract.smk: 'index', 'scan' or 'gather' (``params.step``)."""
    setup_logging(smk.log[0])
    run_rule(lambda: _run_step(smk))


def _run_step(smk) -> None:
    import pandas as pd

    from lidcvae.extract import ExtractSettings, extract_series_part, gather_manifest, index_dicom_tree
    from lidcvae.extract.cohort import scan_part_paths
    from lidcvae.io import write_parquet

    settings = ExtractSettings.from_dict(smk.config["extract"])
    if smk.params.step == "index":
        index, unreadable = index_dicom_tree(smk.params.dicom_root, threads=smk.threads)
        write_parquet(unreadable, smk.output.unreadable)
        write_parquet(index, smk.output.index)
    elif smk.params.step == "scan":
        uid = smk.wildcards.series
        files = pd.read_parquet(smk.input.index, filters=[("series_instance_uid", "==", uid)])  # this series' rows only
        extract_series_part(files, uid, Path(smk.params.out_dir), settings)
    else:
        out_dir = Path(smk.params.out_dir)
        parts = [scan_part_paths(out_dir, uid) for uid in smk.params.series]
        gather_manifest(parts, out_dir, settings, pd.read_parquet(smk.input.unreadable))


if __name__ == "__main__":
    if "snakemake" in globals():
        run_from_snakemake(snakemake)  # noqa: F821
    else:
        sys.exit(main())
