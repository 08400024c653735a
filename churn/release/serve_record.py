"""The record of a running ``churn serve``: who runs it, where it listens, how to stop it.

``churn serve`` writes ``<CHURN_HOME>/serve/torchserve.json`` while its TorchServe runs, so that
``churn serve --status`` and ``churn serve --stop`` from another shell, and the next ``churn
serve``, know about it even after the owner was killed with ``kill -9``. A pid alone could name an
unrelated process once the kernel reuses it, so the record keeps each process's start time too,
and a process counts as the recorded one only when both match.

TorchServe is a process group of its own (launcher, Java frontend, Python workers; see
:mod:`churn.release.torchserve`), recorded by its id, the launcher's pid. Linux never hands out a
pid that is the id of a live process group, so members of that group are the recorded server's
even after its launcher has exited.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from churn.errors import ServingError

log = logging.getLogger(__name__)

RECORD_FILE = Path("serve", "torchserve.json")
_POLL_SECONDS = 0.2
# psutil derives start times from clock ticks (1/100 s); the JSON round trip keeps them exact.
_SAME_START_SECONDS = 0.05


def record_path(home: str | Path) -> Path:
    """Where ``churn serve`` keeps its record under the working folder (``CHURN_HOME``)."""
    return Path(home) / RECORD_FILE


@dataclass(frozen=True)
class ServerRecord:
    """One ``churn serve`` and its TorchServe.

    Attributes:
        owner_pid: The process that started TorchServe (``churn serve``).
        owner_started: Its start time, seconds since the epoch.
        model_name: Name clients call the model by.
        version: The served model version.
        inference: Inference API address.
        management: Management API address.
        metrics: Metrics API address.
        predict_url: The predict (v1) or infer (v2) URL.
        started_at: When serving started, ISO 8601 UTC.
        group: TorchServe's process group, ``None`` until it is launched.
        group_started: The group leader's start time.
        workdir: TorchServe's folder (config, ``logs/``).
    """

    owner_pid: int
    owner_started: float
    model_name: str
    version: str
    inference: str
    management: str
    metrics: str
    predict_url: str
    started_at: str
    group: int | None = None
    group_started: float | None = None
    workdir: str | None = None


def process_started(pid: int) -> float | None:
    """A live process's start time; ``None`` when no such process runs (a zombie is gone)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.Error:
        return None


def _is_process(pid: int, started: float | None) -> bool:
    now = process_started(pid)
    return now is not None and started is not None and abs(now - started) < _SAME_START_SECONDS


def owner_alive(record: ServerRecord) -> bool:
    """Whether the recorded ``churn serve`` process still runs."""
    return _is_process(record.owner_pid, record.owner_started)


def group_members(record: ServerRecord) -> list[int]:
    """Pids of the recorded TorchServe process group that still run; empty when it is gone."""
    if record.group is None:
        return []
    leader = process_started(record.group)
    if leader is not None and not _is_process(record.group, record.group_started):
        # The pid names a newer process: the recorded group ended and its id was reused.
        return []
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == record.group and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
    return members


def is_running(record: ServerRecord) -> bool:
    """Whether anything the record names still runs: the owner or its TorchServe."""
    return owner_alive(record) or bool(group_members(record))


def read_record(path: str | Path) -> ServerRecord | None:
    """Reads a record; ``None`` when there is none.

    Raises:
        ServingError: The file is not a record of ``churn serve``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return ServerRecord(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise ServingError(
            f"{path} is not a record of churn serve ({exc}); remove it if no churn serve runs"
        ) from exc


def claim_record(path: str | Path, record: ServerRecord) -> None:
    """Writes the record unless a running server holds it; a dead server's record is replaced.

    The file appears whole and only if absent (a hard link of a finished temporary file), so two
    ``churn serve`` starting at once cannot both claim it.

    Raises:
        ServingError: The record names a server that still runs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        tmp = _write_temporary(path, record)
        try:
            os.link(tmp, path)
            return
        except FileExistsError:
            existing = read_record(path)
            if existing is not None and is_running(existing):
                raise ServingError(already_running(existing, path)) from None
            log.info("removing %s: the churn serve it records is gone", path)
            path.unlink(missing_ok=True)
        finally:
            tmp.unlink()
    raise ServingError(f"{path}: another churn serve is starting at the same moment; try again")


def update_record(path: str | Path, record: ServerRecord) -> None:
    """Replaces the record in one step (readers see the old or the new one, whole)."""
    path = Path(path)
    os.replace(_write_temporary(path, record), path)


def release_record(path: str | Path, owner_pid: int) -> None:
    """Removes the record if ``owner_pid`` wrote it; another server's record stays."""
    path = Path(path)
    with contextlib.suppress(ServingError):
        record = read_record(path)
        if record is not None and record.owner_pid == owner_pid:
            path.unlink(missing_ok=True)


def already_running(record: ServerRecord, path: Path) -> str:
    """The message that refuses a second server while ``record``'s runs."""
    return (
        f"churn serve is already running {record.model_name} {record.version} on "
        f"{record.inference} (pid {record.owner_pid}, recorded in {path}): stop it with "
        "`churn serve --stop`"
    )


def stop_recorded(path: str | Path, timeout: float = 60.0) -> ServerRecord | None:
    """Stops the recorded server, also one whose ``churn serve`` was killed, and removes the record.

    A running owner gets ``SIGTERM`` and stops TorchServe itself, as on Ctrl-C; whatever of
    the TorchServe group is left after ``timeout`` seconds, or has no owner, gets ``SIGTERM``
    and then ``SIGKILL``.

    Args:
        path: The record.
        timeout: Seconds the owner gets to stop its server.

    Returns:
        The record of the stopped server, or ``None`` when none was recorded.

    Raises:
        ServingError: The record is malformed, or processes of the server survive ``SIGKILL``.
    """
    path = Path(path)
    record = read_record(path)
    if record is None:
        return None
    if owner_alive(record):
        os.kill(record.owner_pid, signal.SIGTERM)
        _wait(lambda: not owner_alive(record) and not group_members(record), timeout)
    if group_members(record):
        assert record.group is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.group, signal.SIGTERM)
        if not _wait(lambda: not group_members(record), 10.0):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.group, signal.SIGKILL)
            _wait(lambda: not group_members(record), 10.0)
    left = ([record.owner_pid] if owner_alive(record) else []) + group_members(record)
    if left:
        raise ServingError(f"could not stop churn serve: pids {left} still run")
    path.unlink(missing_ok=True)
    return record


def port_holder(port: int) -> str:
    """Names the processes listening on a TCP port, for an error message.

    Returns:
        ``"pid N (name, process group G)"`` for each, or ``"a process of another user"`` when
        none is visible (Linux shows other users' sockets without their pids).
    """
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return "a process this user may not inspect"
    pids = sorted(
        {
            c.pid
            for c in conns
            if c.pid is not None and c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
    )
    names = []
    for pid in pids:
        try:
            name = psutil.Process(pid).name()
            names.append(f"pid {pid} ({name}, process group {os.getpgid(pid)})")
        except (psutil.Error, ProcessLookupError):
            names.append(f"pid {pid}")
    return ", ".join(names) or "a process of another user"


def _wait(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(_POLL_SECONDS)
    return done()


def _write_temporary(path: Path, record: ServerRecord) -> Path:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    # "x" rather than mkstemp: the file gets the umask's permissions like other outputs.
    with open(tmp, "x") as f:
        json.dump(asdict(record), f, indent=2)
        f.write("\n")
    return tmp
