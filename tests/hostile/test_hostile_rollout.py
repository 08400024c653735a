"""Rollouts against a Kubernetes API that misbehaves, bad rollout settings and damaged records.

Each case ends in one clear line naming what failed, and changes nothing it should not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from churn.cli import app
from churn.errors import RegistryError, ServingError
from churn.release.deploy import deploy_version
from churn.release.registry import Registry, open_registry
from churn.settings import RegistryConfig, ServingConfig, load_settings

NS = NAME = "churn"


@pytest.fixture
def registry_cfg(s3_bucket: str, s3_endpoint: str) -> RegistryConfig:
    return RegistryConfig(uri=f"s3://{s3_bucket}/team", endpoint_url=s3_endpoint, model_name=NAME)


@pytest.fixture
def registry(registry_cfg: RegistryConfig, tmp_path: Path, tiny_model) -> Registry:
    registry = open_registry(registry_cfg)
    for i in (1, 2):
        registry.publish(tiny_model(tmp_path / f"m{i}", i), {"roc_auc": 0.8}, version=f"v{i}")
    return registry


def release(registry: Registry, cfg: RegistryConfig, version: str, timeout_s: float = 5) -> dict:
    registry.promote(version)
    serving = ServingConfig(rollout_timeout_seconds=timeout_s, rollout_poll_seconds=0.01)
    return deploy_version("kserve", version, cfg, serving, ".")


def test_an_unreachable_kubernetes_api_is_one_clear_line_and_records_nothing(
    kube_api, registry: Registry, registry_cfg: RegistryConfig
) -> None:
    kube_api.stop()
    with pytest.raises(ServingError) as caught:
        release(registry, registry_cfg, "v1")
    message = str(caught.value)
    assert message.startswith("reading InferenceService churn/churn failed: ")
    assert "Connection refused" in message and "\n" not in message
    assert registry.rollouts() == []


def test_a_refused_read_before_the_change_changes_nothing(
    kube_api, registry: Registry, registry_cfg: RegistryConfig
) -> None:
    release(registry, registry_cfg, "v1")
    kube_api.failing_gets = 1
    with pytest.raises(
        ServingError, match=r"reading InferenceService churn/churn failed: .*\(500\)"
    ):
        release(registry, registry_cfg, "v2")
    assert kube_api.get(NS, NAME)["spec"]["predictor"]["model"]["storageUri"] == (
        registry.storage_uri("v1")
    )
    assert [r["version"] for r in registry.rollouts()] == ["v1"]


def test_api_errors_while_waiting_do_not_abort_the_rollout(
    kube_api, registry: Registry, registry_cfg: RegistryConfig
) -> None:
    release(registry, registry_cfg, "v1")
    kube_api.failing_gets_after_patch = 4
    result = release(registry, registry_cfg, "v2")
    assert result["previous"] == "v1"
    assert registry.rollouts()[-1]["outcome"] == "succeeded"
    assert kube_api.failing_gets == 0  # every 500 was met and waited out


def test_a_refused_rollback_says_the_service_still_points_at_the_new_version(
    kube_api, registry: Registry, registry_cfg: RegistryConfig
) -> None:
    release(registry, registry_cfg, "v1")
    kube_api.behaviour[registry.storage_uri("v2")] = "fail"
    kube_api.refused_patches = {2}  # the rollback's patch
    with pytest.raises(ServingError) as caught:
        release(registry, registry_cfg, "v2")
    message = str(caught.value)
    assert "did not become Ready on churn v2 (ModelLoadFailed" in message
    assert "it still points there: restoring churn/churn to s3://" in message
    assert "(403)" in message and "recorded in the registry" in message
    record = registry.rollouts()[-1]
    assert (record["rolled_back"], record["rollback_ready"], record["rollback_reason"]) == (
        False,
        False,
        "RestoreFailed",
    )
    out = (
        CliRunner()
        .invoke(
            app,
            ["registry", "list"],
            env={
                "CHURN_REGISTRY__URI": registry_cfg.uri,
                "CHURN_REGISTRY__ENDPOINT_URL": registry_cfg.endpoint_url,
            },
        )
        .output
    )
    assert "ROLLOUT FAILED" in out and "(ModelLoadFailed; nothing rolled back)" in out


def test_a_service_in_serverless_mode_is_refused_and_left_unchanged(
    kube_api, registry: Registry, registry_cfg: RegistryConfig
) -> None:
    kube_api.put(
        NS,
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": NAME,
                "annotations": {"serving.kserve.io/deploymentMode": "Serverless"},
            },
            "spec": {
                "predictor": {
                    "model": {"modelFormat": {"name": "pytorch"}, "storageUri": "s3://x/v0"}
                }
            },
        },
        mode="Serverless",
    )
    with pytest.raises(ServingError, match=r"runs in Serverless mode; .* so it was left unchanged"):
        release(registry, registry_cfg, "v1")
    assert kube_api.calls("PATCH") == [] and registry.rollouts() == []


def test_a_damaged_rollout_record_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rollouts = tmp_path / "registry" / "churn" / "rollouts"
    rollouts.mkdir(parents=True)
    (rollouts / "20260101T000000.000000Z-v1.json").write_text('{"version": "v1", "outc')
    monkeypatch.setenv("CHURN_REGISTRY__URI", str(tmp_path / "registry"))
    result = CliRunner().invoke(app, ["registry", "list"])
    assert result.exit_code != 0 and isinstance(result.exception, RegistryError)
    assert (
        "rollout record rollouts/20260101T000000.000000Z-v1.json of churn is not valid JSON"
        in str(result.exception)
    )
    (rollouts / "20260101T000000.000000Z-v1.json").write_text('["v1"]')
    with pytest.raises(RegistryError, match="is not a JSON object with a version"):
        open_registry(RegistryConfig(uri=str(tmp_path / "registry"))).rollouts()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CHURN_SERVING__ROLLOUT_TIMEOUT_SECONDS": "0"},
            "serving.rollout_timeout_seconds: .*greater than 0",
        ),
        (
            {"CHURN_SERVING__ROLLOUT_TIMEOUT_SECONDS": "soon"},
            r"field serving.rollout_timeout_seconds: .*\(got 'soon'\)",
        ),
        ({"CHURN_SERVING__ROLLOUT_TIMEOUT_SECONDS": "7200"}, "less than or equal to 3600"),
        (
            {"CHURN_SERVING__ROLLOUT_POLL_SECONDS": "-1"},
            "serving.rollout_poll_seconds: .*greater than 0",
        ),
    ],
)
def test_bad_rollout_settings_name_the_field(env: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(env=env)
