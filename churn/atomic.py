"""Atomic outputs: a folder is filled under a temporary name, then renamed into place.

Readers therefore see either the old complete folder or the new complete one, never a
half-written one, and a failure leaves the old one untouched. (``churn/model.py`` keeps its
own copy of this logic because it may import nothing but torch and the standard library.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def staging_dir(dest: str | Path) -> Iterator[Path]:
    """Yields an empty sibling folder of ``dest`` that replaces ``dest`` when the block succeeds.

    Args:
        dest: The folder to write.

    Yields:
        The temporary folder to fill. It is removed if the block raises.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: Path, dest: Path) -> None:
    """Moves ``tmp`` to ``dest``; an old ``dest`` disappears only after the new one is in place."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
