"""SIGTERM in scripts outside the CLI (benchmarks) stops them the way Ctrl-C does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from churn.io.processes import environment, wait_gone

PROJECT_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import subprocess, sys, time
from pathlib import Path
from churn.io.processes import sigterm_as_interrupt

sigterm_as_interrupt()
server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(server.pid, flush=True)
try:
    time.sleep(120)
finally:
    Path(sys.argv[1]).write_text("cleaned up")
"""


def test_sigterm_runs_the_cleanup_and_stops_the_children_a_terminal_would_have(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    script = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(marker)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert script.stdout is not None
    child = int(script.stdout.readline())
    time.sleep(0.2)
    script.send_signal(signal.SIGTERM)
    script.wait(timeout=30)
    assert marker.read_text() == "cleaned up"
    # Without the handler the sleeping child outlives the script (it is nobody's to stop).
    assert wait_gone([child], timeout=10)


def test_environment_sets_and_removes_variables_and_restores_them_even_on_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHURN_TEST_KEPT", "before")
    monkeypatch.delenv("CHURN_TEST_NEW", raising=False)
    with (
        pytest.raises(RuntimeError),
        environment({"CHURN_TEST_KEPT": None, "CHURN_TEST_NEW": "inside"}),
    ):
        assert "CHURN_TEST_KEPT" not in os.environ
        assert os.environ["CHURN_TEST_NEW"] == "inside"
        raise RuntimeError("midway")
    assert os.environ["CHURN_TEST_KEPT"] == "before"
    assert "CHURN_TEST_NEW" not in os.environ
