"""Readiness-gated KServe rollouts and rollback, against a stand-in Kubernetes API.

The deploy step runs unchanged: the kserve SDK reaches ``tests/stub_kube_api.py`` on 127.0.0.1
through a kubeconfig, and the registry is a real S3 endpoint (KServe needs an ``s3://``
storageUri). The stub's controller answers as KServe does in Standard mode, stale status
included, so a deploy that trusted the first Ready it saw would fail these tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churn.cli import app
from churn.errors import ServingError
from churn.release.deploy import deploy_version
from churn.release.registry import Registry, open_registry
from churn.settings import RegistryConfig, ServingConfig

NS = "churn"
NAME = "churn"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> list[Path]:
    root = tmp_path_factory.mktemp("models")
    return [tiny_model(root / f"m{i}", i) for i in range(2)]


@pytest.fixture
def registry_cfg(s3_bucket: str, s3_endpoint: str) -> RegistryConfig:
    return RegistryConfig(uri=f"s3://{s3_bucket}/team", endpoint_url=s3_endpoint, model_name=NAME)


@pytest.fixture
def registry(registry_cfg: RegistryConfig, models: list[Path]) -> Registry:
    registry = open_registry(registry_cfg)
    for i, model in enumerate(models):
        registry.publish(model, {"roc_auc": 0.8 + i / 100}, version=f"v{i + 1}")
    return registry


def serving(timeout_s: float = 5.0) -> ServingConfig:
    return ServingConfig(namespace=NS, rollout_timeout_seconds=timeout_s, rollout_poll_seconds=0.01)


def release(
    registry: Registry, registry_cfg: RegistryConfig, version: str, timeout_s: float = 5.0
) -> dict:
    """What the pipeline does: promote, then deploy the champion."""
    registry.promote(version)
    return deploy_version("kserve", version, registry_cfg, serving(timeout_s), ".")


def during_rollout(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> None:
    """Runs ``action`` as the next KServe rollout starts: what another process does meanwhile."""
    import churn.release.kserve_deploy as kserve_deploy

    real_deploy = kserve_deploy.deploy

    def deploy(*args, **kwargs):
        action()
        return real_deploy(*args, **kwargs)

    monkeypatch.setattr(kserve_deploy, "deploy", deploy)


def served_uri(kube_api) -> str:
    return kube_api.get(NS, NAME)["spec"]["predictor"]["model"]["storageUri"]


def assert_only_storage_patched(kube_api) -> None:
    for _, _, body in kube_api.calls("PATCH"):
        model = body["spec"]["predictor"]["model"]
        assert set(body["spec"]["predictor"]) == {"model"}
        # Not the model's name (KServe 0.16+ refuses one), nor its format or runtime, which
        # belong to whoever applied the service (production-kserve serves format "churn").
        assert set(model) == {"storageUri"}
        # The service the deploy created has a transformer: its storageUris name the same
        # version, and nothing else of it is sent.
        assert set(body["spec"]) == {"predictor", "transformer"}
        assert body["spec"]["transformer"] == {
            "storageUris": [{"uri": model["storageUri"], "mountPath": "/mnt/models"}]
        }


def test_a_good_version_is_waited_for_until_its_rollout_finishes(
    kube_api, registry: Registry, registry_cfg: RegistryConfig
) -> None:
    first = release(registry, registry_cfg, "v1")
    assert first["previous"] is None
    # Created: the stub's Deployment needed lag + ready_after status reads to finish.
    assert kube_api.gets_since_change(NS, NAME) == kube_api.lag + kube_api.ready_after

    result = release(registry, registry_cfg, "v2")
    assert result["previous"] == "v1" and result["storage_uri"] == registry.storage_uri("v2")
    assert served_uri(kube_api) == registry.storage_uri("v2")
    # Neither the stale Ready of v1 (the first `lag` reads) nor the Ready of v1's pods still
    # serving during the rolling update was taken for v2's.
    assert kube_api.gets_since_change(NS, NAME) == kube_api.lag + kube_api.ready_after
    assert_only_storage_patched(kube_api)
    records = registry.rollouts()
    assert [(r["version"], r["previous"], r["outcome"]) for r in records] == [
        ("v1", None, "succeeded"),
        ("v2", "v1", "succeeded"),
    ]
    assert records[1]["reason"] == "NewReplicaSetAvailable"
    assert result["rollout_record"].startswith("rollouts/") and result["rollout_record"].endswith(
        "-v2.json"
    )


def test_a_version_that_never_becomes_ready_is_rolled_back_and_recorded(
    kube_api,
    registry: Registry,
    registry_cfg: RegistryConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release(registry, registry_cfg, "v1")
    kube_api.behaviour[registry.storage_uri("v2")] = "never"
    started = time.monotonic()
    with pytest.raises(ServingError) as caught:
        release(registry, registry_cfg, "v2", timeout_s=0.5)
    assert time.monotonic() - started >= 0.5
    message = str(caught.value)
    assert "did not become Ready on churn v2 (Timeout: not Ready within 0.5 s" in message
    assert "MinimumReplicasAvailable" in message  # the last status seen
    assert "rolled back to v1, which is Ready again" in message
    assert "the champion pointer is back on v1" in message
    assert "recorded in the registry as rollouts/" in message
    # The pointer names what serves again: the monitor reads the champion's log and reference.
    champion = registry.champion()
    assert champion is not None and champion.version == "v1"
    assert registry.pointer().version == "v1"

    assert served_uri(kube_api) == registry.storage_uri("v1")
    status = kube_api.get(NS, NAME)["status"]
    assert status["conditions"][0]["reason"] == "NewReplicaSetAvailable"
    patched = [b["spec"]["predictor"]["model"]["storageUri"] for _, _, b in kube_api.calls("PATCH")]
    assert patched == [registry.storage_uri("v2"), registry.storage_uri("v1")]
    assert_only_storage_patched(kube_api)
    assert kube_api.calls("DELETE") == []

    record = registry.rollouts()[-1]
    assert {k: record[k] for k in ("version", "previous", "outcome", "reason")} == {
        "version": "v2",
        "previous": "v1",
        "outcome": "failed",
        "reason": "Timeout",
    }
    assert record["rolled_back"] is True and record["rollback_ready"] is True
    assert record["champion_after"] == "v1"
    assert record["previous_storage_uri"] == registry.storage_uri("v1")
    assert record["started_at"] <= record["decided_at"] <= record["finished_at"]

    monkeypatch.setenv("CHURN_REGISTRY__URI", registry_cfg.uri)
    monkeypatch.setenv("CHURN_REGISTRY__ENDPOINT_URL", registry_cfg.endpoint_url)
    out = CliRunner().invoke(app, ["registry", "list"]).output.splitlines()
    assert out[0].startswith("* v1  complete") and "ROLLOUT FAILED" not in out[0]
    assert out[1].startswith("  v2  complete")
    assert out[1].endswith(f"ROLLOUT FAILED {record['finished_at']} (Timeout; rolled back to v1)")
    rows = [
        json.loads(line)
        for line in CliRunner().invoke(app, ["registry", "list", "--json"]).output.splitlines()
    ]
    assert (
        rows[1]["last_rollout"]["outcome"] == "failed"
        and rows[0]["last_rollout"]["outcome"] == "succeeded"
    )


@pytest.mark.parametrize(
    ("behaviour", "reason", "detail"),
    [
        ("fail", "ModelLoadFailed", "storage-initializer: cannot download"),
        ("deadline", "ProgressDeadlineExceeded", "has timed out progressing"),
    ],
)
def test_a_terminal_failure_rolls_back_without_waiting_for_the_timeout(
    kube_api,
    registry: Registry,
    registry_cfg: RegistryConfig,
    behaviour: str,
    reason: str,
    detail: str,
) -> None:
    release(registry, registry_cfg, "v1")
    kube_api.behaviour[registry.storage_uri("v2")] = behaviour
    started = time.monotonic()
    with pytest.raises(
        ServingError,
        match=f"churn v2 \\({reason}: .*{detail}.*rolled back to v1, which is Ready again",
    ):
        release(registry, registry_cfg, "v2", timeout_s=60)
    assert time.monotonic() - started < 10
    assert served_uri(kube_api) == registry.storage_uri("v1")
    assert registry.rollouts()[-1]["reason"] == reason


def test_a_version_redeployed_after_its_failure_is_no_longer_listed_as_failed(
    kube_api, registry: Registry, registry_cfg: RegistryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    release(registry, registry_cfg, "v1")
    kube_api.behaviour[registry.storage_uri("v2")] = "fail"
    with pytest.raises(ServingError, match="ModelLoadFailed"):
        release(registry, registry_cfg, "v2")
    # The storage came back. KServe keeps lastFailureInfo; only the current state counts.
    kube_api.behaviour[registry.storage_uri("v2")] = "ready"
    release(registry, registry_cfg, "v2")
    assert kube_api.get(NS, NAME)["status"]["modelStatus"]["lastFailureInfo"]
    assert [r["outcome"] for r in registry.rollouts()] == ["succeeded", "failed", "succeeded"]
    monkeypatch.setenv("CHURN_REGISTRY__URI", registry_cfg.uri)
    monkeypatch.setenv("CHURN_REGISTRY__ENDPOINT_URL", registry_cfg.endpoint_url)
    out = CliRunner().invoke(app, ["registry", "list"]).output
    assert "ROLLOUT FAILED" not in out


def test_a_failed_first_rollout_deletes_nothing_and_still_fails_and_records(
    kube_api, registry: Registry, registry_cfg: RegistryConfig
) -> None:
    kube_api.behaviour[registry.storage_uri("v1")] = "never"
    with pytest.raises(ServingError) as caught:
        release(registry, registry_cfg, "v1", timeout_s=0.3)
    message = str(caught.value)
    assert "did not become Ready on churn v1 (Timeout" in message
    assert "it did not exist before, so nothing was rolled back" in message
    assert "the champion pointer stays on v1, where the service points" in message
    assert [m for m, _, _ in kube_api.requests if m != "GET"] == ["POST"]
    assert served_uri(kube_api) == registry.storage_uri("v1")
    (record,) = registry.rollouts()
    assert (record["previous"], record["previous_storage_uri"], record["rolled_back"]) == (
        None,
        None,
        False,
    )
    assert record["outcome"] == "failed"
    # Run again, the same version changes nothing and has nothing to roll back to.
    with pytest.raises(ServingError, match="it already pointed there, so there is nothing to roll"):
        deploy_version("kserve", "v1", registry_cfg, serving(0.3), ".")
    assert kube_api.calls("PATCH")[0][2]["spec"]["predictor"]["model"]["storageUri"] == (
        registry.storage_uri("v1")
    )
    assert [(r["previous"], r["rolled_back"]) for r in registry.rollouts()] == [
        (None, False),
        ("v1", False),
    ]


def test_a_version_whose_transformer_never_rolls_out_is_rolled_back(
    kube_api, registry: Registry, registry_cfg: RegistryConfig
) -> None:
    # The predictor serves v2, but the transformer's new pods (which read v2's model.json)
    # never come up while its old ones keep every condition True, Ready included.
    release(registry, registry_cfg, "v1")
    kube_api.behaviour[registry.storage_uri("v2")] = "transformer-stuck"
    with pytest.raises(ServingError) as caught:
        release(registry, registry_cfg, "v2", timeout_s=0.5)
    message = str(caught.value)
    assert "did not become Ready on churn v2 (Timeout: not Ready within 0.5 s" in message
    assert "MinimumReplicasAvailable" in message  # the transformer's, the last status seen
    assert "rolled back to v1, which is Ready again" in message
    assert served_uri(kube_api) == registry.storage_uri("v1")
    assert registry.rollouts()[-1]["outcome"] == "failed"


def test_a_promotion_made_during_a_failed_rollout_keeps_the_champion_pointer(
    kube_api,
    registry: Registry,
    registry_cfg: RegistryConfig,
    models: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release(registry, registry_cfg, "v1")
    registry.publish(models[0], {"roc_auc": 0.9}, version="v3")
    kube_api.behaviour[registry.storage_uri("v2")] = "fail"
    # Another pipeline run promotes v3 while v2's rollout is failing.
    during_rollout(
        monkeypatch, lambda: open_registry(registry_cfg).promote("v3", expected_champion="v2")
    )
    with pytest.raises(ServingError) as caught:
        release(registry, registry_cfg, "v2")
    message = str(caught.value)
    assert "rolled back to v1" in message
    assert "the champion pointer was not moved back to v1: the champion of churn is now v3" in (
        message
    )
    assert registry.pointer().version == "v3"
    assert registry.rollouts()[-1]["champion_after"] == "v3"


def test_a_promotion_away_and_back_during_a_failed_rollout_is_not_undone(
    kube_api,
    registry: Registry,
    registry_cfg: RegistryConfig,
    models: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release(registry, registry_cfg, "v1")
    registry.publish(models[0], {"roc_auc": 0.9}, version="v3")
    kube_api.behaviour[registry.storage_uri("v2")] = "fail"

    def away_and_back() -> None:
        other = open_registry(registry_cfg)
        other.promote("v3", expected_champion="v2")
        other.promote("v2", expected_champion="v3")

    # The pointer names v2 again, but not by this run: comparing names alone would undo it.
    during_rollout(monkeypatch, away_and_back)
    with pytest.raises(ServingError) as caught:
        release(registry, registry_cfg, "v2")
    assert (
        "the champion pointer was not moved back to v1: the champion pointer of churn was "
        "rewritten since it was read" in str(caught.value)
    )
    assert registry.pointer().version == "v2"
    assert json.loads(registry.pointer().raw or b"{}")["previous"] == "v3"
    assert registry.rollouts()[-1]["champion_after"] == "v2"


def test_a_pointer_damaged_during_a_failed_rollout_is_left_for_a_repair_and_recorded_as_none(
    kube_api,
    registry: Registry,
    registry_cfg: RegistryConfig,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release(registry, registry_cfg, "v1")
    kube_api.behaviour[registry.storage_uri("v2")] = "fail"
    during_rollout(
        monkeypatch,
        lambda: registry._s3.put_object(
            Bucket=s3_bucket, Key="team/churn/champion.json", Body=b"{oops"
        ),
    )
    with pytest.raises(ServingError) as caught:
        release(registry, registry_cfg, "v2")
    assert "the champion pointer was not moved back to v1: " in str(caught.value)
    assert "--repair" in str(caught.value)  # the registry's own damage message says how
    assert registry.pointer().damaged
    assert registry.rollouts()[-1]["champion_after"] is None


def test_a_rollback_that_does_not_become_ready_either_says_so(
    kube_api, registry: Registry, registry_cfg: RegistryConfig
) -> None:
    release(registry, registry_cfg, "v1")
    kube_api.behaviour[registry.storage_uri("v1")] = "never"
    kube_api.behaviour[registry.storage_uri("v2")] = "never"
    with pytest.raises(ServingError) as caught:
        release(registry, registry_cfg, "v2", timeout_s=0.3)
    assert "rolled back to v1, which did not become Ready either (Timeout: not Ready within" in str(
        caught.value
    )
    assert served_uri(kube_api) == registry.storage_uri("v1")
    record = registry.rollouts()[-1]
    assert (record["rolled_back"], record["rollback_ready"]) == (True, False)
    # Nothing serves: the pointer stays where the gate put it rather than claim v1 does.
    assert "the champion pointer stays on v2: the version restored did not become Ready" in str(
        caught.value
    )
    assert registry.pointer().version == "v2" and record["champion_after"] == "v2"


def test_redeploying_the_version_already_served_needs_no_new_rollout(
    kube_api, registry: Registry, registry_cfg: RegistryConfig
) -> None:
    release(registry, registry_cfg, "v1")
    generation = kube_api.get(NS, NAME)["metadata"]["generation"]
    result = deploy_version("kserve", "v1", registry_cfg, serving(), ".")
    assert result["previous"] == "v1"
    # The patch changed nothing, so the status already describes the spec: one read.
    assert kube_api.get(NS, NAME)["metadata"]["generation"] == generation
    assert kube_api.gets_since_change(NS, NAME) == kube_api.lag + kube_api.ready_after + 2


def test_a_version_served_from_elsewhere_is_named_by_its_uri(
    kube_api, registry: Registry, registry_cfg: RegistryConfig
) -> None:
    # The manifests' own storageUri, not one of this registry's versions.
    kube_api.put(
        NS,
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": NAME},
            "spec": {
                "predictor": {
                    "model": {
                        "modelFormat": {"name": "pytorch"},
                        "storageUri": "s3://elsewhere/churn/v0",
                    }
                }
            },
        },
    )
    kube_api.behaviour[registry.storage_uri("v1")] = "fail"
    with pytest.raises(
        ServingError, match="rolled back to s3://elsewhere/churn/v0, which is Ready again"
    ):
        release(registry, registry_cfg, "v1")
    record = registry.rollouts()[-1]
    assert (record["previous"], record["previous_storage_uri"]) == (None, "s3://elsewhere/churn/v0")


def test_a_release_keeps_the_runtime_and_model_format_of_the_live_service(
    kube_api, registry: Registry, registry_cfg: RegistryConfig
) -> None:
    # As manifests/overlays/production-kserve applies it: the churn format on churn-kserve.
    model = {
        "modelFormat": {"name": "churn"},
        "runtime": "churn-kserve",
        "storageUri": registry.storage_uri("v1"),
    }
    kube_api.put(
        NS,
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": NAME},
            "spec": {"predictor": {"model": model}},
        },
    )
    release(registry, registry_cfg, "v2")
    served = kube_api.get(NS, NAME)["spec"]["predictor"]["model"]
    assert served == {**model, "storageUri": registry.storage_uri("v2")}
