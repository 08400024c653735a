"""Serving latency and throughput against in-process inference measured in the same run.

Builds its own small stack in a temporary folder (removed at the end): a synthetic log, a
feature repository built and materialized into a real Feast SQLite online store, a tiny model
trained on it and published to a folder registry. Then, for TorchServe
(:class:`churn.release.torchserve.LocalTorchServe`) and the KServe predictor
(:class:`serving.local_kserve.LocalKServePredictor`) directly, and for the transformer
(:class:`serving.local.LocalTransformer`) in front of each of them, it measures:

- latency at batch 1 over one keep-alive connection (``--requests`` sequential requests):
  p50 and p99, and the share of requests slower than 30 ms (the delayed-ACK stall is 40 ms);
- throughput at batch 64 with ``--clients`` concurrent clients, each on its own keep-alive
  connection, for ``--seconds`` seconds.

The baseline is the same work in this process: ``predict_proba`` on the same instances for a
predictor, and online read + :func:`churn.features.request.build_request` + ``predict_proba``
for the transformer path. The machine is shared, so the script prints the load average and
ratios to the baseline.

The client sends each request in one ``send()`` (request line, headers and body together)
with ``TCP_NODELAY``, as a raw socket client does; see ``--client`` and the README for why
that matters.

Usage: ``python benchmarks/serving.py [--requests 200] [--clients 4] [--seconds 5]
[--client raw|requests] [--quick]``; ``--quick`` (100 requests, 2 s, 200 customers) is for a
rerun on a quiet machine in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# project's ``serving`` package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import numpy as np
import orjson
import pandas as pd
import requests
import torch

from churn.data.synth import generate, make_spec
from churn.dataset.build import build_dataset
from churn.features.build import build_features, materialize
from churn.features.request import build_request
from churn.features.store import FeatureRepo
from churn.io.processes import sigterm_as_interrupt
from churn.model.network import encode_instances, load_model, predict_proba
from churn.model.train import train
from churn.release.registry import LocalRegistry
from churn.release.torchserve import LocalTorchServe, free_port
from churn.settings import (
    FeatureConfig,
    ModelConfig,
    RegistryConfig,
    Settings,
    TrainConfig,
    TransformerConfig,
)
from serving.local import LocalTransformer
from serving.local_kserve import LocalKServePredictor

FEATURES = FeatureConfig(
    bin_days=7, seq_len=52, horizon_days=30, cutoff_step_days=14, n_train_cutoffs=3
)
BATCH = 64
STALL_MS = 30.0


@dataclass
class Stack:
    """What the servers serve: a materialized feature repository and a published version."""

    root: Path
    repo: FeatureRepo
    registry: LocalRegistry
    version: str
    version_dir: Path
    customers: list[str]


def build_stack(root: Path, customers: int) -> Stack:
    """Synthetic log -> features (materialized to SQLite) -> tiny model -> folder registry."""
    start = (pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=420)).date().isoformat()
    generate(
        make_spec(
            customers, 420, seed=5, start=start, horizon_days=30, step_days=14, n_train_cutoffs=3
        ),
        root / "synth",
    )
    build_features(
        root / "synth" / "transactions.parquet",
        root / "repo",
        FEATURES,
        customers=root / "synth" / "customers.parquet",
    )
    build_dataset(root / "repo", root / "dataset", horizon_days=30)
    train(
        root / "dataset",
        root / "model",
        ModelConfig(),
        TrainConfig(epochs=1, batch_size=256, device="cpu"),
    )
    registry = LocalRegistry(root / "registry", "churn")
    info = registry.publish(root / "model", {"roc_auc": 0.5})
    registry.promote(info.version)
    version_dir = registry.download(info.version, root / "version")
    materialize(root / "repo")
    repo = FeatureRepo(root / "repo")
    latest = pd.Timestamp(repo.spec["latest_snapshot"])
    rows = pd.read_parquet(
        repo.sources / "sequences.parquet", columns=["customer_id", "snapshot_ts"]
    )
    ids = sorted(rows.loc[rows["snapshot_ts"] == latest, "customer_id"].astype(str))
    return Stack(root, repo, registry, info.version, version_dir, ids)


class RawClient:
    """HTTP/1.1 keep-alive client that writes each request with one ``send()``.

    Args:
        url: ``http://host:port/path`` to POST to.
    """

    def __init__(self, url: str) -> None:
        rest = url.removeprefix("http://")
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.partition(":")
        self._head = f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\n".encode()
        self._sock = socket.create_connection((host, int(port)), timeout=30)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def post(self, body: bytes) -> bytes:
        """Sends one JSON request and returns the body of a 200 answer."""
        self._sock.sendall(
            self._head
            + b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        while b"\r\n\r\n" not in self._buf:
            self._recv()
        head, _, self._buf = self._buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        if "content-length" not in headers:
            raise RuntimeError(f"answer without Content-Length: {lines[0]} {headers}")
        length = int(headers["content-length"])
        while len(self._buf) < length:
            self._recv()
        payload, self._buf = self._buf[:length], self._buf[length:]
        if not lines[0].split()[1] == "200":
            raise RuntimeError(f"{lines[0]}: {payload[:300]!r}")
        return payload

    def _recv(self) -> None:
        chunk = self._sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        self._buf += chunk

    def close(self) -> None:
        """Closes the connection."""
        self._sock.close()


class RequestsClient:
    """``requests.Session`` keep-alive client (urllib3 writes the headers and body separately)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._session = requests.Session()

    def post(self, body: bytes) -> bytes:
        """Sends one JSON request and returns the body of a 200 answer."""
        resp = self._session.post(
            self._url, data=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        if resp.status_code != 200:
            raise RuntimeError(f"{resp.status_code}: {resp.text[:300]}")
        return resp.content

    def close(self) -> None:
        """Closes the connection."""
        self._session.close()


CLIENTS: dict[str, type[RawClient] | type[RequestsClient]] = {
    "raw": RawClient,
    "requests": RequestsClient,
}


def latency(call: Callable[[], object], n: int) -> dict:
    """p50, p99 and the share of calls over :data:`STALL_MS`, after a few warm-up calls."""
    for _ in range(10):
        call()
    times = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        call()
        times[i] = (time.perf_counter() - t0) * 1e3
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "stalled": float(np.mean(times > STALL_MS)),
    }


def throughput(
    make_call: Callable[[], Callable[[], object]], clients: int, seconds: float
) -> float:
    """Calls per second from ``clients`` threads, each with its own call (connection)."""
    calls = [make_call() for _ in range(clients)]
    for call in calls:
        call()
    counts = [0] * clients
    errors: list[BaseException] = []
    deadline = time.perf_counter() + seconds

    def loop(i: int) -> None:
        try:
            while time.perf_counter() < deadline:
                calls[i]()
                counts[i] += 1
        except BaseException as exc:
            errors.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts) / (time.perf_counter() - t0)


def predictor_body(instances: list[dict]) -> bytes:
    return orjson.dumps({"instances": instances})


def transformer_body(ids: list[str]) -> bytes:
    return orjson.dumps({"instances": [{"customer_id": c} for c in ids]})


def measure(
    name: str,
    url: str,
    body1: bytes,
    body64: bytes,
    local1: Callable[[], object],
    local64: Callable[[], object],
    args: argparse.Namespace,
) -> dict:
    """One served path against its in-process baseline; rows per second at batch 64."""
    client_cls = CLIENTS[args.client]

    def client_call(body: bytes) -> Callable[[], Callable[[], object]]:
        def make() -> Callable[[], object]:
            client = client_cls(url)
            opened.append(client)
            return lambda: client.post(body)

        return make

    opened: list[RawClient | RequestsClient] = []
    try:
        served_lat = latency(client_call(body1)(), args.requests)
        local_lat = latency(local1, args.requests)
        served_tp = BATCH * throughput(client_call(body64), args.clients, args.seconds)
        local_tp = BATCH * throughput(lambda: local64, 1, args.seconds)
    finally:
        for client in opened:
            client.close()
    return {
        "path": name,
        "served": {**served_lat, "rows_per_s": served_tp},
        "in_process": {**local_lat, "rows_per_s": local_tp},
    }


def print_row(row: dict) -> None:
    s, b = row["served"], row["in_process"]
    print(
        f"{row['path']:<28} p50 {s['p50_ms']:6.2f} ms (in-process {b['p50_ms']:5.2f})  "
        f"p99 {s['p99_ms']:6.2f} ms (in-process {b['p99_ms']:5.2f})  "
        f">{STALL_MS:.0f} ms {s['stalled']:6.1%}  "
        f"batch {BATCH}: {s['rows_per_s']:8.0f}/s (in-process {b['rows_per_s']:8.0f}/s, "
        f"ratio {s['rows_per_s'] / b['rows_per_s']:.2f})",
        flush=True,
    )


def run(args: argparse.Namespace, root: Path) -> list[dict]:
    t0 = time.perf_counter()
    stack = build_stack(root, args.customers)
    print(f"stack built in {time.perf_counter() - t0:.0f} s", flush=True)
    model, meta = load_model(stack.version_dir / "model")
    input_spec = meta["input_spec"]
    reader = stack.repo.online_reader()
    ids1, ids64 = stack.customers[:1], stack.customers[:BATCH]
    inst1 = build_request(ids1, reader.read(ids1), reader.spec, input_spec).instances
    inst64 = build_request(ids64, reader.read(ids64), reader.spec, input_spec).instances

    def model_call(instances: list[dict]) -> Callable[[], object]:
        return lambda: predict_proba(model, *encode_instances(instances, input_spec))

    def by_id_call(ids: list[str]) -> Callable[[], object]:
        def call() -> object:
            request = build_request(ids, reader.read(ids), reader.spec, input_spec)
            return predict_proba(model, *encode_instances(request.instances, input_spec))

        return call

    settings = Settings(
        home=root / "home",
        registry=RegistryConfig(uri=str(stack.registry.root), model_name="churn"),
        transformer=TransformerConfig(
            feature_repo=stack.repo.path,
            log_uri=str(root / "inference-log"),
            max_ids_per_request=BATCH,
            max_feature_age_hours=24 * 30.0,
        ),
    )
    rows = []
    predictors: dict[str, Callable[[], LocalTorchServe | LocalKServePredictor]] = {
        "torchserve": lambda: LocalTorchServe(
            stack.version_dir / "model-store", "churn", workdir=root / "ts"
        ),
        "kserve": lambda: LocalKServePredictor(
            stack.version_dir, "churn", stack.version, workdir=root / "ks"
        ),
    }
    for name, make_predictor in predictors.items():
        with make_predictor() as predictor:
            rows.append(
                measure(
                    f"{name} predictor",
                    predictor.predict_url,
                    predictor_body(inst1),
                    predictor_body(inst64),
                    model_call(inst1),
                    model_call(inst64),
                    args,
                )
            )
            print_row(rows[-1])
            host = predictor.predict_url.removeprefix("http://").split("/", 1)[0]
            with LocalTransformer(
                "churn",
                host,
                stack.version_dir,
                settings,
                port=free_port(),
                log_file=root / f"transformer-{name}.log",
            ) as transformer:
                rows.append(
                    measure(
                        f"transformer -> {name}",
                        transformer.predict_url,
                        transformer_body(ids1),
                        transformer_body(ids64),
                        by_id_call(ids1),
                        by_id_call(ids64),
                        args,
                    )
                )
                print_row(rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential batch-1 requests")
    parser.add_argument("--clients", type=int, default=4, help="concurrent batch-64 clients")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput duration")
    parser.add_argument("--customers", type=int, default=500, help="synthetic customers")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="raw")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="100 requests, 2 s of throughput, 200 customers (overrides those three)",
    )
    args = parser.parse_args()
    # Stopped with SIGTERM (timeout, kill), the servers it started stop and its folder goes.
    sigterm_as_interrupt()
    if args.quick:
        args.requests, args.seconds, args.customers = 100, 2.0, 200
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    started = time.perf_counter()
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} cores", flush=True)
    root = Path(tempfile.mkdtemp(prefix="churn-serving-bench-"))
    try:
        rows = run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"load average after: {os.getloadavg()}; {time.perf_counter() - started:.0f} s in all",
        flush=True,
    )
    if args.json is not None:
        args.json.write_text(json.dumps({"load": os.getloadavg(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
