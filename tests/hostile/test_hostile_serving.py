"""Serving as a hostile client and an unlucky operator would try it, against real TorchServe.

Requests nested too deep or holding negative activity get a 400 that names the problem; the
management API registers no archive from outside the model store; and a ``churn serve`` killed
with ``kill -9`` takes its TorchServe with it, while ``--status`` and ``--stop`` find and stop
a server whose owner is gone.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from churn.dataset.training_set import load_training_set
from churn.model.train import train
from churn.release import torchserve
from churn.release.archive import config_properties
from churn.release.registry import LocalRegistry
from churn.release.serve_record import read_record, record_path
from churn.release.torchserve import LocalTorchServe, free_port
from churn.settings import ModelConfig, TrainConfig

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHURN = [sys.executable, "-c", "from churn.cli import run; run()"]
READY_SECONDS = 180.0


@dataclass
class Published:
    registry: Path
    version: str
    version_dir: Path
    instances: list[dict]


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory, make_training_set: Callable[..., Path]
) -> Published:
    """A tiny model, published and promoted in a folder registry, and request instances."""
    if shutil.which("java") is None:
        pytest.skip("TorchServe needs Java 17 (java is not on PATH)")
    root = tmp_path_factory.mktemp("hostile-serving")
    dataset = make_training_set(root, n=300)
    model_dir = root / "model"
    train(
        dataset,
        model_dir,
        ModelConfig(hidden=8, dilations=[1, 2]),
        TrainConfig(epochs=1, batch_size=64, device="cpu"),
    )
    registry = LocalRegistry(root / "registry", "churn")
    info = registry.publish(model_dir, {"roc_auc": 0.5})
    registry.promote(info.version)
    meta = json.loads((dataset / "meta.json").read_text())
    test = load_training_set(dataset, splits=("test",)).splits["test"]
    instances = [
        {
            "sequence": {ch: test.seq[i, c].tolist() for c, ch in enumerate(meta["channels"])},
            "numeric": {f: float(test.num[i, j]) for j, f in enumerate(meta["numeric_features"])},
        }
        for i in range(3)
    ]
    version_dir = registry.download(info.version, root / "version")
    return Published(root / "registry", info.version, version_dir, instances)


@pytest.fixture(scope="module")
def server(
    published: Published, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTorchServe]:
    """TorchServe on the archive's config with the model API on.

    TorchServe 0.12 (pinned here) turns registration through the management API off by
    default; 0.9, which the kserve-torchserve image ships, leaves it on. Turning it on tests the
    config as it runs in the cluster.
    """

    def with_model_api(*args: object, **kwargs: object) -> str:
        return config_properties(*args, **kwargs) + "enable_model_api=true\n"  # type: ignore[arg-type]

    workdir = tmp_path_factory.mktemp("hostile-ts")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torchserve, "config_properties", with_model_api)
        with LocalTorchServe(published.version_dir / "model-store", workdir=workdir) as ts:
            yield ts


def post(server: LocalTorchServe, body: bytes, path: str | None = None) -> requests.Response:
    url = server.predict_url if path is None else f"{server.addresses.inference}{path}"
    return requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# --- requests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": ' + deep(1000).encode() + b"}",
        deep(100_000).encode(),
        b'{"instances": [{"sequence": ' + deep(5000).encode() + b"}]}",
    ],
    ids=["instances-1000-deep", "array-100000-deep", "sequence-5000-deep"],
)
def test_json_nested_too_deep_gets_a_client_error_not_a_503(
    server: LocalTorchServe, body: bytes
) -> None:
    resp = post(server, body)
    assert resp.status_code == 400, resp.text
    assert "the request body nests arrays or objects too deeply" in resp.json()["message"]


def test_a_v2_input_nested_too_deep_gets_a_client_error(server: LocalTorchServe) -> None:
    body = {"inputs": [{"name": "c0", "shape": [1], "datatype": "BYTES", "data": [deep(1000)]}]}
    resp = post(server, json.dumps(body).encode(), "/v2/models/churn/infer")
    assert resp.status_code == 400, resp.text
    assert "input 0 ('c0'): data nests arrays or objects too deeply" in resp.json()["message"]


def test_deep_json_leaves_no_recursion_traceback_in_the_log(server: LocalTorchServe) -> None:
    assert post(server, deep(3000).encode()).status_code == 400
    log = server.workdir / "logs" / "model_log.log"  # type: ignore[operator]
    # The worker writes its log through the frontend; wait until this request's line is there.
    deadline = time.monotonic() + 20
    while "too deeply" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = log.read_text()
    assert "too deeply" in text
    assert "RecursionError" not in text and "Failed json decoding" not in text


def test_a_negative_sequence_value_gets_a_client_error_naming_the_channel(
    server: LocalTorchServe, published: Published
) -> None:
    instances = json.loads(json.dumps(published.instances))
    instances[1]["sequence"]["spend"][4] = -25.0
    resp = post(server, json.dumps({"instances": instances}).encode())
    assert resp.status_code == 400, resp.text
    assert "instance 1: channel 'spend' holds -25.0 at position 4" in resp.json()["message"]


def test_a_negative_context_feature_gets_a_client_error_naming_it(
    server: LocalTorchServe, published: Published
) -> None:
    instances = json.loads(json.dumps(published.instances))
    instances[0]["numeric"]["tenure_days"] = -3
    resp = post(server, json.dumps({"instances": instances}).encode())
    assert resp.status_code == 400, resp.text
    assert "instance 0: numeric feature 'tenure_days' holds -3.0" in resp.json()["message"]
    instances[0]["numeric"]["tenure_days"] = 0
    assert post(server, json.dumps({"instances": instances}).encode()).status_code == 200


# --- management API -------------------------------------------------------------------------


@contextlib.contextmanager
def http_server(folder: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_no_model_is_registered_from_outside_the_model_store(
    server: LocalTorchServe, published: Published, tmp_path: Path
) -> None:
    store = published.version_dir / "model-store"
    shutil.copyfile(store / "churn.mar", tmp_path / "evil.mar")
    models = f"{server.addresses.management}/models"
    with http_server(tmp_path) as base:
        for url in (f"{base}/evil.mar", (tmp_path / "evil.mar").as_uri()):
            resp = requests.post(
                models,
                params={"url": url, "model_name": "evil", "initial_workers": 0},
                timeout=60,
            )
            # TorchServe answers 404 (ModelNotFoundException): a client error either way.
            assert 400 <= resp.status_code < 500, f"{url}: {resp.status_code} {resp.text}"
            assert "does not match any allowed URL" in resp.json()["message"]
    listed = requests.get(models, timeout=10).json()["models"]
    assert [m["modelName"] for m in listed] == ["churn"]
    assert sorted(p.name for p in store.iterdir()) == ["churn.mar"]
    assert len(server.predict(published.instances)) == len(published.instances)


# --- churn serve's life ---------------------------------------------------------------------


@dataclass
class Serve:
    env: dict[str, str]
    home: Path
    port: int
    ports: tuple[int, int, int]

    @property
    def record(self) -> Path:
        return record_path(self.home)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*CHURN, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture
def serve_env(published: Published, tmp_path: Path) -> Iterator[Serve]:
    ports = (free_port(), free_port(), free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "TS_"))}
    home = tmp_path / "home"
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        CHURN_HOME=str(home),
        CHURN_REGISTRY__URI=str(published.registry),
        CHURN_SERVING__INFERENCE_PORT=str(ports[0]),
        CHURN_SERVING__MANAGEMENT_PORT=str(ports[1]),
        CHURN_SERVING__METRICS_PORT=str(ports[2]),
    )
    yield Serve(env, home, ports[0], ports)
    # Whatever a failed test left listening on its ports goes, with its process group.
    for pgid in listener_groups(ports):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def listener_groups(ports: tuple[int, ...]) -> set[int]:
    groups = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports and conn.pid:
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(conn.pid))
    return groups


def group_alive(pgid: int) -> bool:
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return condition()


def answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def start_serve(s: Serve, tmp_path: Path) -> subprocess.Popen:
    """``churn serve`` in the background, once it serves; its output goes to ``serve.out``."""
    output = tmp_path / "serve.out"
    out = open(output, "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        [*CHURN, "serve"], env=s.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    out.close()
    # It prints its addresses once a worker is READY; /ping answers before that.
    ready = wait_for(
        lambda: proc.poll() is not None or "serving churn" in output.read_text(), READY_SECONDS
    )
    if not ready or proc.poll() is not None:
        proc.kill()
        pytest.fail(f"churn serve did not come up:\n{output.read_text()}")
    return proc


def test_kill_9_of_churn_serve_stops_its_torchserve(serve_env: Serve, tmp_path: Path) -> None:
    proc = start_serve(serve_env, tmp_path)
    (group,) = listener_groups((serve_env.port,))
    assert group != proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert wait_for(lambda: not group_alive(group), 30), "TorchServe outlived churn serve"
    assert not answers(serve_env.port)
    status = serve_env.cli("serve", "--status")
    assert status.returncode == 1 and status.stdout.strip() == "not running", status
    # The record of the dead server does not block the next one.
    again = start_serve(serve_env, tmp_path)
    assert read_record(serve_env.record).owner_pid == again.pid  # type: ignore[union-attr]
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=60) == 0
    assert not serve_env.record.exists() and not answers(serve_env.port)


def test_stop_ends_a_running_churn_serve_cleanly(
    serve_env: Serve, published: Published, tmp_path: Path
) -> None:
    proc = start_serve(serve_env, tmp_path)
    stop = serve_env.cli("serve", "--stop")
    assert stop.returncode == 0, stop.stderr
    assert f"stopped churn {published.version}" in stop.stdout
    assert f"churn serve pid {proc.pid}" in stop.stdout
    assert proc.wait(timeout=10) == 0, (tmp_path / "serve.out").read_text()
    assert not serve_env.record.exists() and not answers(serve_env.port)
    nothing = serve_env.cli("serve", "--stop")
    assert nothing.returncode == 0 and "no churn serve is running" in nothing.stdout


def test_status_and_stop_find_a_server_whose_churn_serve_is_gone(
    serve_env: Serve, published: Published, tmp_path: Path
) -> None:
    proc = start_serve(serve_env, tmp_path)
    status = serve_env.cli("serve", "--status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("running\n")
    assert f"churn {published.version}" in status.stdout
    assert f"http://127.0.0.1:{serve_env.port}/v1/models/churn:predict" in status.stdout
    assert f"{proc.pid} (churn serve)" in status.stdout
    second = serve_env.cli("serve")
    assert second.returncode == 2
    assert f"churn serve is already running churn {published.version}" in second.stderr
    assert f"pid {proc.pid}" in second.stderr and "churn serve --stop" in second.stderr
    # Orphan the server as a kill of everything but TorchServe would: watchdog, then owner.
    (watchdog,) = (
        p
        for p in psutil.Process(proc.pid).children()
        if "torchserve_watchdog" in " ".join(p.cmdline())
    )
    watchdog.kill()
    proc.kill()
    proc.wait(timeout=10)
    time.sleep(1)
    assert answers(serve_env.port), "the orphan should still answer before --stop"
    status = serve_env.cli("serve", "--status")
    assert status.returncode == 0
    assert status.stdout.startswith(f"running without its churn serve (pid {proc.pid} is gone)")
    stop = serve_env.cli("serve", "--stop")
    assert stop.returncode == 0, stop.stderr
    assert f"stopped churn {published.version}" in stop.stdout
    assert not answers(serve_env.port) and not listener_groups(serve_env.ports)
    assert not serve_env.record.exists()
    assert serve_env.cli("serve", "--status").returncode == 1


def test_a_port_in_use_is_refused_naming_the_pid_that_holds_it(serve_env: Serve) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", serve_env.ports[1]))
        sock.listen()
        result = serve_env.cli("serve")
    assert result.returncode == 2
    assert f"http://127.0.0.1:{serve_env.ports[1]} is already in use by pid {os.getpid()}" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not serve_env.record.exists()
