"""The record of a running `churn serve` (churn.release.serve_record), with real processes."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from churn.errors import ServingError
from churn.release.serve_record import (
    ServerRecord,
    claim_record,
    group_members,
    is_running,
    port_holder,
    process_started,
    read_record,
    release_record,
    stop_recorded,
)


def record_of(pid: int, group: int | None = None) -> ServerRecord:
    started = process_started(pid)
    assert started is not None
    return ServerRecord(
        owner_pid=pid,
        owner_started=started,
        model_name="churn",
        version="v1",
        inference="http://127.0.0.1:8080",
        management="http://127.0.0.1:8081",
        metrics="http://127.0.0.1:8082",
        predict_url="http://127.0.0.1:8080/v1/models/churn:predict",
        started_at="2026-01-01T00:00:00+00:00",
        group=group,
        group_started=process_started(group) if group is not None else None,
    )


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    """A process in a session (and process group) of its own, like TorchServe's launcher."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_second_claim_is_refused_while_the_first_owner_runs(tmp_path: Path) -> None:
    path = tmp_path / "serve" / "torchserve.json"
    claim_record(path, record_of(os.getpid()))
    with pytest.raises(ServingError, match=rf"already running churn v1 .*pid {os.getpid()}"):
        claim_record(path, replace(record_of(os.getpid()), version="v2"))
    assert read_record(path).version == "v1"  # type: ignore[union-attr]


def test_the_record_of_a_dead_server_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "torchserve.json"
    gone = replace(record_of(os.getpid()), owner_pid=dead_pid())
    claim_record(path, gone)
    claim_record(path, record_of(os.getpid()))
    assert read_record(path).owner_pid == os.getpid()  # type: ignore[union-attr]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["torchserve.json"]


def test_a_reused_pid_is_not_taken_for_the_recorded_process() -> None:
    record = record_of(os.getpid())
    assert is_running(record)
    assert not is_running(replace(record, owner_started=record.owner_started - 3600))


def test_a_malformed_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "torchserve.json"
    path.write_text('{"owner_pid": 1}')
    with pytest.raises(ServingError, match=rf"{path} is not a record of churn serve"):
        read_record(path)


def test_release_leaves_another_owners_record(tmp_path: Path) -> None:
    path = tmp_path / "torchserve.json"
    claim_record(path, record_of(os.getpid()))
    release_record(path, os.getpid() + 1)
    assert path.exists()
    release_record(path, os.getpid())
    assert not path.exists()


def test_stop_kills_the_group_of_a_server_whose_owner_is_gone(
    tmp_path: Path, sleeper: subprocess.Popen
) -> None:
    path = tmp_path / "torchserve.json"
    record = replace(record_of(os.getpid(), group=sleeper.pid), owner_pid=dead_pid())
    claim_record(path, record)
    assert group_members(record) == [sleeper.pid]
    assert stop_recorded(path) == record
    assert sleeper.wait(timeout=10) < 0
    assert not path.exists()
    assert stop_recorded(path) is None


def test_stop_leaves_a_group_whose_id_now_names_another_process(
    tmp_path: Path, sleeper: subprocess.Popen
) -> None:
    path = tmp_path / "torchserve.json"
    record = replace(record_of(os.getpid(), group=sleeper.pid), owner_pid=dead_pid())
    claim_record(path, replace(record, group_started=record.group_started - 3600))  # type: ignore[operator]
    stop_recorded(path)
    assert sleeper.poll() is None


def test_port_holder_names_the_listening_pid() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        holder = port_holder(sock.getsockname()[1])
    assert holder.startswith(f"pid {os.getpid()} (")
    assert f"process group {os.getpgid(0)}" in holder
