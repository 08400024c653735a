"""The kind-e2e flow: a pipeline run on the kind cluster, the served model, the monitor.

Needs the cluster that ``make kind-up kind-load kind-deploy`` builds; ``make kind-e2e`` runs
this folder with ``CHURN_TEST_CLUSTER=1``. Elsewhere every test skips with that reason. The
tests reach the cluster through ``kubectl port-forward`` (KFP's API, the model's Service), as a
user on a laptop would.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

RUN_TIMEOUT_S = 3600
pytestmark = [
    pytest.mark.cluster,
    # The first test's fixtures run both pipelines and the first KServe rollout.
    pytest.mark.timeout(2 * RUN_TIMEOUT_S + 1200),
    pytest.mark.skipif(
        os.environ.get("CHURN_TEST_CLUSTER") != "1",
        reason="needs the kind cluster: make kind-up kind-load kind-deploy, then make kind-e2e "
        "(which sets CHURN_TEST_CLUSTER=1)",
    ),
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUCKET = os.environ.get("CHURN_BUCKET", "churn")
# KFP 2.17's SeaweedFS as the pods reach it (Service seaweedfs; minio-service is gone).
STORE_IN_CLUSTER = "http://seaweedfs.kubeflow:8333"
SYNTH = "synth:customers=2000,days=400,seed=7"


def kind_settings() -> dict[str, str]:
    """manifests/kind/overlay/kind.env: the endpoints, CPU training and the shared feature
    store (the churn-features volume, the churn-feast Secret) that kind-deploy set up."""
    lines = (PROJECT_ROOT / "manifests/kind/overlay/kind.env").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key: value for key, value in pairs}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def port_forward(namespace: str, target: str, remote: int) -> Iterator[str]:
    """``kubectl port-forward`` to ``target``; yields ``http://127.0.0.1:<port>``."""
    port = free_port()
    proc = subprocess.Popen(
        ["kubectl", "-n", namespace, "port-forward", target, f"{port}:{remote}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, f"port-forward to {namespace}/{target} not up"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def churn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from churn.cli import run; run()", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def kfp_host() -> Iterator[str]:
    assert shutil.which("kubectl"), "kubectl is needed to reach the kind cluster"
    with port_forward("kubeflow", "svc/ml-pipeline", 8888) as url:
        yield url


def submit_and_wait(kfp_host: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """One run submitted as a user would (``churn pipeline submit``), waited for."""
    import kfp

    done = churn("pipeline", "submit", "--host", kfp_host, *args, env=env)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().rsplit("(", 1)[1].split(")")[0]
    run = kfp.Client(host=kfp_host).wait_for_run_completion(run_id, timeout=RUN_TIMEOUT_S)
    return {"id": run_id, "state": run.state}


@pytest.fixture(scope="module")
def features_run(kfp_host: str) -> dict:
    """The feature pipeline: the shared store's snapshots up to now, and Redis filled with the
    latest, which the transformer reads when it is called by customer id."""
    return submit_and_wait(
        kfp_host,
        "--pipeline", "features",
        "--run-name", f"kind-e2e-features-{int(time.time())}",
        "--data", SYNTH,
        # A snapshot at the time of the run: the transformer refuses features older than
        # CHURN_TRANSFORMER__MAX_FEATURE_AGE_HOURS (manifests/base).
        "--observed-until", "now",
        env=kind_settings(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(kfp_host: str, features_run: dict) -> dict:
    """One run of the training pipeline on the shared store, released to KServe."""
    assert features_run["state"] == "SUCCEEDED", features_run
    return submit_and_wait(
        kfp_host,
        "--run-name", f"kind-e2e-{int(time.time())}",
        "--data", SYNTH,
        "--epochs", "2",
        "--auc-threshold", "0.5",
        "--registry-uri", f"s3://{BUCKET}/registry",
        "--data-endpoint-url", STORE_IN_CLUSTER,
        "--deploy-target", "kserve",
        env=kind_settings(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def known_customer(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A customer of the synthetic log (the generator is deterministic), so in the store."""
    import pandas as pd

    from churn.data.sources import resolve_data
    from churn.settings import FeatureConfig

    source = resolve_data(SYNTH, tmp_path_factory.mktemp("synth"), FeatureConfig())
    return str(pd.read_parquet(source.transactions, columns=["customer_id"]).iloc[0, 0])


def test_the_pipeline_run_succeeds_on_the_cluster(finished_run: dict) -> None:
    assert finished_run["state"] == "SUCCEEDED", finished_run


def inference_service() -> dict:
    out = subprocess.run(
        ["kubectl", "-n", "churn", "get", "inferenceservice", "churn", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_the_released_model_answers_through_its_service(finished_run: dict) -> None:
    assert finished_run["state"] == "SUCCEEDED"
    isvc = inference_service()
    ready = {c["type"]: c["status"] for c in isvc["status"]["conditions"]}
    assert ready.get("Ready") == "True", isvc["status"]
    with (
        port_forward("churn", "svc/churn-predictor", 80) as url,
        urllib.request.urlopen(f"{url}/v1/models/churn", timeout=30) as reply,
    ):
        assert json.loads(reply.read())["ready"] is True


def ask_transformer(customer_ids: list[str]) -> list[dict]:
    """The transformer's answers for ``customer_ids``, called as an application would."""
    body = json.dumps({"instances": [{"customer_id": c} for c in customer_ids]}).encode()
    with port_forward("churn", "svc/churn-transformer", 80) as url:
        request = urllib.request.Request(
            f"{url}/v1/models/churn:predict",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())["predictions"]


def test_the_transformer_scores_a_customer_by_id(finished_run: dict, known_customer: str) -> None:
    isvc = inference_service()
    assert "transformer" in isvc["spec"], "the release creates the service with a transformer"
    scored, unknown = ask_transformer([known_customer, "nobody"])
    # The feature pipeline's snapshot, read from Redis: scored, not "unknown" or "stale".
    assert scored["customer_id"] == known_customer and "error" not in scored, scored
    assert 0.0 <= float(scored["churn_probability"]) <= 1.0, scored
    assert unknown == {"customer_id": "nobody", "error": "unknown customer"}


def store_credentials() -> dict[str, str]:
    """SeaweedFS's own keys (kind.sh copies them into churn-s3 too)."""
    out = {}
    for key, field in (("AWS_ACCESS_KEY_ID", "accesskey"), ("AWS_SECRET_ACCESS_KEY", "secretkey")):
        done = subprocess.run(
            ["kubectl", "-n", "kubeflow", "get", "secret", "mlpipeline-minio-artifact", "-o",
             f"jsonpath={{.data.{field}}}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        out[key] = base64.b64decode(done.stdout).decode()
    return out


def test_the_monitor_runs_against_the_inference_log(
    finished_run: dict, known_customer: str
) -> None:
    # Traffic of its own (the test may run alone), then the transformer's log_flush_seconds
    # (5) and some: the calls are in the log.
    ask_transformer([known_customer])
    time.sleep(15)
    with port_forward("kubeflow", "svc/seaweedfs", 8333) as store:
        done = churn(
            "monitor",
            "drift",
            "--hours",
            "24",
            env={
                **store_credentials(),
                "CHURN_REGISTRY__URI": f"s3://{BUCKET}/registry",
                "CHURN_REGISTRY__ENDPOINT_URL": store,
                "CHURN_MONITOR__LOG_URI": "s3://churn-models/inference-log",
                "CHURN_MONITOR__ENDPOINT_URL": store,
            },
        )
    assert done.returncode == 0, done.stderr
    assert "decision:" in done.stdout, done.stdout
