"""Atomic outputs: a folder is filled under a temporary name, then swapped into place.

Readers therefore see either the old complete folder or the new complete one, never a
half-written one, and a failure leaves the old one untouched. A folder is replaced only when it
is empty or is an earlier output of the same kind (it holds that kind's marker file), so a
mistyped ``--out`` never wipes an unrelated folder. Every check runs before the work, and names
the path the user gave.

On Linux the new folder and the old one trade places in one ``renameat2(RENAME_EXCHANGE)``
call, so the destination exists at every instant. Where that is unavailable (other systems,
some network file systems) the old folder is first renamed aside; a process killed between
the two renames leaves it there under a name that carries its owner, and the next writer of
the same destination puts it back (see :mod:`churn.io.leftovers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from churn.errors import OutputError
from churn.io.leftovers import abandoned, hold_lock, owner_tag, remove, sweep

log = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2

# What mkfs leaves at the root of an ext4 file system: a volume mounted as the output folder
# (a PersistentVolumeClaim of a block or Filestore class) holds it before anything is written.
FILESYSTEM_ROOT_FOLDER = "lost+found"


def check_replaceable(
    dest: str | Path,
    marker: str | None,
    *,
    earlier: Callable[[Path], bool] | None = None,
    kind: str = "",
    in_place: bool = False,
) -> None:
    """Checks, before any work, that ``dest`` may be written or replaced.

    It first puts back a folder that an interrupted replacement left aside (see the module
    docstring), so the check sees what the user last had.

    Args:
        dest: The output folder.
        marker: A file every folder of this kind holds (``meta.json``, ``model.json``); an
            existing non-empty folder without it is refused. ``None`` accepts any folder
            unless ``earlier`` is given.
        earlier: Recognises an earlier output of this kind that lacks ``marker`` (or when there
            is no marker file); a non-empty folder it rejects is refused.
        kind: What the output is, for the message when ``earlier`` rejects a folder.
        in_place: The output is written inside ``dest`` rather than swapped in beside it, so
            ``dest`` itself must be writable.

    Raises:
        OutputError: ``dest`` or a parent is a file, ``dest`` is a non-empty folder of another
            kind, or the folder that receives it is not writable.
    """
    dest = Path(dest)
    for parent in dest.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"cannot write {dest}: {parent} is a file, not a folder")
    recover(dest)
    check_writable(dest, in_place=in_place)
    if not dest.exists():
        return
    if not dest.is_dir():
        raise OutputError(f"cannot write {dest}: it is a file, not a folder")
    if marker is not None and (dest / marker).is_file():
        return
    if earlier is not None and earlier(dest):
        return
    # Only an output written in place may sit at a volume's root: one swapped in beside it
    # would have to rename the mount point.
    ignored = {FILESYSTEM_ROOT_FOLDER} if in_place else set()
    if (marker is None and earlier is None) or not any(
        p for p in dest.iterdir() if p.name not in ignored
    ):
        return
    held = f"without {marker}" if earlier is None else f"that is not an earlier {kind}"
    raise OutputError(
        f"{dest} is a non-empty folder {held}: it holds something else, so it is not "
        "replaced; pick another output folder or empty it"
    )


def check_writable(dest: str | Path, *, in_place: bool = False) -> None:
    """Checks that ``dest`` can be created (or written into, when ``in_place``) by this process.

    Args:
        dest: A file or folder to write.
        in_place: Files are written inside an existing ``dest``, not beside it.

    Raises:
        OutputError: The folder that would receive the output is read-only or not ours; the
            message names ``dest`` and that folder.
    """
    dest = Path(dest)
    folder = dest if in_place and dest.is_dir() else dest.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write {dest}: the folder {folder} is not writable by this user "
            "(or is on a read-only file system)"
        )


def check_new_file(dest: str | Path, *, force: bool) -> None:
    """Checks, before any work, that a file output will not replace a user's file unasked.

    Args:
        dest: The output file.
        force: Replace an existing file.

    Raises:
        OutputError: ``dest`` exists and ``force`` is off, it is a folder, a parent is a file,
            or its folder is not writable.
    """
    dest = Path(dest)
    for parent in dest.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"cannot write {dest}: {parent} is a file, not a folder")
    if dest.is_dir():
        raise OutputError(f"cannot write {dest}: it is a folder, not a file")
    if dest.exists() and not force:
        raise OutputError(f"{dest} already exists; pass --force to replace it")
    check_writable(dest)


@contextlib.contextmanager
def staging_dir(dest: str | Path, marker: str | None = None) -> Iterator[Path]:
    """Yields an empty sibling folder of ``dest`` that replaces ``dest`` when the block succeeds.

    Args:
        dest: The folder to write.
        marker: See :func:`check_replaceable`.

    Yields:
        The temporary folder to fill. It is removed if the block raises.

    Raises:
        OutputError: ``dest`` may not be replaced (checked before the block runs), or writing
            the temporary folder failed (the message names ``dest``, not the temporary name).
    """
    dest = Path(dest)
    check_replaceable(dest, marker)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{_staging_prefix(dest)}{owner_tag()}")
    # The umask's permissions, as for any other output: readers in other containers (KServe,
    # the next pipeline step) may need them.
    tmp.mkdir()
    lock = hold_lock(tmp)
    try:
        yield tmp
        replace_dir(tmp, dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.filename is not None and str(tmp) in str(exc.filename):
            raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(lock)


def _staging_prefix(dest: Path) -> str:
    return f".{dest.name}.tmp-"


def _aside_prefix(dest: Path) -> str:
    return f".{dest.name}.old-"


def recover(dest: str | Path) -> None:
    """Undoes what a killed writer of ``dest`` left behind.

    A folder renamed aside by the fallback swap goes back to ``dest`` if ``dest`` is missing
    (the writer died between the two renames) and is removed otherwise; abandoned staging
    folders are removed. Leftovers of live processes are never touched.

    Args:
        dest: An output folder.
    """
    dest = Path(dest)
    try:
        candidates = [p for p in dest.parent.iterdir() if p.name.startswith(_aside_prefix(dest))]
    except OSError:
        return
    aside = [p for p in candidates if abandoned(p, _aside_prefix(dest))]
    for old in sorted(aside, key=lambda p: p.stat().st_mtime, reverse=True):
        if not os.path.lexists(dest):
            os.replace(old, dest)
            log.warning("restored %s, which an interrupted replacement had left at %s", dest, old)
        else:
            remove(old)
    sweep(dest.parent, _staging_prefix(dest))


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
    if not os.path.lexists(dest):
        os.replace(tmp, dest)
        return
    if _exchange(tmp, dest):
        # tmp now holds the old folder; if this process dies here, the next writer removes it.
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = dest.with_name(f"{_aside_prefix(dest)}{owner_tag()}")
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swaps two paths in one step; False where the system or file system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        # Not Linux, or a C library older than glibc 2.28.
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    func.restype = ctypes.c_int
    return func
