"""Glue shared by the per-stage scripts in ``pipelines/``: one entry for the shell and for Snakemake,
logging to the console and a rule's log file, and the ``--config``/``--set`` loader.

Every script ends with ``run_script(main, run_from_snakemake, globals())``: under a rule's ``script:``
directive Snakemake injects ``snakemake`` into the script's globals and the rule's function runs with
logging to the rule's log; from a shell ``main()`` parses the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from lidcvae.run_config import RunConfig

__all__ = ["run_script", "setup_logging", "config_from_args", "user_errors", "run_rule"]


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Log ``time level name: message`` to stderr and, when given, to ``log_file`` (a Snakemake ``log:``)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)


def run_script(main: Callable[[], int | None], run_from_snakemake: Callable[[Any], None] | None,
               namespace: dict[str, Any]) -> None:
    """Run a pipelines/ script: ``run_from_snakemake(snakemake)`` with the rule's log when Snakemake runs it
    (``snakemake`` in ``namespace``; a user error is one line in that log, see ``run_rule``), else ``main()``
    with its return value as the exit status.
    ``run_from_snakemake`` is None for a command-line-only script."""
    smk = namespace.get("snakemake")
    if smk is None:
        sys.exit(main())
    if run_from_snakemake is None:
        sys.exit(f"{namespace.get('__file__')} is a command-line script; no rule runs it")
    setup_logging(smk.log[0] if smk.log else None)
    run_rule(lambda: run_from_snakemake(smk))


def config_from_args(parser: argparse.ArgumentParser, config_path: Path | None, set_items: list[str],
                     overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load ``--config`` with ``--set KEY=VALUE`` overrides (values parsed as YAML) and ``overrides``, typed.

    A bad file, key or value ends the program through ``parser`` with the message naming it (exit 2).
    """
    from lidcvae.config import ConfigError, yaml_load
    from lidcvae.run_config import load_config

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
    from lidcvae.data.lidc import NoNodulesError
    from lidcvae.extract import DicomRootError, GeometryMismatchError
    from lidcvae.io import StorageError, UnsafePathError
    from lidcvae.train.checkpoint import CheckpointError
    from lidcvae.train.step import NonFiniteError

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
