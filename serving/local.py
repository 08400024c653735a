"""The transformer as a process on this machine, beside a local predictor.

``churn serve`` and the tests start ``python -m serving.transformer`` the way KServe does (the
same arguments), bound to 127.0.0.1, and stop it with SIGTERM so that it flushes the
inference log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import requests

from churn.errors import ServingError
from churn.settings import Settings

_POLL_SECONDS = 0.2
_LOG_TAIL_CHARS = 3000
_STOP_SECONDS = 30.0


class LocalTransformer:
    """Context manager that runs the transformer for one model in a process of its own.

    Args:
        model_name: Name clients and the predictor call the model by.
        predictor_host: ``host:port`` of the predictor.
        model_dir: The served registry version (or model folder).
        settings: Settings whose ``transformer`` section and ``home`` the process gets (as
            ``CHURN_*`` variables, so it sees what the caller resolved, ``--config`` included).
        port: Port to bind; ``transformer.port`` when ``None``.
        log_file: Where the process's output goes; a temporary file when ``None``.
        startup_timeout: Seconds to wait until the model is ready.
    """

    def __init__(
        self,
        model_name: str,
        predictor_host: str,
        model_dir: str | Path,
        settings: Settings,
        *,
        port: int | None = None,
        log_file: str | Path | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.model_name = model_name
        self.predictor_host = predictor_host
        self.model_dir = Path(model_dir)
        self.settings = settings
        self.host = settings.transformer.host
        self.port = settings.transformer.port if port is None else port
        self.log_file = Path(log_file) if log_file is not None else None
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen | None = None
        self._own_log = False

    @property
    def url(self) -> str:
        """Base URL of the transformer."""
        return f"http://{self.host}:{self.port}"

    @property
    def predict_url(self) -> str:
        """URL of the v1 predict endpoint."""
        return f"{self.url}/v1/models/{self.model_name}:predict"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> LocalTransformer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Starts the process and waits until the model answers as ready.

        Raises:
            ServingError: The process exits (the message ends with its output, whose last
                line names the problem) or is not ready within ``startup_timeout``.
        """
        if self.log_file is None:
            handle, name = tempfile.mkstemp(prefix="churn-transformer-", suffix=".log")
            os.close(handle)
            self.log_file, self._own_log = Path(name), True
        cmd = [
            sys.executable,
            "-m",
            "serving.transformer",
            "--model_name",
            self.model_name,
            "--predictor_host",
            self.predictor_host,
            "--http_port",
            str(self.port),
            "--model_dir",
            str(self.model_dir),
        ]
        with open(self.log_file, "ab") as out:
            # A session of its own: Ctrl-C in the terminal reaches the caller, which stops this
            # process with SIGTERM after the requests in flight.
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=self._env(), start_new_session=True
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops the process with SIGTERM (it flushes the inference log), then SIGKILL."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._own_log and self.log_file is not None:
            self.log_file.unlink(missing_ok=True)

    def log_tail(self) -> str:
        """The end of the process's output, for error messages."""
        if self.log_file is None or not self.log_file.is_file():
            return ""
        return self.log_file.read_text(errors="replace")[-_LOG_TAIL_CHARS:]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_TRANSFORMER__")}
        for key, value in self.settings.transformer.model_dump(mode="json").items():
            if value is not None:
                env[f"CHURN_TRANSFORMER__{key.upper()}"] = str(value)
        env["CHURN_HOME"] = str(self.settings.home)
        return env

    def _wait_ready(self) -> None:
        url = f"{self.url}/v1/models/{self.model_name}"
        deadline = time.monotonic() + self.startup_timeout
        with requests.Session() as session:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    raise ServingError(f"the transformer exited during start-up\n{self.log_tail()}")
                with contextlib.suppress(requests.RequestException, ValueError):
                    resp = session.get(url, timeout=2)
                    if resp.status_code == 200 and resp.json().get("ready") is True:
                        return
                time.sleep(_POLL_SECONDS)
        raise ServingError(
            f"the transformer was not ready within {self.startup_timeout:.0f} s\n{self.log_tail()}"
        )
