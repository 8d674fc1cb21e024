"""Glue shared by the per-stage scripts in ``pipelines/``: one entry for the shell and for Snakemake,
logging to the console and a rule's log file, the ``--config``/``--set`` loader, and one way to stop.

Every script ends with ``run_script(main, run_from_snakemake, globals())``: under a rule's ``script:``
directive Snakemake injects ``snakemake`` into the script's globals and the rule's function runs with
logging to the rule's log; from a shell ``main()`` parses the command line. Either way an anticipated
error (config, data, storage, checkpoint, a held lock) stops the script with one line, ``error: <what,
naming the file or key>``, on stderr and as an ``ERROR`` record in the log file, and exit status 2
(3 for a NaN/Inf in training); an unexpected one keeps its traceback in the log file, with one line on
stderr pointing to it. A log file that cannot be written (full or read-only disk) is dropped, never
reported as a logging traceback: stderr alone carries the line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

if TYPE_CHECKING:
    from lidcvae.run_config import RunConfig

__all__ = ["run_script", "setup_logging", "config_from_args", "user_errors", "run_rule", "fail", "one_line"]

# Anticipated errors, by module and name: imported only when an error is being reported, so a script's
# start stays cheap, and a library that fails to import cannot hide the error being reported.
_USER_ERRORS = (
    ("lidcvae.config", "ConfigError"), ("lidcvae.io", "StorageError"), ("lidcvae.io", "UnsafePathError"),
    ("lidcvae.extract", "DicomRootError"), ("lidcvae.extract", "GeometryMismatchError"),
    ("lidcvae.extract.candidates", "CandidatesError"), ("lidcvae.data.lidc", "NoNodulesError"),
    ("lidcvae.data.mnist", "IdxFormatError"), ("lidcvae.data.mnist_download", "MnistDownloadError"),
    ("lidcvae.render.cohort", "EmptySelectionError"), ("lidcvae.train.checkpoint", "CheckpointError"),
    ("lidcvae.train.checkpoint", "CheckpointMismatch"), ("lidcvae.train.step", "NonFiniteError"),
    ("lidcvae.workflow.lock", "FolderLockedError"), ("pandas.errors", "EmptyDataError"),
)
NON_FINITE_EXIT = 3  # training diverged: not a mistake in the input, so told apart from 2

_log_file: dict[str, Any] = {"path": None, "failed": None}


class _StderrFilter(logging.Filter):
    """Keeps records marked ``stderr=False`` (the error line, written to stderr by ``fail``) off the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "stderr", True)


class _LogFileHandler(logging.FileHandler):
    """A log file that removes itself on its first failed write (disk full, read-only) instead of
    printing logging's own traceback; the failure is noted once, on the error line or at exit."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        error = sys.exc_info()[1]
        _log_file["failed"] = f"{type(error).__name__}: {error}" if error else "write failed"
        logging.getLogger().removeHandler(self)
        try:
            self.close()
        except OSError:
            pass


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Log ``time level name: message`` to stderr and, when given, to ``log_file`` (a Snakemake ``log:``)."""
    stderr = logging.StreamHandler(sys.stderr)
    stderr.addFilter(_StderrFilter())
    handlers: list[logging.Handler] = [stderr]
    _log_file.update(path=str(log_file) if log_file else None, failed=None)
    if log_file:
        try:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            handlers.append(_LogFileHandler(log_file, mode="w"))
        except OSError as error:
            _log_file["failed"] = f"{type(error).__name__}: {error}"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)


def one_line(text: str) -> str:
    """A multi-line message (a config error lists its keys one per line) as one line."""
    parts = [line.strip() for line in str(text).splitlines() if line.strip()]
    if len(parts) <= 1:
        return "".join(parts)
    return f"{parts[0].rstrip(':')}: {'; '.join(parts[1:])}"


def _log_note() -> str:
    failed = _log_file["failed"]
    return f" (the log {_log_file['path']} could not be written: {one_line(failed)})" if failed else ""


def _stderr_line(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass  # nowhere left to say it; the exit status still does


def fail(error: BaseException | str, code: int = 2) -> NoReturn:
    """Stop with one line: ``error: <message>`` on stderr, the message as an ``ERROR`` record in the log."""
    message = one_line(_storage_message(error) if isinstance(error, BaseException) else error)
    if _log_file["path"] and not _log_file["failed"]:
        logging.getLogger("lidcvae").error("%s", message, extra={"stderr": False})
    _stderr_line(f"error: {message}{_log_note()}")
    sys.exit(code)


def _storage_message(error: BaseException) -> str:
    """A full or read-only disk, a denied permission ... as ``StorageError`` says them, naming the path."""
    from lidcvae.io import StorageError, raise_if_environment

    if isinstance(error, OSError) and not isinstance(error, StorageError):
        try:
            raise_if_environment(error, error.filename, "writing" if error.filename else "")
        except StorageError as storage:
            return str(storage)
    return str(error)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message tells the user what to fix: shown as one line, never as a traceback."""
    found: list[type[BaseException]] = [FileNotFoundError, UnicodeDecodeError]
    for module, name in _USER_ERRORS:
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _is_environment(error: BaseException) -> bool:
    from lidcvae.io import environment_errno

    return isinstance(error, OSError) and environment_errno(error) is not None


def run_rule(step: Callable[[], Any], exit_code: int = 2) -> Any:
    """Run a script's work; an anticipated error stops it with one line (``fail``), exit ``exit_code``.

    An unexpected error keeps its traceback in the log file (on stderr when there is none) and says
    where it is in one line on stderr; exit 1.
    """
    try:
        return step()
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - every error leaves as one line or a traceback in the log
        known = user_errors()
        if isinstance(error, known) or _is_environment(error):
            non_finite = type(error).__name__ == "NonFiniteError"
            fail(error, NON_FINITE_EXIT if non_finite else exit_code)
        _unexpected(error)


def _unexpected(error: BaseException) -> NoReturn:
    summary = one_line(f"{type(error).__name__}: {error}")
    if _log_file["path"] and not _log_file["failed"]:
        logging.getLogger("lidcvae").error("unexpected error", exc_info=error, extra={"stderr": False})
        if not _log_file["failed"]:
            _stderr_line(f"error: unexpected {summary}; the traceback is in {_log_file['path']}")
            sys.exit(1)
    traceback.print_exception(error, file=sys.stderr)
    _stderr_line(f"error: unexpected {summary}{_log_note()}")
    sys.exit(1)


def run_script(main: Callable[[], int | None], run_from_snakemake: Callable[[Any], None] | None,
               namespace: dict[str, Any], lock: Callable[[Any], tuple[str, str]] | None = None) -> None:
    """Run a pipelines/ script: ``run_from_snakemake(snakemake)`` with the rule's log when Snakemake runs it
    (``snakemake`` in ``namespace``), else ``main()`` with its return value as the exit status; either
    through ``run_rule``, so an error is one line. ``run_from_snakemake`` is None for a command-line-only script.

    Args:
        lock: for a rule that writes shared state, ``snakemake -> (folder, what)``: the folder's lock
            (``lidcvae.workflow.lock``) is taken before the rule's log is opened, so a second run refused
            it leaves the holder's log as it is (its line goes to stderr and the end of that log).
    """
    smk = namespace.get("snakemake")
    if smk is None:
        sys.exit(run_rule(main))
    log_file = smk.log[0] if smk.log else None
    if run_from_snakemake is None:
        setup_logging(log_file)
        fail(f"{namespace.get('__file__')} is a command-line script; no rule runs it")
    held, note = _rule_lock(smk, lock, log_file)
    try:
        setup_logging(log_file)
        if note:
            logging.getLogger("lidcvae.lock").warning("%s", note)
        code = run_rule(lambda: run_from_snakemake(smk))
    finally:
        if held is not None:
            held.release()
    sys.exit(code or 0)


def _rule_lock(smk: Any, lock: Callable[[Any], tuple[str, str]] | None, log_file: str | None) -> tuple[Any, str | None]:
    """Take the rule's folder lock, or stop with one line on stderr, appended to the rule's log."""
    if lock is None:
        return None, None
    from lidcvae.workflow.lock import FolderLock, FolderLockedError

    held = FolderLock(*lock(smk))
    try:
        return held, held.acquire()
    except (FolderLockedError, OSError) as error:
        message = one_line(_storage_message(error))
        if log_file:
            try:
                with open(log_file, "a") as file:
                    file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} ERROR lidcvae: {message}\n")
            except OSError:
                pass
        _stderr_line(f"error: {message}")
        sys.exit(2)


def config_from_args(parser: argparse.ArgumentParser | None, config_path: Path | None, set_items: list[str],
                     overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load ``--config`` with ``--set KEY=VALUE`` overrides (values parsed as YAML) and ``overrides``, typed.

    A ``--set`` merges into the file as Snakemake's ``--config`` does: ``--set "train={lr: 1e-3}"`` changes
    ``train.lr`` and keeps the file's other ``train`` keys (so does ``--set train.lr=1e-3``).
    A bad file, key or value stops the program with one line naming it (exit 2): a key of the file
    names the file, a bad override names its ``--set`` argument. (``parser`` is kept for the callers'
    signature; nothing is printed through it.)
    """
    from lidcvae.config import ConfigError
    from lidcvae.run_config import load_config

    try:
        parsed = _parse_set_items(set_items)
        try:
            return load_config(config_path, {key: value for _, key, value in parsed} | (overrides or {}))
        except ConfigError as error:
            if not parsed:
                raise
            load_config(config_path)  # the file's own error names the file
            raise _blame_set_item(config_path, parsed, error) from error
    except ConfigError as error:
        fail(error)


def _parse_set_items(set_items: list[str]) -> list[tuple[str, str, Any]]:
    """``(item, key, value)`` of each ``--set KEY=VALUE``, the value parsed as YAML."""
    from lidcvae.config import ConfigError, yaml_load

    parsed = []
    for item in set_items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=3 or \"train={{epochs: 3}}\"")
        try:
            parsed.append((item, key, yaml_load(value)))
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({one_line(str(error))})") from error
    return parsed


def _blame_set_item(config_path: Path | None, parsed: list[tuple[str, str, Any]], error: Exception) -> Exception:
    """The first ``--set`` that fails on top of the file on its own, named with the schema's reason."""
    from lidcvae.config import ConfigError
    from lidcvae.run_config import load_config

    for item, key, value in parsed:
        try:
            load_config(config_path, {key: value})
        except ConfigError as alone:
            lines = str(alone).splitlines()
            reason = lines[1:] if len(lines) > 1 and lines[0].endswith("invalid config") else lines
            return ConfigError(f"--set {item!r}: " + "; ".join(line.strip() for line in reason))
    return error
