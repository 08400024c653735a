"""Deploying the champion to a real KServe cluster (``make test-cluster``).

Needs ``CHURN_TEST_CLUSTER=1``, a kubeconfig whose namespace (``CHURN_SERVING__NAMESPACE``,
default ``churn``) holds the base manifests and the ``churn-s3`` Secret, and an S3 registry
(``CHURN_REGISTRY__URI=s3://...``) with a promoted champion.
"""

from __future__ import annotations

import os

import pytest

from churn.errors import RolloutError
from churn.release.kserve_deploy import build_inference_service, deploy
from churn.release.registry import open_registry
from churn.settings import load_settings

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        os.environ.get("CHURN_TEST_CLUSTER") != "1",
        reason="needs a Kubernetes cluster with KServe: set CHURN_TEST_CLUSTER=1",
    ),
]
NAME = "churn-cluster-test"


def test_champion_deploys_and_a_version_that_cannot_load_is_rolled_back() -> None:
    from kserve import KServeClient

    cfg = load_settings()
    champion = open_registry(cfg.registry).champion()
    # Only reached with CHURN_TEST_CLUSTER=1: a cluster run that tested nothing must not pass.
    assert champion is not None, (
        f"no champion in the registry {cfg.registry.uri}: run the pipeline first "
        "(churn pipeline submit ... --registry-uri s3://...)"
    )
    isvc = build_inference_service(NAME, champion.storage_uri, cfg.serving)
    namespace = cfg.serving.namespace
    client = KServeClient()
    try:
        # deploy() returns once the predictor Deployment has rolled the version out.
        rollout = deploy(isvc, namespace, timeout_s=600, poll_s=5)
        assert (rollout["outcome"], rollout["previous_storage_uri"]) == ("succeeded", None)
        assert client.is_isvc_ready(NAME, namespace=namespace)
        # A second deploy of the same object patches it instead of failing on the name.
        assert deploy(isvc, namespace, timeout_s=60, poll_s=5)["outcome"] == "succeeded"
        # A storageUri with nothing behind it: the storage initializer fails, the step restores
        # the champion and waits for it.
        missing = build_inference_service(
            NAME, f"{champion.storage_uri.rstrip('/')}-missing", cfg.serving
        )
        with pytest.raises(RolloutError) as caught:
            deploy(missing, namespace, timeout_s=300, poll_s=5)
        assert caught.value.rollout["rolled_back"] and caught.value.rollout["rollback_ready"]
        stored = client.get(NAME, namespace=namespace)
        assert stored["spec"]["predictor"]["model"]["storageUri"] == champion.storage_uri
        assert client.is_isvc_ready(NAME, namespace=namespace)
    finally:
        client.delete(NAME, namespace=namespace)
