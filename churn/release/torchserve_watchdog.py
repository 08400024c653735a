"""Stops a TorchServe process group when the process that started it dies, however it dies.

:class:`churn.release.torchserve.LocalTorchServe` runs this file as a script, ``python
torchserve_watchdog.py FD PGID``, in a session of its own. ``FD`` is the read end of a pipe whose
only write end the starting process holds. The kernel closes that end when the process exits, even
on ``kill -9``, so ``read`` returning end-of-file means the owner is gone and TorchServe (the
launcher, its Java frontend and the Python workers, one process group) is stopped: ``SIGTERM``,
then ``SIGKILL`` after a grace period. An owner that stops TorchServe itself first writes
:data:`STAND_DOWN`, and the watchdog exits without signalling a group that no longer exists.

``prctl(PR_SET_PDEATHSIG)`` would not do: it is Linux-only, it fires when the parent *thread*
exits rather than the process, and it reaches only the launcher, whose Java child survives it.

It imports only the standard library because it runs as a script, outside the ``churn`` package
(the owner's ``sys.path`` may come from its working folder, which the script does not share).
"""

from __future__ import annotations

import os
import signal
import sys
import time

STAND_DOWN = b"q"
GRACE_SECONDS = 10.0
_POLL_SECONDS = 0.1


def stop_group(pgid: int, grace: float = GRACE_SECONDS) -> None:
    """Sends ``SIGTERM`` to a process group, then ``SIGKILL`` if it outlives ``grace`` seconds.

    Args:
        pgid: The process group.
        grace: Seconds the group gets to exit on its own.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
            os.killpg(pgid, 0)
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return


def main(argv: list[str]) -> None:
    """Waits for the owner to exit, then stops the group unless the owner said it has.

    Args:
        argv: ``[script, FD, PGID]``.
    """
    fd, pgid = int(argv[1]), int(argv[2])
    while chunk := os.read(fd, 64):
        if STAND_DOWN in chunk:
            return
    stop_group(pgid)


if __name__ == "__main__":
    main(sys.argv)
