"""Temporary names that say who owns them, and the removal of those whose owner is gone.

A process killed with SIGKILL, or a machine that loses power, cannot remove what it was
writing. Every temporary file or folder this package creates therefore carries an owner tag,
``<host>-<pid>-<random>``, and the next process that writes to the same place removes the
leftovers whose owner is gone. A leftover counts as abandoned only when all of these hold:

* it was made on this host (the tag holds a hash of the host name), so a folder shared between
  machines or pods is never cleaned by the wrong one;
* its pid no longer exists (``os.kill(pid, 0)``); a reused pid keeps it, which errs on the
  safe side;
* for a folder, no ``flock`` is held on it: an owner keeps one for the folder's whole life,
  which also protects containers that share a host name but not a pid namespace.

A live process's temporary file or folder is therefore never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TAG = r"(?P<host>[0-9a-f]{8})-(?P<pid>[1-9][0-9]*)-[0-9a-f]{8}"


def owner_tag() -> str:
    """A tag naming this host and process, unique per call: ``<host>-<pid>-<random>``."""
    return f"{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as alive)."""
    if pid <= 0:
        # 0 and negative pids address process groups in os.kill, never one process.
        raise ValueError(f"pid must be positive, got {pid}")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def hold_lock(folder: Path) -> int:
    """Takes an exclusive ``flock`` on a folder this process owns; close the fd to release it.

    Args:
        folder: A folder just created by this process.

    Returns:
        The open file descriptor that holds the lock.
    """
    fd = os.open(folder, os.O_RDONLY)
    # A file system without flock: the host and pid in the name still protect the folder.
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def abandoned(entry: Path, prefix: str) -> bool:
    """Whether ``entry`` is named ``prefix + owner tag [+ rest]`` and its owner is gone.

    Args:
        entry: A file or folder.
        prefix: The part of the name before the owner tag.

    Returns:
        True only for a leftover of a dead process of this host whose folder is not locked.
    """
    match = re.fullmatch(re.escape(prefix) + _TAG + r"(?:[.-].*)?", entry.name, re.S)
    if match is None or match["host"] != _HOST:
        return False
    pid = int(match["pid"])
    if pid == os.getpid() or pid_alive(pid):
        return False
    if entry.is_dir() and not entry.is_symlink():
        return _unlocked(entry)
    return True


def _unlocked(folder: Path) -> bool:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        # Closing releases the lock; the caller removes the folder right after.
        os.close(fd)
    return True


def remove(entry: Path) -> None:
    """Removes a file or a folder tree; what is already gone is not an error."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def sweep(parent: Path, prefix: str) -> list[Path]:
    """Removes the abandoned leftovers named ``prefix + owner tag [+ rest]`` in ``parent``.

    Args:
        parent: The folder to look in; a missing or unreadable one holds nothing to remove.
        prefix: The part of the names before the owner tag.

    Returns:
        What was removed.
    """
    try:
        entries = [e for e in Path(parent).iterdir() if e.name.startswith(prefix)]
    except OSError:
        return []
    removed = []
    for entry in entries:
        if abandoned(entry, prefix):
            remove(entry)
            removed.append(entry)
            log.info("removed %s, left behind by a process that no longer runs", entry)
    return removed


@contextlib.contextmanager
def owned_tempdir(prefix: str, parent: str | Path | None = None) -> Iterator[Path]:
    """A private temporary folder, removed on exit, that a later process can clean if killed.

    Like ``tempfile.TemporaryDirectory``, but the name carries this process's owner tag and
    the folder is locked while it lives; abandoned folders with the same prefix are removed
    first.

    Args:
        prefix: Start of the folder's name, for example ``churn-publish-``.
        parent: Where to create it; the system temporary folder by default.

    Yields:
        The folder (mode 0700).
    """
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    sweep(base, prefix)
    folder = base / f"{prefix}{owner_tag()}"
    folder.mkdir(mode=0o700)
    fd = hold_lock(folder)
    try:
        yield folder
    finally:
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)
