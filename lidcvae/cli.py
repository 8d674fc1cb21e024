"""Glue shared by the per-stage scripts in ``pipelines/``: logging to the console and a rule's log file."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["setup_logging", "config_from_args"]


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Log ``time level name: message`` to stderr and, when given, to ``log_file`` (a Snakemake ``log:``)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)


def config_from_args(parser: argparse.ArgumentParser, config_path: Path | None, set_items: list[str],
                     overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load ``--config`` with ``--set KEY=VALUE`` overrides (values parsed as YAML) and ``overrides``.

    A bad file, key or value ends the program through ``parser`` with the message naming it (exit 2).
    """
    from lidcvae.config import ConfigError, load_config

    try:
        parsed = {}
        for item in set_items:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set {item!r}: expected KEY=VALUE")
            parsed[key] = yaml.safe_load(value)
        return load_config(config_path, {**parsed, **(overrides or {})})
    except (ConfigError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
