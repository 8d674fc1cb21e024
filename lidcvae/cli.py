"""Glue shared by the per-stage scripts in ``pipelines/``: logging to the console and a rule's log file."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

__all__ = ["setup_logging", "config_from_args", "user_errors", "run_rule"]


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
    from lidcvae.config import ConfigError, load_config, yaml_load

    try:
        parsed = {}
        for item in set_items:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set {item!r}: expected KEY=VALUE")
            parsed[key] = yaml_load(value)
        return load_config(config_path, {**parsed, **(overrides or {})})
    except (ConfigError, ValueError, yaml.YAMLError) as error:
        parser.exit(2, f"error: {error}\n")


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message tells the user what to fix: shown as one line, never as a traceback."""
    from lidcvae.config import ConfigError
    from lidcvae.extract import DicomRootError, GeometryMismatchError
    from lidcvae.io import StorageError, UnsafePathError
    from lidcvae.train.checkpoint import CheckpointError
    from lidcvae.train.step import NonFiniteError
    from lidcvae.data.lidc import NoNodulesError

    return (ConfigError, DicomRootError, GeometryMismatchError, StorageError, UnsafePathError, CheckpointError,
            NonFiniteError, NoNodulesError, FileNotFoundError)


def run_rule(step: Callable[[], Any], exit_code: int = 1) -> Any:
    """Run a rule's work; a user error becomes one ``ERROR`` line in the rule's log and exit ``exit_code``.

    Without this Snakemake shows a traceback and the rule's log stays empty.
    """
    try:
        return step()
    except user_errors() as error:
        logging.getLogger("lidcvae").error("%s", error)
        sys.exit(exit_code)
