"""Safe file output: every artefact appears whole under its final name, or not at all, and only inside
its results folder; a full disk or a permission / I/O failure is named as such, with the path.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

__all__ = [
    "StorageError", "UnsafePathError", "atomic_path", "environment_errno", "raise_if_environment",
    "safe_name", "path_under", "publish", "write_parquet", "read_parquet",
]

#: Errors of the machine, not of the data: the run must stop and mark nothing done (a rerun after the
#: cause is fixed redoes the work), never turn them into a per-scan failure row.
ENVIRONMENT_ERRNOS: dict[int, str] = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "I/O error",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files",
}

#: A file-name component built from data (a UID, a PatientID, a run name): letters, digits, '.', '_', '-',
#: starting with a letter or digit, so never '..', a hidden name, an absolute path or a separator.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class StorageError(OSError):
    """Disk full, permission denied or an I/O error: the message says which, and names the path."""


class UnsafePathError(ValueError):
    """A name taken from data or config would leave its folder (``..``, ``/``, an absolute path)."""


def environment_errno(error: BaseException) -> int | None:
    """The errno of an environment failure anywhere in ``error``'s cause chain, or None.

    Some libraries (pyarrow, nibabel's gzip) re-raise without ``errno``; their message still carries
    the C library's text (``No space left on device``), so that is matched too.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS:
            return error.errno
        if isinstance(error, OSError):
            for code in ENVIRONMENT_ERRNOS:
                if os.strerror(code) in str(error):
                    return code
        error = error.__cause__ or error.__context__
    return None


def raise_if_environment(error: BaseException, path: str | os.PathLike | None = None, action: str = "writing") -> None:
    """Re-raise ``error`` as a ``StorageError`` naming ``path`` when it is an environment failure."""
    if isinstance(error, StorageError):
        raise error
    code = environment_errno(error)
    if code is None:
        return
    where = f" {action} {path}" if path is not None else ""
    raise StorageError(code, f"{ENVIRONMENT_ERRNOS[code]}{where} ({os.strerror(code)}); "
                             "fix it and rerun: work finished so far is kept") from error


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` when the block succeeds.

    The temporary name keeps the final suffix (``.nii.gz``, ``.parquet`` ...) so writers that pick
    a format from the extension still work. On error the temporary file is removed and ``path``
    is left as it was; a full disk or permission / I/O failure becomes a ``StorageError`` naming ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except Exception as error:
        raise_if_environment(error, path)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def safe_name(value: str, what: str = "name") -> str:
    """``value`` unchanged when it is safe as one file-name component, else ``UnsafePathError``.

    Args:
        value: text from a header, a table or the config (e.g. a SeriesInstanceUID).
        what: what the value is, for the message (e.g. ``"SeriesInstanceUID"``).
    """
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value):
        raise UnsafePathError(f"unsafe {what} {value!r}: a name used in a file path must be letters, digits, "
                              "'.', '_' or '-', start with a letter or digit, and be at most 200 characters")
    return value


def path_under(root: str | os.PathLike, *names: str, what: str = "name") -> Path:
    """``root/names[0]/names[1]/...`` after checking each name with ``safe_name`` and the result lies under ``root``."""
    root = Path(root)
    path = root.joinpath(*(safe_name(name, what) for name in names))
    if not Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root)):  # belt and braces
        raise UnsafePathError(f"{path} is not inside {root}")
    return path


def publish(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Make ``target`` a hard link to ``source`` (a copy where links are not possible), atomically.

    Used for a rule's declared output, so that Snakemake deleting it (before a rerun, after a
    failure) never deletes the work it came from.
    """
    source, target = Path(source), Path(target)
    with atomic_path(target) as tmp:
        try:
            os.link(source, tmp)
        except OSError as error:
            raise_if_environment(error, target)
            shutil.copyfile(source, tmp)
    return target


def write_parquet(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``table`` to ``path`` as Parquet, atomically."""
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    return Path(path)


def read_parquet(path: str | os.PathLike) -> pd.DataFrame:
    """Read a Parquet table, naming the file in the error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table not found: {path}")
    return pd.read_parquet(path)
