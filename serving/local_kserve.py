"""The KServe predictor (``serving/predictor.py``) as a process on this machine.

Readiness is KServe's model health route answering ``ready`` from this very process: another
server already on the port would answer too, so the port must be free before the start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import requests

from churn.errors import ServingError
from churn.release.torchserve import free_port, port_is_free

log = logging.getLogger(__name__)

_LOOPBACK = "127.0.0.1"
_POLL_SECONDS = 0.25
_STOP_SECONDS = 15
_LOG_TAIL_CHARS = 3000


class LocalKServePredictor:
    """Context manager that runs the KServe predictor for one downloaded registry version.

    Args:
        version_dir: The version's folder (as ``Registry.download`` writes it).
        model_name: Name clients call the model by.
        version: The version id the predictions report.
        host: Interface of the HTTP server (inference, health and metrics share one port).
        port: HTTP port; a free one when ``None``.
        startup_timeout: Seconds to wait until the model is ready.
        workdir: Folder for the server's log; a fresh temporary folder (removed on stop)
            when ``None``.
    """

    def __init__(
        self,
        version_dir: str | Path,
        model_name: str = "churn",
        version: str | None = None,
        *,
        host: str = _LOOPBACK,
        port: int | None = None,
        startup_timeout: float = 120.0,
        workdir: str | Path | None = None,
    ) -> None:
        self.version_dir = Path(version_dir).resolve()
        self.model_name = model_name
        self.version = version
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.startup_timeout = startup_timeout
        self._workdir_arg = Path(workdir) if workdir is not None else None
        self.workdir: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._session = requests.Session()

    @property
    def url(self) -> str:
        """Base URL of the server, ``http://HOST:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def predict_url(self) -> str:
        """URL of the v1 predict endpoint (the v2 infer endpoint is :attr:`infer_url`)."""
        return f"{self.url}/v1/models/{self.model_name}:predict"

    @property
    def infer_url(self) -> str:
        """URL of the v2 infer endpoint."""
        return f"{self.url}/v2/models/{self.model_name}/infer"

    @property
    def metrics_url(self) -> str:
        """URL of the Prometheus metrics."""
        return f"{self.url}/metrics"

    @property
    def running(self) -> bool:
        """Whether the predictor process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> LocalKServePredictor:
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
        """Starts the predictor and waits until the model is ready.

        Raises:
            ServingError: The model folder is missing, the port is taken, the process exits,
                or the model is not ready within ``startup_timeout``; the message ends with
                the log's tail.
        """
        if not (self.version_dir / "model").is_dir():
            raise ServingError(f"{self.version_dir} holds no model folder (model/)")
        if not 1 <= self.port <= 65535:
            raise ServingError(f"{self.url}: the port must lie in 1..65535")
        if not port_is_free(self.host, self.port):
            raise ServingError(
                f"{self.url} is already in use: stop that server or pick another port"
            )
        self.workdir = self._workdir_arg or Path(tempfile.mkdtemp(prefix="churn-kserve-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "serving.predictor",
            f"--model_dir={self.version_dir}",
            f"--model_name={self.model_name}",
            f"--host={self.host}",
            f"--http_port={self.port}",
        ]
        if self.version is not None:
            cmd.append(f"--model_version={self.version}")
        log.info("starting the KServe predictor for %s on %s", self.version_dir, self.url)
        with open(self.workdir / "predictor.log", "ab") as out:
            # A session of its own: Ctrl-C in the terminal reaches the CLI, which stops the
            # predictor cleanly, instead of reaching both at once.
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops the predictor: SIGTERM (a graceful shutdown), then SIGKILL after 15 s."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("the KServe predictor did not stop in %d s; killing it", _STOP_SECONDS)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=_STOP_SECONDS)
        self._session.close()
        if self._workdir_arg is None and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def predict(self, instances: list[dict], timeout: float = 30.0) -> list[dict]:
        """Scores instances through the v1 predict endpoint.

        Args:
            instances: Request instances (see ``churn/release/torchserve_handler.py``).
            timeout: Seconds to wait for the answer.

        Returns:
            One result per instance.

        Raises:
            ServingError: The predictor answers with an error status; the message holds it.
        """
        resp = self._session.post(self.predict_url, json={"instances": instances}, timeout=timeout)
        if resp.status_code != 200:
            raise ServingError(f"the predictor answered {resp.status_code}: {resp.text.strip()}")
        return resp.json()["predictions"]

    def log_tail(self) -> str:
        """The end of the predictor's log, for error messages."""
        if self.workdir is None or not (self.workdir / "predictor.log").is_file():
            return ""
        text = (self.workdir / "predictor.log").read_text(errors="replace")
        return f"--- predictor.log ---\n{text[-_LOG_TAIL_CHARS:]}"

    def _wait_ready(self) -> None:
        url = f"{self.url}/v1/models/{self.model_name}"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ServingError(
                    f"the KServe predictor exited during start-up\n{self.log_tail()}"
                )
            with contextlib.suppress(requests.RequestException, ValueError):
                resp = self._session.get(url, timeout=2)
                if resp.status_code == 200 and resp.json().get("ready") is True:
                    return
            time.sleep(_POLL_SECONDS)
        raise ServingError(
            f"{self.model_name} was not ready within {self.startup_timeout:.0f} s\n"
            f"{self.log_tail()}"
        )
