"""Atomic outputs: a folder is filled under a temporary name, then renamed into place.

Readers therefore see either the old complete folder or the new complete one, never a
half-written one, and a failure leaves the old one untouched. A folder is replaced only when it
is empty or holds the marker file of the same kind of output, so a mistyped ``--out`` never
wipes an unrelated folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from churn.errors import OutputError


def check_replaceable(dest: str | Path, marker: str | None) -> None:
    """Checks, before any work, that ``dest`` may be written or replaced.

    Args:
        dest: The output folder.
        marker: A file every folder of this kind holds (``meta.json``, ``model.json``); an
            existing non-empty folder without it is refused. ``None`` accepts any folder.

    Raises:
        OutputError: ``dest`` or a parent is a file, or ``dest`` is a non-empty folder of
            another kind.
    """
    dest = Path(dest)
    for parent in dest.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"cannot write {dest}: {parent} is a file, not a folder")
    if not dest.exists():
        return
    if not dest.is_dir():
        raise OutputError(f"cannot write {dest}: it is a file, not a folder")
    if marker is not None and not (dest / marker).is_file() and any(dest.iterdir()):
        raise OutputError(
            f"{dest} is a non-empty folder without {marker}: it holds something else, so it is "
            "not replaced; pick another output folder or empty it"
        )


@contextlib.contextmanager
def staging_dir(dest: str | Path, marker: str | None = None) -> Iterator[Path]:
    """Yields an empty sibling folder of ``dest`` that replaces ``dest`` when the block succeeds.

    Args:
        dest: The folder to write.
        marker: See :func:`check_replaceable`.

    Yields:
        The temporary folder to fill. It is removed if the block raises.

    Raises:
        OutputError: ``dest`` may not be replaced (checked before the block runs).
    """
    dest = Path(dest)
    check_replaceable(dest, marker)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    # mkdtemp's folder is owner-only; the output gets the umask's permissions like any other,
    # which readers in other containers (KServe, the next pipeline step) may need.
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    # Linux reports it without changing it; os.umask() must set one to read it, which would
    # briefly apply to files other threads create.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def umask_mode(mode: int) -> int:
    """``mode`` less the process umask: what ``open()`` or ``mkdir()`` would have given.

    For files and folders that ``tempfile`` creates owner-only but that end up as outputs.

    Args:
        mode: The requested permissions, usually ``0o666`` for a file or ``0o777`` for a folder.

    Returns:
        The permissions to ``chmod`` to.
    """
    return mode & ~_umask()


def replace_dir(tmp: Path, dest: Path) -> None:
    """Moves ``tmp`` to ``dest``; an old ``dest`` disappears only after the new one is in place."""
    if not dest.exists():
        os.replace(tmp, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex}")
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
