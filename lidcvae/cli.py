"""Glue shared by the per-stage scripts in ``pipelines/``: logging to the console and a rule's log file."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["setup_logging"]


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Log ``time level name: message`` to stderr and, when given, to ``log_file`` (a Snakemake ``log:``)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)
