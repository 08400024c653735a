"""Serving by customer id: the real transformer on a real Feast SQLite store and TorchServe.

One module-wide stack on 127.0.0.1: a synthetic log whose last day is today, a feature
repository built and materialized from it, a small model trained on it and published to a
folder registry, that version served by TorchServe, and the transformer
(``python -m serving.transformer``, started as KServe starts it) in front. Tests that need
other settings (a log store, a predictor) start a transformer of their own on the same store.
"""

from __future__ import annotations

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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
import requests
from conftest import promote_small_champion
from typer.testing import CliRunner

from churn.cli import app
from churn.data.synth import generate, make_spec
from churn.features.build import build_features, materialize
from churn.features.store import SEQUENCE_VIEW, FeatureRepo
from churn.features.summary import summary_windows
from churn.model.network import encode_instances, load_model, predict_proba
from churn.release.registry import LocalRegistry
from churn.release.torchserve import LocalTorchServe, free_port
from churn.settings import (
    FeatureConfig,
    RegistryConfig,
    Settings,
    TransformerConfig,
)
from serving.inference_log import log_schema
from serving.local import LocalTransformer

pytestmark = pytest.mark.slow

MAX_IDS = 8
MAX_AGE_HOURS = 24 * 30.0
STALE_DAYS = 90
FEATURES = FeatureConfig(
    bin_days=7, seq_len=8, horizon_days=30, cutoff_step_days=14, n_train_cutoffs=3
)


@dataclass
class Stack:
    root: Path
    repo: FeatureRepo
    dataset: Path
    registry: LocalRegistry
    version: str
    version_dir: Path
    meta: dict
    predictor: LocalTorchServe
    transformer: LocalTransformer
    customers: list[str]
    stale: str

    def settings(self, **transformer: object) -> Settings:
        """Settings for a transformer of this stack: the test's values over the module's."""
        values = {
            "max_ids_per_request": MAX_IDS,
            "max_feature_age_hours": MAX_AGE_HOURS,
            "feature_repo": self.repo.path,
            "log_uri": str(self.root / f"log-{uuid.uuid4().hex[:8]}"),
            "log_flush_seconds": 0.2,
            **transformer,
        }
        return Settings(
            home=self.root / "home",
            registry=RegistryConfig(uri=str(self.registry.root), model_name="churn"),
            transformer=TransformerConfig(**values),
        )

    def start_transformer(
        self, predictor_host: str | None = None, **transformer: object
    ) -> LocalTransformer:
        return LocalTransformer(
            "churn",
            predictor_host or self.predictor.addresses.inference.removeprefix("http://"),
            self.version_dir,
            self.settings(**transformer),
            port=free_port(),
            log_file=self.root / f"transformer-{uuid.uuid4().hex[:8]}.log",
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if shutil.which("java") is None:
        pytest.skip("TorchServe needs Java 17 (java is not on PATH)")
    root = tmp_path_factory.mktemp("by_id")
    # The log ends today, so the latest snapshot is fresh (at most a day old, or ahead).
    start = (pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=300)).date().isoformat()
    generate(
        make_spec(300, 300, seed=5, start=start, horizon_days=30, step_days=14, n_train_cutoffs=3),
        root / "synth",
    )
    build_features(
        root / "synth" / "transactions.parquet",
        root / "repo",
        FEATURES,
        customers=root / "synth" / "customers.parquet",
    )
    registry, version = promote_small_champion(root / "repo", root)
    version_dir = registry.download(version, root / "version")
    materialize(root / "repo")
    repo = FeatureRepo(root / "repo")
    latest = pd.Timestamp(repo.spec["latest_snapshot"])
    rows = pd.read_parquet(repo.sources / "sequences.parquet")
    customers = sorted(rows.loc[rows["snapshot_ts"] == latest, "customer_id"].astype(str))
    # One customer whose features were last refreshed long ago: rewrite its row in the real
    # online store with an old timestamp.
    stale = customers[-1]
    old = rows[(rows["customer_id"] == stale) & (rows["snapshot_ts"] == latest)].copy()
    old["snapshot_ts"] = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=STALE_DAYS)
    repo.store().write_to_online_store(SEQUENCE_VIEW, old)
    meta = json.loads((version_dir / "model" / "model.json").read_text())
    with LocalTorchServe(version_dir / "model-store", "churn", workdir=root / "ts") as predictor:
        s = Stack(
            root=root,
            repo=repo,
            dataset=root / "dataset",
            registry=registry,
            version=version,
            version_dir=version_dir,
            meta=meta,
            predictor=predictor,
            transformer=None,  # type: ignore[arg-type]
            customers=customers[:-1],
            stale=stale,
        )
        with s.start_transformer() as transformer:
            s.transformer = transformer
            yield s


def predict(transformer: LocalTransformer, ids: list, **headers: str) -> requests.Response:
    body = {"instances": [{"customer_id": c} for c in ids]}
    return requests.post(transformer.predict_url, json=body, headers=headers, timeout=30)


def predict_v2(transformer: LocalTransformer, ids: list) -> requests.Response:
    body = {
        "inputs": [{"name": "customer_id", "shape": [len(ids)], "datatype": "BYTES", "data": ids}]
    }
    return requests.post(f"{transformer.url}/v2/models/churn/infer", json=body, timeout=30)


def metric(transformer: LocalTransformer, name: str) -> float:
    """A sample's value on the transformer's /metrics (0 when absent)."""
    text = requests.get(f"{transformer.url}/metrics", timeout=10).text
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")
    ]
    return values[0] if values else 0.0


def expected_probabilities(stack: Stack, ids: list[str]) -> np.ndarray:
    """The model in-process on the same customers' features, read through the offline store.

    The instances are assembled here by name, independently of churn.features.request.
    """
    spec, input_spec = stack.repo.spec, stack.meta["input_spec"]
    latest = pd.Timestamp(spec["latest_snapshot"])
    feats = stack.repo.historical_features(
        pd.DataFrame({"customer_id": ids, "event_timestamp": [latest] * len(ids)})
    )
    numeric = dict(
        zip(
            [*spec["context_features"], *spec["numeric_attributes"]],
            np.concatenate([feats.context, feats.numeric], axis=1).T,
            strict=True,
        )
    )
    instances = [
        {
            "sequence": {
                c: feats.seq[i, spec["channels"].index(c)].tolist() for c in input_spec["channels"]
            },
            "numeric": {f: float(numeric[f][i]) for f in input_spec["numeric_features"]},
            "categorical": {
                k: str(feats.categorical[i, spec["categorical_attributes"].index(k)])
                for k in input_spec["categorical_features"]
            },
        }
        for i in range(len(ids))
    ]
    model, _ = load_model(stack.version_dir / "model")
    return predict_proba(model, *encode_instances(instances, input_spec)).numpy()


def test_predictions_by_id_equal_the_model_in_process(stack: Stack) -> None:
    ids = stack.customers[:6]
    resp = predict(stack.transformer, ids)
    assert resp.status_code == 200, resp.text
    answers = resp.json()["predictions"]
    assert [a["customer_id"] for a in answers] == ids
    got = np.array([a["churn_probability"] for a in answers])
    np.testing.assert_allclose(got, expected_probabilities(stack, ids), rtol=0, atol=1e-6)
    threshold = stack.meta["threshold"]
    assert [a["churned"] for a in answers] == [bool(p >= threshold) for p in got]
    assert {a["model_version"] for a in answers} == {stack.version}
    latest = pd.Timestamp(stack.repo.spec["latest_snapshot"])
    assert {a["feature_timestamp"] for a in answers} == {latest.isoformat()}
    age = (pd.Timestamp.now(tz="UTC") - latest).total_seconds()
    assert all(abs(a["feature_age_seconds"] - age) < 60 for a in answers)


def test_v2_by_id_answers_as_v1_does(stack: Stack) -> None:
    ids = [*stack.customers[:3], "ghost"]
    resp = predict_v2(stack.transformer, ids)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("result", "BYTES", [4])
    assert body["model_version"] == stack.version
    v2 = [json.loads(x) for x in output["data"]]
    v1 = predict(stack.transformer, ids).json()["predictions"]
    assert without_age(v2) == without_age(v1)


def without_age(answers: list[dict]) -> list[dict]:
    return [{k: v for k, v in a.items() if k != "feature_age_seconds"} for a in answers]


def test_a_v2_predictor_gives_the_same_probabilities(stack: Stack) -> None:
    ids = stack.customers[:4]
    with stack.start_transformer(predictor_protocol="v2") as transformer:
        resp = predict(transformer, ids)
    assert resp.status_code == 200, resp.text
    got = np.array([a["churn_probability"] for a in resp.json()["predictions"]])
    np.testing.assert_allclose(got, expected_probabilities(stack, ids), rtol=0, atol=1e-6)


def test_unknown_and_stale_customers_are_answered_each_and_the_rest_scored(
    stack: Stack,
) -> None:
    known = stack.customers[0]
    resp = predict(stack.transformer, [known, "ghost", stack.stale])
    assert resp.status_code == 200, resp.text
    scored, unknown, stale = resp.json()["predictions"]
    assert 0.0 <= scored["churn_probability"] <= 1.0
    assert unknown == {"customer_id": "ghost", "error": "unknown customer"}
    assert stale["customer_id"] == stack.stale and "churn_probability" not in stale
    assert stale["error"].startswith("stale features: ")
    assert f"maximum of {MAX_AGE_HOURS:g} h" in stale["error"]
    assert abs(stale["feature_age_seconds"] - STALE_DAYS * 86400) < 3600
    # A request of only customers that cannot be scored never calls the predictor.
    resp = predict(stack.transformer, ["ghost", stack.stale])
    assert resp.status_code == 200
    assert [a["error"][:7] for a in resp.json()["predictions"]] == ["unknown", "stale f"]


def test_feature_ages_are_exported_as_a_histogram(stack: Stack) -> None:
    month = 'churn_feature_age_seconds_bucket{le="2.592e+06"}'
    year = 'churn_feature_age_seconds_bucket{le="3.1536e+07"}'
    before = [
        metric(stack.transformer, name) for name in ("churn_feature_age_seconds_count", month, year)
    ]
    predict(stack.transformer, [stack.customers[0], stack.stale, "ghost"])
    after = [
        metric(stack.transformer, name) for name in ("churn_feature_age_seconds_count", month, year)
    ]
    # Two customers had features (the unknown one has no age); one of them is 90 days old.
    assert [b - a for a, b in zip(before, after, strict=True)] == [2, 1, 2]


V1_BAD = [
    ({"rows": []}, "the request has no 'instances'"),
    ({"instances": []}, "'instances' must be a non-empty list"),
    ({"instances": [{"id": "c1"}]}, 'instance 0 must be an object with a "customer_id"'),
    ({"instances": [{"customer_id": 5}]}, "instance 0: customer_id must be a string, got int 5"),
    ({"instances": [{"customer_id": ""}]}, "instance 0: customer_id is empty"),
    ([1, 2], "the request body must be a JSON object"),
    (
        {"instances": [{"customer_id": f"c{i}"} for i in range(MAX_IDS + 1)]},
        f"{MAX_IDS + 1} customer ids, more than the limit of {MAX_IDS}",
    ),
]


@pytest.mark.parametrize(("body", "message"), V1_BAD, ids=[m[:24] for _, m in V1_BAD])
def test_bad_v1_requests_are_400_naming_the_problem_and_a_good_one_follows(
    stack: Stack, body: object, message: str
) -> None:
    resp = requests.post(stack.transformer.predict_url, json=body, timeout=30)
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["error"]
    good = predict(stack.transformer, stack.customers[:1])
    assert good.status_code == 200 and "churn_probability" in good.json()["predictions"][0]


def v2_input(**changes: object) -> dict:
    return {"name": "customer_id", "shape": [1], "datatype": "BYTES", "data": ["c1"], **changes}


V2_BAD = [
    ({"inputs": [v2_input(name="ids")]}, "no input named 'customer_id'"),
    ({"inputs": [v2_input(datatype="INT64", data=[1])]}, "must have datatype BYTES"),
    ({"inputs": [v2_input(data=[7])]}, "customer_id[0]: customer_id must be a string"),
    ({"inputs": [v2_input(shape=[2])]}, "has shape [2] but holds 1 ids"),
    ({"inputs": [v2_input(shape=[9], data=[f"c{i}" for i in range(9)])]}, "more than the limit"),
    ({"outputs": []}, "inputs: Field required"),
]


@pytest.mark.parametrize(("body", "message"), V2_BAD, ids=[m[:24] for _, m in V2_BAD])
def test_bad_v2_requests_are_400_naming_the_problem_and_a_good_one_follows(
    stack: Stack, body: dict, message: str
) -> None:
    url = f"{stack.transformer.url}/v2/models/churn/infer"
    resp = requests.post(url, json=body, timeout=30)
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["error"]
    good = predict_v2(stack.transformer, stack.customers[:1])
    assert good.status_code == 200, good.text


def test_a_body_that_is_not_json_is_400(stack: Stack) -> None:
    resp = requests.post(
        stack.transformer.predict_url,
        data=b"not json",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 400
    assert "Unrecognized request format" in resp.json()["error"]
    assert predict(stack.transformer, stack.customers[:1]).status_code == 200


def test_the_transformer_listens_on_the_loopback_interface_only(stack: Stack) -> None:
    port = stack.transformer.port
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            listening.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    assert listening == {"127.0.0.1"}


def read_log(uri: str, **s3: object) -> pd.DataFrame:
    if uri.startswith("s3://"):
        from pyarrow import fs

        filesystem = fs.S3FileSystem(**s3)  # type: ignore[arg-type]
        dataset = ds.dataset(uri.removeprefix("s3://"), filesystem=filesystem, partitioning="hive")
    else:
        dataset = ds.dataset(uri, partitioning="hive")
    return dataset.to_table().to_pandas()


@pytest.fixture(params=["folder", "s3"])
def log_store(request: pytest.FixtureRequest, stack: Stack) -> tuple[dict, dict]:
    """Transformer settings for a log in a folder or in a real S3 (moto), and how to read it."""
    if request.param == "folder":
        return {"log_uri": str(stack.root / f"log-{uuid.uuid4().hex[:8]}")}, {}
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    settings = {"log_uri": f"s3://{bucket}/inference-log", "log_endpoint_url": endpoint}
    return settings, {
        "endpoint_override": endpoint,
        "access_key": "testing",
        "secret_key": "testing",
        "region": "us-east-1",
    }


def test_the_log_holds_one_record_per_customer_served_flushed_on_shutdown(
    stack: Stack, log_store: tuple[dict, dict]
) -> None:
    settings, s3 = log_store
    a, b, c = stack.customers[:3]
    requests_sent = {"r-one": [a, b, "ghost", stack.stale], "r-two": [c], "r-three": [a]}
    answers = {}
    # A flush interval longer than the test: only the flush on shutdown writes.
    with stack.start_transformer(log_flush_seconds=3600, **settings) as transformer:
        for request_id, ids in requests_sent.items():
            resp = predict(transformer, ids, **{"x-request-id": request_id})
            assert resp.status_code == 200, resp.text
            answers[request_id] = resp.json()["predictions"]
        time.sleep(0.5)
        assert read_log_files(settings["log_uri"], s3) == 0
    log = read_log(settings["log_uri"], **s3)
    served = [
        (rid, x["customer_id"], x["churn_probability"])
        for rid, xs in answers.items()
        for x in xs
        if "churn_probability" in x
    ]
    assert len(served) == 4
    assert sorted(
        zip(log["request_id"], log["customer_id"], log["churn_probability"], strict=True)
    ) == sorted(served)
    today = pd.Timestamp.now(tz="UTC").date().isoformat()
    assert set(log["date"].astype(str)) == {today}
    assert set(log["model_version"]) == {stack.version}
    windows = summary_windows([1, 4, 13], 8)
    expected = log_schema(stack.meta["input_spec"], windows)
    files = log_files(settings["log_uri"], s3)
    schema = ds.dataset(files[0], filesystem=files[1], format="parquet").schema
    assert schema.equals(expected), schema
    # The summary is the request's: window totals and features as the model was sent them.
    row = log[log["customer_id"] == c].iloc[0]
    sent = json.loads(
        CliRunner()
        .invoke(
            app,
            [
                "features",
                "get",
                "--repo",
                str(stack.repo.path),
                "--model",
                str(stack.version_dir),
                c,
            ],
        )
        .output.strip()
    )
    for channel, values in sent["sequence"].items():
        assert row[f"seq_{channel}_sum_4"] == pytest.approx(sum(values[-4:]), rel=1e-6)
    for name, value in sent["numeric"].items():
        assert row[f"num_{name}"] == pytest.approx(value, rel=1e-6)
    for name, value in sent["categorical"].items():
        assert row[f"cat_{name}"] == value


def log_files(uri: str, s3: dict) -> tuple[list[str], object]:
    from pyarrow import fs

    if uri.startswith("s3://"):
        filesystem = fs.S3FileSystem(**s3)  # type: ignore[arg-type]
        selector = fs.FileSelector(uri.removeprefix("s3://"), recursive=True, allow_not_found=True)
    else:
        filesystem = fs.LocalFileSystem()
        selector = fs.FileSelector(uri, recursive=True, allow_not_found=True)
    paths = [i.path for i in filesystem.get_file_info(selector) if i.path.endswith(".parquet")]
    return paths, filesystem


def read_log_files(uri: str, s3: dict) -> int:
    return len(log_files(uri, s3)[0])


class Hanging:
    """A TCP port that accepts connections into its backlog and never answers: a slow store."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("store", ["unwritable-folder", "s3-down", "s3-hanging"])
def test_a_failing_or_slow_log_store_never_fails_or_delays_predictions(
    stack: Stack, store: str, aws_test_credentials: None
) -> None:
    hanging = Hanging()
    blocker = stack.root / f"file-{uuid.uuid4().hex[:8]}"
    blocker.write_text("a file where the log's folder should be")
    settings: dict[str, object] = {
        "unwritable-folder": {"log_uri": str(blocker / "log")},
        "s3-down": {
            "log_uri": "s3://logs/x",
            "log_endpoint_url": f"http://127.0.0.1:{free_port()}",
        },
        "s3-hanging": {"log_uri": "s3://logs/x", "log_endpoint_url": hanging.url},
    }[store]
    # A queue of 4 records: a store that hangs fills it within a few requests.
    with stack.start_transformer(log_queue_size=4, log_batch_size=2, **settings) as transformer:
        try:
            for _ in range(5):
                started = time.monotonic()
                resp = predict(transformer, stack.customers[:3])
                assert resp.status_code == 200, resp.text
                assert time.monotonic() - started < 2.0
            dropped = 'churn_inference_log_dropped_records_total{reason="%s"}'
            deadline = time.monotonic() + 30
            reason = "queue_full" if store == "s3-hanging" else "write_failed"
            while metric(transformer, dropped % reason) == 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert metric(transformer, dropped % reason) > 0
            assert metric(transformer, "churn_inference_log_written_records_total") == 0
        finally:
            # Connections waiting in the backlog are reset: the writer's call fails at once.
            hanging.close()


class StubPredictor(http.server.ThreadingHTTPServer):
    """A predictor on 127.0.0.1 that answers what the test sets."""

    def __init__(self, port: int) -> None:
        self.status, self.body, self.delay = 200, b"{}", 0.0
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(stub.delay)
                self.send_response(stub.status)
                self.send_header("Content-Length", str(len(stub.body)))
                self.end_headers()
                self.wfile.write(stub.body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()


def test_a_predictor_that_fails_gives_502_or_503_with_the_reason(stack: Stack) -> None:
    port = free_port()
    with stack.start_transformer(
        predictor_host=f"127.0.0.1:{port}", predictor_timeout_seconds=1.0
    ) as transformer:
        resp = predict(transformer, stack.customers[:2])
        assert resp.status_code == 503
        assert (
            f"the predictor at http://127.0.0.1:{port}/v1/models/churn:predict cannot be reached"
            in resp.json()["error"]
        )
        stub = StubPredictor(port)
        try:
            stub.status, stub.body = 500, b'{"message": "worker died"}'
            resp = predict(transformer, stack.customers[:2])
            assert resp.status_code == 502
            assert 'answered 500: {"message": "worker died"}' in resp.json()["error"]
            stub.status, stub.body = 503, b"no worker"
            assert predict(transformer, stack.customers[:2]).status_code == 503
            stub.status, stub.body = 200, b'{"predictions": [{"churn_probability": 0.5}]}'
            resp = predict(transformer, stack.customers[:2])
            assert resp.status_code == 502
            assert "does not fit: 1 results for 2 instances" in resp.json()["error"]
            stub.delay = 2.0
            resp = predict(transformer, stack.customers[:1])
            assert resp.status_code == 503
            assert "did not answer within 1 s" in resp.json()["error"]
        finally:
            stub.shutdown()
            stub.server_close()


def test_deploy_smoke_test_takes_its_request_from_the_online_store(
    stack: Stack, tmp_path: Path
) -> None:
    from churn.release.deploy import deploy_version, online_instance, sample_instance
    from churn.settings import ServingConfig

    cfg = RegistryConfig(uri=str(stack.registry.root), model_name="churn")
    result = deploy_version(
        "local", stack.version, cfg, ServingConfig(), stack.dataset, feature_repo=stack.repo.path
    )
    customer, _ = sample_instance(stack.dataset)
    assert result["request_source"] == "online store" and result["customer_id"] == customer
    expected = expected_probabilities(stack, [customer])[0]
    assert result["prediction"]["churn_probability"] == pytest.approx(expected, abs=1e-6)
    # A store never materialized: no online request, so deploy_version keeps the training
    # set's row, as before.
    fresh = tmp_path / "repo"
    shutil.copytree(stack.repo.path, fresh, ignore=shutil.ignore_patterns("online_store.db"))
    instance, why = online_instance(fresh, stack.meta["input_spec"], customer)
    assert instance is None and "run `churn features materialize`" in why


def test_churn_predict_prints_one_line_per_customer(stack: Stack) -> None:
    ids = [stack.customers[0], "ghost"]
    for protocol in ("v1", "v2"):
        result = CliRunner().invoke(
            app,
            [
                "predict",
                "--url",
                stack.transformer.url,
                "--protocol",
                protocol,
                "--customer-id",
                *ids,
            ],
        )
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in result.output.strip().splitlines()]
        assert [x["customer_id"] for x in lines] == ids
        assert lines[0]["model_version"] == stack.version
        assert lines[1] == {"customer_id": "ghost", "error": "unknown customer"}
    result = CliRunner().invoke(
        app,
        ["predict", "--url", stack.transformer.url, "--customer-id", *[f"c{i}" for i in range(9)]],
    )
    assert result.exit_code != 0
    assert "more than the limit of 8" in str(result.exception)


def test_churn_serve_runs_predictor_and_transformer_until_sigterm(stack: Stack) -> None:
    home = stack.root / f"home-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    (home / "feature_repo").symlink_to(stack.repo.path)
    ports = {name: free_port() for name in ("inference", "management", "metrics", "transformer")}
    env = {
        **os.environ,
        "CHURN_HOME": str(home),
        "CHURN_REGISTRY__URI": str(stack.registry.root),
        "CHURN_SERVING__INFERENCE_PORT": str(ports["inference"]),
        "CHURN_SERVING__MANAGEMENT_PORT": str(ports["management"]),
        "CHURN_SERVING__METRICS_PORT": str(ports["metrics"]),
        "CHURN_TRANSFORMER__PORT": str(ports["transformer"]),
        "CHURN_TRANSFORMER__LOG_FLUSH_SECONDS": "3600",
    }
    churn = [sys.executable, "-c", "from churn.cli import run; run()"]
    proc = subprocess.Popen(
        [*churn, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{ports['transformer']}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if requests.get(f"{url}/v1/models/churn", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        out = subprocess.run(
            [*churn, "predict", "--customer-id", stack.customers[0]],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["model_version"] == stack.version
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    assert f"by customer id: POST {url}/v1/models/churn:predict" in output
    # SIGTERM stopped the transformer cleanly: the one record it held was flushed.
    assert len(read_log(str(home / "inference_log"))) == 1
