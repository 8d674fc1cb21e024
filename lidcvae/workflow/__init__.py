"""Glue between the workflow and the library: what the stage scripts in ``pipelines/`` share
(argument parsing, logging, one entry for the shell and for Snakemake, user errors as one line)."""
