"""A TorchServe process on this machine, bound to the loopback interface, for one model archive.

Readiness is a worker in state READY in the management API, not ``/ping``: ``/ping`` answers
Healthy while a worker that cannot import its dependencies crash-loops.

TorchServe is a process group of its own (the ``ts.model_server`` launcher, the Java frontend it
starts, and the Python workers); a watchdog (:mod:`churn.release.torchserve_watchdog`) stops that
group when the process that started it dies, even by ``kill -9``, so no server outlives its owner
and keeps answering with an old model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import requests

from churn.errors import ServingError
from churn.release import serve_record, torchserve_watchdog
from churn.release.archive import Addresses, archive_version, config_properties

log = logging.getLogger(__name__)

# The module rather than the console script, which a venv layered over another may lack.
_TORCHSERVE = [sys.executable, "-m", "ts.model_server"]
_LOOPBACK = "127.0.0.1"
_POLL_SECONDS = 0.25
_LOG_TAIL_CHARS = 3000
# TorchServe restarts a dying worker with back-off for ever; a few deaths at start-up mean the
# archive or the environment is broken, and waiting for the timeout would only hide that.
_MAX_WORKER_DEATHS = 3
_WORKER_DIED = "Backend worker process died"
_WATCHDOG = Path(torchserve_watchdog.__file__)


def free_port(host: str = _LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago.

    Args:
        host: Interface to probe.

    Returns:
        The port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` now.

    Args:
        host: Interface.
        port: TCP port.

    Returns:
        ``True`` when a listener could bind it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As TorchServe's Netty does: old TIME_WAIT connections do not block, a listener does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class LocalTorchServe:
    """Context manager that runs TorchServe for ``<model_store>/<model_name>.mar``.

    The inference and metrics APIs bind ``host``; both management APIs (HTTP and gRPC) always
    bind 127.0.0.1 because token auth is off and they control the served models (``allowed_urls``
    limits registration to archives in the model store). Ports left as
    ``None`` are picked free, so several instances (tests of different people on one machine)
    run side by side. TorchServe keeps its pid file in the temporary folder, so each instance
    gets a private ``TMPDIR``; its logs go to ``<workdir>/logs``.

    With ``record``, the server is written down there while it runs (pids, addresses, version;
    see :mod:`churn.release.serve_record`), and a start is refused while a server recorded
    there still runs.

    Args:
        model_store: Folder holding ``<model_name>.mar``.
        model_name: Name clients call the model by.
        host: Interface of the inference and metrics APIs.
        inference_port: Inference API port.
        management_port: Management API port.
        metrics_port: Prometheus metrics port.
        protocol_version: ``"v1"`` or ``"v2"``: which endpoint :attr:`predict_url` names (the
            handler reads either request shape itself).
        startup_timeout: Seconds to wait for a READY worker.
        workdir: Folder for config, logs and TorchServe's temporary files; a fresh temporary
            folder (removed on stop) when ``None``.
        record: File recording the running server, or ``None`` for none.
    """

    def __init__(
        self,
        model_store: str | Path,
        model_name: str = "churn",
        *,
        host: str = _LOOPBACK,
        inference_port: int | None = None,
        management_port: int | None = None,
        metrics_port: int | None = None,
        protocol_version: str = "v1",
        startup_timeout: float = 120.0,
        workdir: str | Path | None = None,
        record: str | Path | None = None,
    ) -> None:
        self.model_store = Path(model_store).resolve()
        self.model_name = model_name
        self.host = host
        self.protocol_version = protocol_version
        self.startup_timeout = startup_timeout
        hosts = [host, _LOOPBACK, host, host, _LOOPBACK]
        ports = [inference_port, management_port, metrics_port, None, None]
        self._ports = [
            p if p is not None else free_port(h) for p, h in zip(ports, hosts, strict=True)
        ]
        self._workdir_arg = Path(workdir) if workdir is not None else None
        self.workdir: Path | None = None
        self.record = Path(record) if record is not None else None
        self._proc: subprocess.Popen | None = None
        self._watchdog: subprocess.Popen | None = None
        self._watchdog_pipe: int | None = None
        self._started_at = ""
        self._session = requests.Session()

    @property
    def addresses(self) -> Addresses:
        """The addresses TorchServe listens on."""
        inference, management, metrics, grpc_inference, grpc_management = self._ports
        return Addresses(
            inference=f"http://{self.host}:{inference}",
            management=f"http://{_LOOPBACK}:{management}",
            metrics=f"http://{self.host}:{metrics}",
            grpc_inference=(self.host, grpc_inference),
            grpc_management=(_LOOPBACK, grpc_management),
        )

    @property
    def running(self) -> bool:
        """Whether the TorchServe process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def metrics_url(self) -> str:
        """URL of the Prometheus metrics."""
        return f"{self.addresses.metrics}/metrics"

    @property
    def predict_url(self) -> str:
        """URL of the model's predict (v1) or infer (v2) endpoint."""
        if self.protocol_version == "v2":
            return f"{self.addresses.inference}/v2/models/{self.model_name}/infer"
        return f"{self.addresses.inference}/v1/models/{self.model_name}:predict"

    def __enter__(self) -> LocalTorchServe:
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
        """Starts TorchServe and waits until a worker of the model is READY.

        Raises:
            ServingError: The archive or Java is missing, a port is taken (the message names
                the process holding it), the record names a server that still runs,
                TorchServe exits, or no worker is READY within ``startup_timeout``; the
                message ends with the log's tail.
        """
        mar = self.model_store / f"{self.model_name}.mar"
        if not mar.is_file():
            raise ServingError(f"model archive {mar} does not exist")
        version = archive_version(mar)
        self._started_at = datetime.now(UTC).isoformat(timespec="seconds")
        if self.record is not None:
            serve_record.claim_record(self.record, self._record(version))
        try:
            self._check_ports()
            if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
                raise ServingError("TorchServe needs Java 17 or newer: install it or set JAVA_HOME")
            self._launch(mar, version)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops TorchServe (``torchserve --stop``, then the whole process group)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            self._stop_group(proc)
        self._stand_down_watchdog()
        if self.record is not None:
            serve_record.release_record(self.record, os.getpid())
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
            ServingError: TorchServe answers with an error status; the message holds its text.
        """
        url = f"{self.addresses.inference}/v1/models/{self.model_name}:predict"
        resp = self._session.post(url, json={"instances": instances}, timeout=timeout)
        if resp.status_code != 200:
            raise ServingError(f"TorchServe answered {resp.status_code}: {resp.text.strip()}")
        return resp.json()["predictions"]

    def log_tail(self) -> str:
        """The end of TorchServe's console and model logs, for error messages."""
        if self.workdir is None:
            return ""
        parts = []
        for name in ("model_log.log", "ts_log.log"):
            path = self.workdir / "logs" / name
            if path.is_file():
                lines = path.read_text(errors="replace").splitlines()
                # The readiness polls fill the frontend log with access lines that say nothing.
                text = "\n".join(line for line in lines if "ACCESS_LOG" not in line)
                parts.append(f"--- {name} ---\n{text[-_LOG_TAIL_CHARS:]}")
        return "\n".join(parts)

    def _check_ports(self) -> None:
        for url in (self.addresses.inference, self.addresses.management, self.addresses.metrics):
            host, port = url.removeprefix("http://").rsplit(":", 1)
            if not 1 <= int(port) <= 65535:
                raise ServingError(f"{url}: the port must lie in 1..65535")
            if not port_is_free(host, int(port)):
                raise ServingError(
                    f"{url} is already in use by {serve_record.port_holder(int(port))}: stop "
                    "that server or pick another port"
                )

    def _launch(self, mar: Path, version: str) -> None:
        self.workdir = self._workdir_arg or Path(tempfile.mkdtemp(prefix="churn-torchserve-"))
        tmp = self.workdir / "tmp"
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        tmp.mkdir(exist_ok=True)
        config = self.workdir / "config.properties"
        config.write_text(
            config_properties(
                self.model_name,
                version,
                str(self.model_store),
                addresses=self.addresses,
                # No envelope: the handler reads the body and answers malformed ones with 400.
                protocol_version=None,
            )
        )
        cmd = [
            *_TORCHSERVE,
            "--start",
            "--foreground",
            "--ncs",
            "--disable-token-auth",
            "--model-store",
            str(self.model_store),
            "--ts-config",
            str(config),
        ]
        log.info("starting TorchServe for %s on %s", mar, self.addresses.inference)
        with open(self.workdir / "logs" / "console.log", "ab") as console:
            # A session of its own makes TorchServe's Java frontend and Python workers one
            # process group, which stop() and the watchdog can kill as a whole.
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=self._env(),
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.record is not None:
            serve_record.update_record(self.record, self._record(version))
        self._start_watchdog()

    def _start_watchdog(self) -> None:
        assert self._proc is not None
        assert self.workdir is not None
        read_end, self._watchdog_pipe = os.pipe()
        try:
            # Only the watchdog inherits the read end, and nothing but this process the write
            # end (os.pipe's descriptors are not inherited), so the read sees end-of-file
            # exactly when this process is gone. Its output goes to the log rather than to
            # this process's stdout, which a caller may be reading until end-of-file.
            with open(self.workdir / "logs" / "console.log", "ab") as console:
                self._watchdog = subprocess.Popen(
                    [sys.executable, str(_WATCHDOG), str(read_end), str(self._proc.pid)],
                    pass_fds=(read_end,),
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        finally:
            os.close(read_end)

    def _stand_down_watchdog(self) -> None:
        if self._watchdog_pipe is None:
            return
        pipe, self._watchdog_pipe = self._watchdog_pipe, None
        with contextlib.suppress(BrokenPipeError):
            os.write(pipe, torchserve_watchdog.STAND_DOWN)
        os.close(pipe)
        if self._watchdog is not None:
            self._watchdog.wait(timeout=30)
            self._watchdog = None

    def _stop_group(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            subprocess.run(
                [*_TORCHSERVE, "--stop"],
                cwd=self.workdir,
                env=self._env(),
                capture_output=True,
                timeout=30,
                check=False,
            )
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log.warning("TorchServe did not stop in 15 s; killing it")
        # The workers outlive a frontend killed with SIGKILL, so the group is always cleared.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)

    def _record(self, version: str) -> serve_record.ServerRecord:
        proc = self._proc
        owner_started = serve_record.process_started(os.getpid())
        assert owner_started is not None
        return serve_record.ServerRecord(
            owner_pid=os.getpid(),
            owner_started=owner_started,
            model_name=self.model_name,
            version=version,
            inference=self.addresses.inference,
            management=self.addresses.management,
            metrics=self.addresses.metrics,
            predict_url=self.predict_url,
            started_at=self._started_at,
            group=proc.pid if proc is not None else None,
            group_started=serve_record.process_started(proc.pid) if proc is not None else None,
            workdir=str(self.workdir) if self.workdir is not None else None,
        )

    def _env(self) -> dict[str, str]:
        assert self.workdir is not None
        tmp = str(self.workdir / "tmp")
        # enable_envvars_config lets any TS_* variable override config.properties; one left in
        # the caller's shell could rebind an address or change the envelope.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TS_")}
        return {
            **env,
            "TMPDIR": tmp,
            "TEMP": tmp,
            "LOG_LOCATION": str(self.workdir / "logs"),
            "METRICS_LOCATION": str(self.workdir / "logs"),
            # The worker would parse JSON bodies before the handler and log a traceback for
            # each one it cannot parse (a body nested too deep); the handler parses them itself
            # and answers 400.
            "TS_DECODE_INPUT_REQUEST": "false",
        }

    def _wait_ready(self) -> None:
        url = f"{self.addresses.management}/models/{self.model_name}"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise ServingError(f"TorchServe exited during start-up\n{self.log_tail()}")
            if self._worker_deaths() >= _MAX_WORKER_DEATHS:
                raise ServingError(
                    f"the worker of {self.model_name} died {_MAX_WORKER_DEATHS} times while "
                    f"loading\n{self.log_tail()}"
                )
            with contextlib.suppress(requests.RequestException, ValueError):
                resp = self._session.get(url, timeout=2)
                if resp.status_code == 200 and self._owns_ready_worker(resp.json()):
                    return
            time.sleep(_POLL_SECONDS)
        raise ServingError(
            f"no READY worker for {self.model_name} within {self.startup_timeout:.0f} s\n"
            f"{self.log_tail()}"
        )

    def _owns_ready_worker(self, description: list[dict]) -> bool:
        # Another TorchServe already on the port would answer too; only a worker in this
        # instance's process group proves that this one is ready.
        for version in description:
            for worker in version.get("workers", []):
                if worker.get("status") != "READY":
                    continue
                with contextlib.suppress(ProcessLookupError, TypeError):
                    if os.getpgid(worker["pid"]) == self._proc.pid:  # type: ignore[union-attr]
                        return True
        return False

    def _worker_deaths(self) -> int:
        assert self.workdir is not None
        path = self.workdir / "logs" / "model_log.log"
        return path.read_text(errors="replace").count(_WORKER_DIED) if path.is_file() else 0
