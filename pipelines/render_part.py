#!/usr/bin/env python
"""Extract, render route, step 2 of 3 (rule extract_scan, one job per part of the render index): render each
scan's nodules from its readers' outlines; patches and two part tables.

Command line:
    python pipelines/render_part.py --index render_index.parquet --part render-0000 --out-dir DIR \\
        --nodules P.nodules.parquet --failures P.failures.parquet [--config FILE]
Patches go to DIR/patches/<PatientID>/; each scan's pylidc clusters are cached in DIR/annotations/.
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import config_from_args, run_script, setup_logging


def render_one(index_path, part: str, out_dir, nodules_path, failures_path, extract, render, progress: bool) -> int:
    """Render the scans of one part (``extract``, ``render``: the typed sections); returns nodules rendered."""
    import pandas as pd

    from lidcvae.io import write_parquet
    from lidcvae.render.cohort import render_part

    index = pd.read_parquet(index_path, filters=[("part", "==", part)])
    nodules, failures = render_part(index, out_dir, Path(out_dir) / "annotations", extract, render, progress)
    write_parquet(failures, failures_path)
    write_parquet(nodules, nodules_path)
    return len(nodules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, type=Path, help="the index written by render_index.py")
    parser.add_argument("--part", required=True, help="the part to render (the index's 'part' column)")
    parser.add_argument("--out-dir", required=True, type=Path, help="extraction folder (patches/ go under it)")
    parser.add_argument("--nodules", required=True, type=Path, help="output: this part's manifest rows")
    parser.add_argument("--failures", required=True, type=Path, help="output: this part's failure rows")
    parser.add_argument("--config", type=Path, help="YAML config; its 'extract' and 'render' sections are used")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    run = config_from_args(parser, args.config, [])
    count = render_one(args.index, args.part, args.out_dir, args.nodules, args.failures, run.extract, run.render, True)
    print(f"{count} nodule(s) → {args.nodules}")
    return 0


def run_from_snakemake(smk) -> None:
    from lidcvae.extract import ExtractSettings
    from lidcvae.render.settings import RenderConfig

    extract = ExtractSettings.from_mapping(smk.config["extract"], source="snakemake config")
    render = RenderConfig.from_mapping(smk.config["render"], source="snakemake config")
    render_one(smk.input.index, smk.wildcards.series, smk.params.out_dir, smk.output.nodules, smk.output.failures,
               extract, render, False)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
