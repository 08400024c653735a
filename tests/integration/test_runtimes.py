"""Both runtimes give the same answers: a real TorchServe and the real KServe predictor.

One registry version of a tiny trained model is served by TorchServe (from its archive) and by
the KServe predictor (from the version's folder, marker included, as KServe's storage
initializer copies it), each on free loopback ports. Every request goes to both, and the test
requires the same status, the same fields and probabilities (to 1e-6), and for a client error
the same message. No message is written down here: a fix to the shared handler (or to
``churn/model/network.py``) reaches both runtimes, and this file keeps checking that it does.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from churn.dataset.training_set import load_training_set
from churn.model.network import encode_instances, load_model, predict_proba
from churn.model.train import train
from churn.release.registry import LocalRegistry
from churn.release.torchserve import LocalTorchServe
from churn.settings import ModelConfig, TrainConfig
from serving.local_kserve import LocalKServePredictor

pytestmark = pytest.mark.slow

JSON = {"Content-Type": "application/json"}
TOLERANCE = 1e-6


@dataclass
class Runtimes:
    torchserve: LocalTorchServe
    kserve: LocalKServePredictor
    version: str
    instances: list[dict]

    def urls(self, protocol: str) -> tuple[str, str]:
        """The predict (``v1``) or infer (``v2``) URLs of TorchServe and of the predictor."""
        if protocol == "v1":
            return self.torchserve.predict_url, self.kserve.predict_url
        return f"{self.torchserve.addresses.inference}/v2/models/churn/infer", self.kserve.infer_url

    def post(self, protocol: str, body: bytes) -> tuple[requests.Response, requests.Response]:
        """The same request to both runtimes."""
        ts, ks = (
            requests.post(url, data=body, headers=JSON, timeout=30) for url in self.urls(protocol)
        )
        return ts, ks


@pytest.fixture(scope="module")
def runtimes(
    tmp_path_factory: pytest.TempPathFactory, make_training_set: Callable[..., Path]
) -> Iterator[Runtimes]:
    if shutil.which("java") is None:
        pytest.skip("TorchServe needs Java 17 (java is not on PATH)")
    root = tmp_path_factory.mktemp("runtimes")
    dataset = make_training_set(root, n=300)
    train(
        dataset,
        root / "model",
        ModelConfig(hidden=8, dilations=[1, 2]),
        TrainConfig(epochs=1, batch_size=64, device="cpu"),
    )
    registry = LocalRegistry(root / "registry", "churn")
    version = registry.publish(root / "model", {"roc_auc": 0.5}).version
    # The version's own folder: the archive for TorchServe; model/ and _COMPLETE (which
    # names the version) for the predictor.
    version_dir = Path(registry.storage_uri(version))
    meta = json.loads((dataset / "meta.json").read_text())
    test = load_training_set(dataset, splits=("test",)).splits["test"]
    vocab = meta["categorical_features"]["segment"]
    instances = [
        {
            "sequence": {ch: test.seq[i, c].tolist() for c, ch in enumerate(meta["channels"])},
            "numeric": {f: float(test.num[i, j]) for j, f in enumerate(meta["numeric_features"])},
            "categorical": {"segment": vocab[test.cat[i, 0]]},
        }
        for i in range(8)
    ]
    with (
        LocalTorchServe(version_dir / "model-store", workdir=root / "ts") as torchserve,
        LocalKServePredictor(version_dir, workdir=root / "kserve") as kserve,
    ):
        yield Runtimes(torchserve, kserve, version, instances)


def v1(instances: list) -> bytes:
    return json.dumps({"instances": instances}).encode()


def v2(instances: list, request_id: str | None = "r1") -> bytes:
    body: dict = {
        "inputs": [
            {"name": f"customer-{i}", "shape": [1], "datatype": "BYTES", "data": [json.dumps(x)]}
            for i, x in enumerate(instances)
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    return json.dumps(body).encode()


def results(body: dict) -> list[dict]:
    """The per-instance results of a v1 or v2 response."""
    if "predictions" in body:
        return body["predictions"]
    return [json.loads(output["data"][0]) for output in body["outputs"]]


def assert_same_results(ts: list[dict], ks: list[dict]) -> None:
    assert len(ts) == len(ks) > 0
    for a, b in zip(ts, ks, strict=True):
        assert set(a) == set(b) == {"churn_probability", "churned", "model_version"}
        assert abs(a["churn_probability"] - b["churn_probability"]) <= TOLERANCE
        assert (a["churned"], a["model_version"]) == (b["churned"], b["model_version"])


def assert_same_answer(ts: requests.Response, ks: requests.Response) -> None:
    """Same status; for a success the same body, for a client error the same message."""
    if ts.status_code >= 500 and ks.status_code >= 500:
        # Each framework words its own server errors; neither is a contract with clients.
        return
    assert ks.status_code == ts.status_code, (ts.text, ks.text)
    if ts.status_code != 200:
        # TorchServe's error body is {"code", "type", "message"}, KServe's {"error"}.
        assert ts.json()["message"] == ks.json()["error"]
        return
    a, b = ts.json(), ks.json()
    assert_same_results(results(a), results(b))
    if "outputs" in a:
        assert {k: v for k, v in a.items() if k != "outputs"} == {
            k: v for k, v in b.items() if k != "outputs"
        }
        strip = [{k: v for k, v in o.items() if k != "data"} for o in a["outputs"]]
        assert strip == [{k: v for k, v in o.items() if k != "data"} for o in b["outputs"]]


def test_several_customers_get_the_same_answers_over_v1(runtimes: Runtimes) -> None:
    ts, ks = runtimes.post("v1", v1(runtimes.instances))
    assert ts.status_code == 200, ts.text
    assert_same_answer(ts, ks)
    predictions = ks.json()["predictions"]
    assert len(predictions) == 8
    assert {p["model_version"] for p in predictions} == {runtimes.version}
    # Not a constant: the comparison is between real, different probabilities.
    assert len({round(p["churn_probability"], 6) for p in predictions}) > 1


@pytest.mark.parametrize("request_id", ["r1", None], ids=["with-id", "without-id"])
def test_several_customers_get_the_same_answers_over_v2(
    runtimes: Runtimes, request_id: str | None
) -> None:
    ts, ks = runtimes.post("v2", v2(runtimes.instances, request_id))
    assert ts.status_code == 200, ts.text
    assert_same_answer(ts, ks)
    body = ks.json()
    assert [o["name"] for o in body["outputs"]] == [f"customer-{i}" for i in range(8)]
    assert body["model_version"] == runtimes.version
    assert body.get("id") == request_id


def test_v1_and_v2_agree_within_each_runtime(runtimes: Runtimes) -> None:
    few = runtimes.instances[:3]
    for one_url, two_url in zip(runtimes.urls("v1"), runtimes.urls("v2"), strict=True):
        one = requests.post(one_url, data=v1(few), headers=JSON, timeout=30)
        two = requests.post(two_url, data=v2(few), headers=JSON, timeout=30)
        assert results(one.json()) == results(two.json())


def edited(instances: list[dict], index: int, change: Callable[[dict], None]) -> list[dict]:
    """A deep copy of the instances with ``change`` applied to one of them."""
    copy = json.loads(json.dumps(instances))
    change(copy[index])
    return copy


def drop(*keys: str) -> Callable[[dict], None]:
    def change(inst: dict) -> None:
        node = inst
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return change


def put(value: object, *keys: str) -> Callable[[dict], None]:
    def change(inst: dict) -> None:
        node = inst
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


def raw_number(literal: str, *keys: str) -> Callable[[list[dict]], bytes]:
    """A v1 body whose value at ``keys`` of instance 1 is a JSON literal json.dumps won't write."""

    def body(instances: list[dict]) -> bytes:
        text = json.dumps({"instances": edited(instances, 1, put("@@", *keys))})
        return text.replace('"@@"', literal).encode()

    return body


def v2_input(**fields: object) -> Callable[[list[dict]], bytes]:
    def body(instances: list[dict]) -> bytes:
        item = {"name": "c", "shape": [1], "datatype": "BYTES", "data": [json.dumps(instances[0])]}
        item.update(fields)
        return json.dumps({"inputs": [item]}).encode()

    return body


def seq_of(length: int) -> Callable[[dict], None]:
    return put([1.0] * length, "sequence", "n_txn")


# (protocol, body builder, whether the answer must be a 400). A builder takes the fixture's
# good instances. `None` means the two runtimes must agree, whatever they answer.
BAD = {
    # missing fields
    "no-sequence": ("v1", lambda x: v1(edited(x, 1, drop("sequence"))), True),
    "no-channel": ("v1", lambda x: v1(edited(x, 1, drop("sequence", "spend"))), True),
    "no-numeric": ("v1", lambda x: v1(edited(x, 1, drop("numeric"))), True),
    "no-numeric-feature": ("v1", lambda x: v1(edited(x, 0, drop("numeric", "frequency"))), True),
    "no-instances-key": ("v1", lambda x: json.dumps({"rows": x}).encode(), True),
    "v2-input-without-data": ("v2", lambda x: b'{"inputs": [{"name": "x"}]}', True),
    # wrong types
    "numeric-string": (
        "v1",
        lambda x: v1(edited(x, 1, put("ten", "numeric", "tenure_days"))),
        True,
    ),
    "numeric-bool": ("v1", lambda x: v1(edited(x, 1, put(True, "numeric", "frequency"))), True),
    "sequence-not-object": ("v1", lambda x: v1(edited(x, 0, put([1, 2], "sequence"))), True),
    "channel-not-list": ("v1", lambda x: v1(edited(x, 0, put("1,2", "sequence", "n_txn"))), True),
    "value-in-channel": (
        "v1",
        lambda x: v1(edited(x, 0, put(["a"] * 16, "sequence", "n_txn"))),
        True,
    ),
    "categorical-not-object": ("v1", lambda x: v1(edited(x, 0, put("a", "categorical"))), True),
    "instance-not-object": ("v1", lambda x: v1([x[0], 7]), True),
    "instances-not-list": ("v1", lambda x: json.dumps({"instances": x[0]}).encode(), True),
    "v2-fp32": ("v2", v2_input(datatype="FP32"), True),
    "v2-data-not-json": ("v2", v2_input(data=["{not json"]), True),
    "v2-data-not-object": ("v2", v2_input(data=["[1, 2]"]), True),
    "v2-two-elements": ("v2", v2_input(data=["{}", "{}"]), True),
    "v2-input-not-object": ("v2", lambda x: b'{"inputs": ["x"]}', True),
    # NaN, infinities and numbers beyond float32 or float64
    "nan": ("v1", raw_number("NaN", "numeric", "frequency"), True),
    "infinity": ("v1", raw_number("-Infinity", "numeric", "tenure_days"), True),
    "beyond-float64": ("v1", raw_number("1e400", "numeric", "frequency"), True),
    "huge-integer": ("v1", raw_number("1" + "0" * 400, "numeric", "frequency"), True),
    "beyond-float32": ("v1", lambda x: v1(edited(x, 1, put(1e39, "numeric", "frequency"))), True),
    "nan-in-sequence": (
        "v1",
        lambda x: v1(edited(x, 0, put([float("nan")] * 16, "sequence", "spend"))),
        True,
    ),
    "overflow-inside-the-model": (
        "v1",
        lambda x: v1(
            edited(x, 1, lambda i: i.update(sequence={c: [3e38] * 16 for c in i["sequence"]}))
        ),
        True,
    ),
    # wrong sequence lengths
    "sequence-too-short": ("v1", lambda x: v1(edited(x, 1, seq_of(15))), True),
    "sequence-too-long": ("v1", lambda x: v1(edited(x, 1, seq_of(17))), True),
    "sequence-empty": ("v1", lambda x: v1(edited(x, 1, seq_of(0))), True),
    # malformed JSON
    "not-json": ("v1", lambda x: b"not json", True),
    "truncated": ("v1", lambda x: v1(x)[:-7], True),
    "not-utf8": ("v1", lambda x: b'{"instances": ["\xff\xfe"]}', True),
    "json-array": ("v1", lambda x: b"[1, 2]", True),
    "json-null": ("v1", lambda x: b"null", True),
    "empty-body": ("v1", lambda x: b"", True),
    "v2-malformed": ("v2", lambda x: b'{"inputs": [', True),
    # empty instances
    "empty-instances": ("v1", lambda x: b'{"instances": []}', True),
    "empty-inputs": ("v2", lambda x: b'{"inputs": []}', True),
    "empty-object": ("v1", lambda x: b"{}", True),
    # Being hardened in the shared handler: both runtimes must follow together.
    "negative-values": (
        "v1",
        lambda x: v1(edited(x, 0, put([-1.0] * 16, "sequence", "n_txn"))),
        None,
    ),
    "deeply-nested": (
        "v1",
        lambda x: b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        None,
    ),
}
# Answered with a probability by both: a category the model never saw maps to "unknown".
ODD_BUT_VALID = {
    "unknown-category": ("v1", lambda x: v1(edited(x, 0, put("zz-new", "categorical", "segment")))),
    "missing-category": ("v1", lambda x: v1(edited(x, 0, drop("categorical")))),
    "category-not-string": ("v1", lambda x: v1(edited(x, 0, put(3, "categorical", "segment")))),
    "extra-fields": ("v1", lambda x: v1(edited(x, 0, put({"a": 1}, "extra")))),
    "v2-unknown-category": ("v2", lambda x: v2(edited(x, 0, put("zz", "categorical", "segment")))),
    "v1-body-on-v2-url": ("v2", lambda x: v1(x[:2])),
}


def assert_good_request_succeeds(runtimes: Runtimes) -> None:
    ts, ks = runtimes.post("v1", v1(runtimes.instances[:2]))
    assert (ts.status_code, ks.status_code) == (200, 200), (ts.text, ks.text)
    assert_same_answer(ts, ks)


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_request_gets_the_same_answer_from_both_then_a_good_one_succeeds(
    runtimes: Runtimes, case: str
) -> None:
    protocol, build, must_be_400 = BAD[case]
    ts, ks = runtimes.post(protocol, build(runtimes.instances))
    if must_be_400:
        assert (ts.status_code, ks.status_code) == (400, 400), (ts.text, ks.text)
    assert_same_answer(ts, ks)
    assert_good_request_succeeds(runtimes)


@pytest.mark.parametrize("case", sorted(ODD_BUT_VALID))
def test_an_odd_but_valid_request_gets_the_same_probabilities(
    runtimes: Runtimes, case: str
) -> None:
    protocol, build = ODD_BUT_VALID[case]
    ts, ks = runtimes.post(protocol, build(runtimes.instances))
    assert (ts.status_code, ks.status_code) == (200, 200), (ts.text, ks.text)
    assert_same_answer(ts, ks)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/octet-stream", None, "application/json; charset=utf-8"],
    ids=str,
)
def test_a_json_body_is_read_whatever_its_content_type(
    runtimes: Runtimes, content_type: str | None
) -> None:
    # TorchServe's worker decodes a text/* body to a string before the handler sees it, and
    # the handler used to refuse a string ("must be a JSON object, got str").
    headers = {"Content-Type": content_type} if content_type else {}
    body = v1(runtimes.instances[:2])
    ts, ks = (
        requests.post(url, data=body, headers=headers, timeout=30) for url in runtimes.urls("v1")
    )
    assert (ts.status_code, ks.status_code) == (200, 200), (ts.text, ks.text)
    assert_same_answer(ts, ks)


def predict_count(metrics: str) -> float:
    """How many predictions KServe's histogram has timed (0 before the first one)."""
    for line in metrics.splitlines():
        if line.startswith('request_predict_seconds_count{model_name="churn"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_predictor_exports_prometheus_metrics(runtimes: Runtimes) -> None:
    before = predict_count(requests.get(runtimes.kserve.metrics_url, timeout=10).text)
    for _ in range(3):
        runtimes.kserve.predict(runtimes.instances[:1])
    text = requests.get(runtimes.kserve.metrics_url, timeout=10).text
    assert predict_count(text) == before + 3
    for stage in ("preprocess", "predict", "postprocess"):
        assert f'request_{stage}_seconds_bucket{{le="0.005",model_name="churn"}}' in text


def test_the_predictor_listens_on_the_loopback_address_only(runtimes: Runtimes) -> None:
    assert runtimes.kserve.url.startswith("http://127.0.0.1:")
    # 127.0.0.2 is on the loopback interface too, so a server bound to 0.0.0.0 would
    # accept it; one bound to 127.0.0.1 refuses.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", runtimes.kserve.port), timeout=5).close()


def test_the_runtime_manifests_readiness_probe_answers_ready(runtimes: Runtimes) -> None:
    manifest = Path(__file__).resolve().parents[2] / "manifests/components/kserve-runtime"
    runtime = yaml.safe_load((manifest / "servingruntime.yaml").read_text())
    (container,) = runtime["spec"]["containers"]
    path = container["readinessProbe"]["httpGet"]["path"]
    resp = requests.get(f"{runtimes.kserve.url}{path}", timeout=10)
    assert resp.status_code == 200 and resp.json() == {"ready": True}


def test_the_model_cannot_be_unloaded_over_the_inference_port(runtimes: Runtimes) -> None:
    for action in ("unload", "load"):
        resp = requests.post(
            f"{runtimes.kserve.url}/v2/repository/models/churn/{action}", timeout=10
        )
        assert resp.status_code == 501, resp.text
    assert requests.get(f"{runtimes.kserve.url}/v2/models/churn/ready", timeout=10).json()["ready"]
    assert_good_request_succeeds(runtimes)


def test_probabilities_match_the_model_in_process(runtimes: Runtimes) -> None:
    model, meta = load_model(runtimes.kserve.version_dir / "model")
    tensors = encode_instances(runtimes.instances, meta["input_spec"])
    expected = predict_proba(model, *tensors).numpy()
    got = np.array([p["churn_probability"] for p in runtimes.kserve.predict(runtimes.instances)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
