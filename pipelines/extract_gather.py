#!/usr/bin/env python
"""Extract, step 3 of 3 (rule extract_gather): every series' part tables → manifest.parquet, failures.parquet.

Command line (the part tables in the same series order on both lists):
    python pipelines/extract_gather.py --nodules A.nodules.parquet ... --failures A.failures.parquet ... \\
        --unreadable unreadable.parquet --manifest manifest.parquet --failures-out failures.parquet [--config FILE] \
        [--row-failures candidate_failures.parquet]
The coordinates route adds its table's unusable rows (--row-failures). (extract_patches.py and
extract_coordinates.py run all three steps in one process.)
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import config_from_args, run_script, setup_logging


def gather(nodule_parts, failure_parts, unreadable_path, manifest_path, failures_path, settings,
           row_failures_path=None, split_rule=None) -> int:
    """Concatenate the parts and assign splits (``settings``: the typed ``extract`` section); returns nodules.

    ``row_failures_path``: failure rows found before any series was read (a coordinates table's, the render
    route's missing patients), or None. ``split_rule``: the render route's split, else ``extract.split``'s.
    """
    import pandas as pd

    from lidcvae.extract import gather_manifest

    if len(nodule_parts) != len(failure_parts):
        raise ValueError(f"{len(nodule_parts)} nodule part tables but {len(failure_parts)} failure part tables")
    parts = list(zip(map(Path, nodule_parts), map(Path, failure_parts)))
    row_failures = pd.read_parquet(row_failures_path) if row_failures_path else None
    manifest, _ = gather_manifest(parts, manifest_path, failures_path, settings, pd.read_parquet(unreadable_path), row_failures,
                                  split_rule)
    return len(manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodules", nargs="*", default=[], type=Path, help="every series' nodules part table")
    parser.add_argument("--failures", nargs="*", default=[], type=Path, help="every series' failures part table")
    parser.add_argument("--unreadable", required=True, type=Path, help="the unreadable-files table of extract_index.py")
    parser.add_argument("--manifest", required=True, type=Path, help="output: one row per nodule")
    parser.add_argument("--failures-out", required=True, type=Path, help="output: one row per failure")
    parser.add_argument("--row-failures", type=Path, help="a coordinates table's unusable rows (extract_coordinates_index.py)")
    parser.add_argument("--config", type=Path, help="YAML config; its 'extract' section (the split) is used")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    run = config_from_args(parser, args.config, [])
    count = gather(args.nodules, args.failures, args.unreadable, args.manifest, args.failures_out, run.extract,
                   args.row_failures)
    print(f"{count} nodule(s) → {args.manifest}")
    return 0


def run_from_snakemake(smk) -> None:
    from lidcvae.extract import ExtractSettings

    settings = ExtractSettings.from_mapping(smk.config["extract"], source="snakemake config")
    split_rule = None
    if smk.params.route == "render":
        from lidcvae.render.cohort import render_split
        from lidcvae.render.settings import RenderConfig

        split_rule = render_split(RenderConfig.from_mapping(smk.params.render, source="snakemake config"))
    gather(smk.input.nodules, smk.input.failures, smk.input.unreadable, smk.output.manifest, smk.output.failures, settings,
           smk.input.get("row_failures"), split_rule)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
