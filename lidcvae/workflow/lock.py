"""One writer per results folder: a lock file naming the holder's PID and host.

Snakemake's own lock lives in ``.snakemake/`` of the working directory, so two runs started from two
folders (or two ``train_vae.py`` on one run directory) would both write one training run's checkpoints.
A stage that writes shared state holds ``<folder>/.lidcvae.lock`` while it works; a second one refuses
with one line. A lock left by a killed run (its PID gone on this host) is taken over, and the log says so.
Processes a holder starts (the ranks ``torchrun`` launches for it) inherit the lock through the
environment instead of refusing it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["FolderLockedError", "FolderLock", "LOCK_NAME", "folder_lock"]

LOCK_NAME = ".lidcvae.lock"
#: Lock files held by this process or an ancestor, so its children go on under them (os.pathsep-joined).
HELD_ENV = "LIDCVAE_HELD_LOCKS"

log = logging.getLogger("lidcvae.lock")


class FolderLockedError(RuntimeError):
    """Another live run holds the folder's lock; the message names it (PID, host, since when) and the file."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def _read_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text())
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # half-written by a holder killed mid-write, or gone meanwhile: no live holder named


def _is_stale(holder: dict) -> bool:
    """A holder on this host whose PID is gone (or a lock file too damaged to name one)."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return True
    return holder.get("host") == socket.gethostname() and not _alive(pid)


def _create(path: Path, what: str) -> bool:
    """Write the lock file if none exists; False when another one is there."""
    record = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as file:
        json.dump(record, file)
    return True


def _take(path: Path, what: str) -> str | None:
    """Create the lock file, taking over a stale one; returns what was taken over (for the log), or None."""
    taken_over = None
    for _ in range(3):  # a stale lock removed here may be re-taken by a third run between our two calls
        if _create(path, what):
            return taken_over
        holder = _read_holder(path)
        if not _is_stale(holder):
            raise FolderLockedError(
                f"{path.parent} is in use by PID {holder['pid']} on {holder.get('host')} "
                f"({holder.get('what', 'a run')}, since {holder.get('since', '?')}); wait for it to finish, or "
                f"delete {path} if that run is gone")
        taken_over = (f"took over the lock {path} left by PID {holder.get('pid')} on {holder.get('host')} "
                      f"({holder.get('what', 'a run')}, since {holder.get('since', '?')}): that process is gone")
        path.unlink(missing_ok=True)
    raise FolderLockedError(f"{path}: could not take the lock (other runs keep taking it)")


class FolderLock:
    """``folder/.lidcvae.lock``, taken by ``acquire`` and given back by ``release`` (see ``folder_lock``).

    Args:
        folder: the results folder written (a training run directory, an evaluation folder ...).
        what: what holds it, for the message a second run gets (e.g. ``"training"``).
    """

    def __init__(self, folder: str | os.PathLike, what: str) -> None:
        self.path = Path(folder).resolve() / LOCK_NAME
        self.what = what
        self._inherited = os.environ.get(HELD_ENV, "")

    def acquire(self) -> str | None:
        """Take the lock (the folder is created if needed); returns a note when a stale lock was taken over.

        Raises:
            FolderLockedError: a live process holds it (on another host: any holder, its PID cannot be checked).
        """
        held = [p for p in self._inherited.split(os.pathsep) if p]
        if str(self.path) in held:  # taken by the process that started this one (torchrun's ranks)
            self._owned = False
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        note = _take(self.path, self.what)
        self._owned = True
        os.environ[HELD_ENV] = os.pathsep.join([*held, str(self.path)])
        return note

    def release(self) -> None:
        """Give the lock back, if this process took it."""
        if not getattr(self, "_owned", False):
            return
        os.environ[HELD_ENV] = self._inherited
        if _read_holder(self.path).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self._owned = False


@contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold ``folder/.lidcvae.lock`` for the block; a stale lock taken over is said in the log (WARNING).

    Raises:
        FolderLockedError: a live process holds it.
    """
    lock = FolderLock(folder, what)
    note = lock.acquire()
    if note:
        log.warning("%s", note)
    try:
        yield lock.path
    finally:
        lock.release()
