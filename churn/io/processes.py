"""This process's children, for handing a termination request on to them, and the
environment they (and code imported meanwhile) see.

A terminal's Ctrl-C reaches every process of the foreground group, but SIGTERM from
``timeout``, systemd or the kubelet reaches only the process it names. These helpers let the
command line pass it on as the SIGINT the children would have got from Ctrl-C, and wait for
them to clean up. They read ``/proc`` and find nothing where it does not exist.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

_PROC = Path("/proc")
# Descendants noted at an interruption, which cleanup code waits for.
_interrupted: list[int] = []


def descendants(pid: int | None = None) -> list[int]:
    """The live (not zombie) descendants of a process, parents before their children.

    Args:
        pid: The process; this one by default.

    Returns:
        Their pids.
    """
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for entry in _PROC.glob("[0-9]*"):
        state = _stat(entry)
        if state is not None and state[0] != "Z":
            children.setdefault(state[1], []).append(int(entry.name))
    found: list[int] = []
    queue = list(children.get(root, []))
    while queue:
        child = queue.pop(0)
        found.append(child)
        queue.extend(children.get(child, []))
    return found


def _stat(entry: Path) -> tuple[str, int] | None:
    try:
        text = (entry / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields after its last ')' do not.
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], int(fields[1])


def interrupt_descendants(forward: bool) -> list[int]:
    """Notes this process's descendants at an interruption, and passes it on if asked.

    Args:
        forward: Send them SIGINT, as Ctrl-C in a terminal would have (for SIGTERM, which
            reached only this process). For Ctrl-C itself they already got it.

    Returns:
        Their pids; :func:`wait_for_interrupted` waits for them.
    """
    pids = descendants()
    _interrupted.extend(pids)
    for pid in pids if forward else ():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
    return pids


def wait_for_interrupted(timeout: float) -> bool:
    """Waits for the processes noted by :func:`interrupt_descendants` to finish cleaning up."""
    return wait_gone(list(_interrupted), timeout)


def wait_gone(pids: list[int], timeout: float) -> bool:
    """Waits until none of these processes runs any more (zombies count as gone).

    The pids are followed themselves, not as descendants: a grandchild whose parent has
    exited is handed to init, yet it may still be cleaning up.

    Args:
        pids: The processes, as :func:`interrupt_descendants` returned them.
        timeout: Seconds to wait at most.

    Returns:
        Whether they are all gone.
    """
    deadline = time.monotonic() + timeout
    while True:
        running = [pid for pid in pids if (_stat(_PROC / str(pid)) or ("Z", 0))[0] != "Z"]
        if not running:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def sigterm_as_interrupt() -> None:
    """Makes SIGTERM stop this process as Ctrl-C does (scripts outside the CLI: benchmarks).

    Python's default for SIGTERM is to die at once, so ``with`` blocks never exit: servers the
    script started outlive it and its temporary folders stay. After this call SIGTERM raises
    KeyboardInterrupt, so every ``with`` and ``finally`` runs, and the children get the SIGINT
    that a terminal's Ctrl-C would have sent them. A repeated SIGTERM is ignored, so it cannot
    cut the cleanup short.
    """

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        interrupt_descendants(forward=True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@contextlib.contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Sets environment variables (``None`` removes one) inside the block, then restores them.

    Args:
        values: Names and values.
    """
    saved = {name: os.environ.get(name) for name in values}
    try:
        _set_environment(values)
        yield
    finally:
        _set_environment(saved)


def _set_environment(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
