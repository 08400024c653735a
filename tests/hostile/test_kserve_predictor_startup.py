"""The KServe predictor refuses what it cannot serve with one line, and stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from churn.errors import ServingError
from churn.release.torchserve import port_is_free
from serving.local_kserve import LocalKServePredictor
from serving.predictor import main


@pytest.fixture
def version_dir(tmp_path: Path, tiny_model: Callable[[Path, int], Path]) -> Path:
    tiny_model(tmp_path / "v" / "model", 0)
    (tmp_path / "v" / "_COMPLETE").write_text(json.dumps({"version": "v1"}))
    return tmp_path / "v"


def start_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Runs the predictor's main, which must exit 2 before serving; returns its stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_a_folder_without_a_model_is_refused_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "_COMPLETE").write_text('{"version": "v1"}')
    err = start_error(capsys, f"--model_dir={tmp_path}")
    assert err.startswith("error: cannot serve") and "model folder" in err
    assert len(err.strip().splitlines()) == 1


def test_a_folder_without_its_marker_needs_an_explicit_version(
    version_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (version_dir / "_COMPLETE").unlink()
    err = start_error(capsys, f"--model_dir={version_dir}")
    assert "_COMPLETE is missing" in err and "--model_version" in err


@pytest.mark.parametrize(
    "marker", ["not json", "[1]", '{"version": ""}', '{"version": 3}'], ids=str
)
def test_a_damaged_marker_is_refused(
    version_dir: Path, capsys: pytest.CaptureFixture[str], marker: str
) -> None:
    (version_dir / "_COMPLETE").write_text(marker)
    err = start_error(capsys, f"--model_dir={version_dir}")
    assert f"{version_dir / '_COMPLETE'}" in err


def test_a_damaged_model_is_refused_naming_the_file(
    version_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (version_dir / "model" / "model.json").write_text("{")
    err = start_error(capsys, f"--model_dir={version_dir}")
    assert "model.json is not valid JSON" in err


@pytest.mark.parametrize(
    "option", ["--http_port=0", "--http_port=65536", "--http_port=http", "--torch_threads=0"]
)
def test_a_bad_port_or_thread_count_is_refused(
    version_dir: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    err = start_error(capsys, f"--model_dir={version_dir}", option)
    assert option.split("=")[0] in err


def test_a_busy_port_is_refused_before_start(version_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        predictor = LocalKServePredictor(version_dir, port=port)
        with pytest.raises(ServingError, match=f"{port} is already in use"):
            predictor.start()
    assert not predictor.running


def test_a_version_folder_without_a_model_is_refused_before_start(tmp_path: Path) -> None:
    with pytest.raises(ServingError, match="holds no model folder"):
        LocalKServePredictor(tmp_path).start()


@pytest.mark.slow
def test_a_predictor_that_dies_at_start_up_is_reported_with_its_log(version_dir: Path) -> None:
    (version_dir / "model" / "model.pt").write_bytes(b"not weights")
    predictor = LocalKServePredictor(version_dir)
    with pytest.raises(ServingError, match="exited during start-up") as info:
        predictor.start()
    assert "model.pt does not fit" in str(info.value)
    assert not predictor.running


@pytest.mark.slow
def test_sigterm_stops_the_predictor_and_frees_its_port(version_dir: Path) -> None:
    with LocalKServePredictor(version_dir) as predictor:
        assert (
            predictor.predict([{"sequence": {"n_txn": [1, 2, 3, 4]}}])[0]["model_version"] == "v1"
        )
        proc = predictor._proc
        assert proc is not None
    # stop() sent SIGTERM: uvicorn shuts down and re-raises it, so the process ends by it,
    # well before the SIGKILL that would follow 15 s later.
    assert proc.returncode == -signal.SIGTERM
    assert port_is_free(predictor.host, predictor.port)


@pytest.mark.slow
def test_the_module_runs_as_a_script() -> None:
    # What the ServingRuntime's command runs; --help exits before any model is read.
    out = subprocess.run(
        [sys.executable, "-m", "serving.predictor", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "--model_dir" in out.stdout and "--http_port" in out.stdout
