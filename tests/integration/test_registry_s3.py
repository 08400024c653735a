"""The S3 registry's own mechanics against a real S3 HTTP endpoint (moto's server on 127.0.0.1).

The contract every backend keeps (layout, immutability, promotion, checksums) runs on S3 and on
the folder in ``tests/integration/test_registry_contract.py``; this file holds what only S3
does: the ``_CLAIM`` marker written with ``If-None-Match``, partial uploads left without a
marker, conditional writes on the champion pointer and their 409 retries, and S3's own errors.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from churn.errors import RegistryError
from churn.release.registry import (
    CHAMPION_FILE,
    CLAIM_MARKER,
    COMPLETE_MARKER,
    S3Registry,
    open_registry,
)
from churn.settings import RegistryConfig


@pytest.fixture
def registry(s3_endpoint: str, s3_bucket: str) -> S3Registry:
    cfg = RegistryConfig(uri=f"s3://{s3_bucket}/team", endpoint_url=s3_endpoint, model_name="churn")
    registry = open_registry(cfg)
    assert isinstance(registry, S3Registry)
    return registry


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    return tiny_model(root / "m1", 1), tiny_model(root / "m2", 2)


def keys(registry: S3Registry, version: str) -> set[str]:
    prefix = registry.storage_uri(version).removeprefix(f"s3://{registry.bucket}/") + "/"
    resp = registry._s3.list_objects_v2(Bucket=registry.bucket, Prefix=prefix)
    return {obj["Key"][len(prefix) :] for obj in resp.get("Contents", [])}


def test_an_interrupted_upload_leaves_an_incomplete_version_whose_id_stays_taken(
    registry: S3Registry, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    registry.promote("v1")
    real_upload = registry._s3.upload_file
    uploaded: list[str] = []

    def flaky_upload(filename: str, bucket: str, key: str, **kwargs: object) -> None:
        # The network drops after two files of the new version have reached the bucket.
        if len(uploaded) == 2:
            raise EndpointConnectionError(endpoint_url=f"s3://{bucket}/{key}")
        real_upload(filename, bucket, key, **kwargs)
        uploaded.append(key)

    monkeypatch.setattr(registry._s3, "upload_file", flaky_upload)
    with pytest.raises(RegistryError, match=f"after 2 of 5 files.*no {COMPLETE_MARKER}"):
        registry.publish(models[1], {"roc_auc": 0.9}, version="v2")
    stored = keys(registry, "v2") - {CLAIM_MARKER}
    assert len(stored) == 2 and COMPLETE_MARKER not in stored
    assert [(v.version, v.complete) for v in registry.list_versions()] == [
        ("v1", True),
        ("v2", False),
    ]
    with pytest.raises(RegistryError, match="cannot promote"):
        registry.promote("v2")
    assert registry.champion().version == "v1"
    # The half-written id stays taken, so nobody completes it with different files.
    monkeypatch.setattr(registry._s3, "upload_file", real_upload)
    with pytest.raises(RegistryError, match="immutable"):
        registry.publish(models[1], {"roc_auc": 0.9}, version="v2")


def test_a_losing_concurrent_publisher_changes_nothing(
    registry: S3Registry, models: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both publishers passed the existence check before either uploaded anything.
    registry.publish(models[0], {"roc_auc": 0.9}, version="v1")
    monkeypatch.setattr(registry, "_version_exists", lambda version: False)
    with pytest.raises(RegistryError, match=r"v1 of churn already exists .*another publisher"):
        registry.publish(models[1], {"roc_auc": 0.6}, version="v1")
    (info,) = registry.list_versions()
    assert info.metrics == {"roc_auc": 0.9}
    dest = registry.download("v1", tmp_path / "dl")  # every checksum still holds
    assert (dest / "model" / "model.pt").read_bytes() == (models[0] / "model.pt").read_bytes()


def test_missing_bucket_is_a_clear_error(s3_endpoint: str, registry: S3Registry) -> None:
    missing = open_registry(RegistryConfig(uri="s3://no-such-bucket", endpoint_url=s3_endpoint))
    with pytest.raises(RegistryError, match="no-such-bucket"):
        missing.list_versions()


def test_a_uri_without_a_bucket_is_a_clear_error() -> None:
    with pytest.raises(RegistryError, match=r"S3 registry URI: 's3:///models' is not an S3 URI"):
        S3Registry("s3:///models", "churn")


def test_a_pointer_moved_between_read_and_write_is_not_overwritten(
    registry: S3Registry, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("a", "b", "c"):
        registry.publish(models[0], {"roc_auc": 0.8}, version=version)
    registry.promote("a")
    real_put = registry._s3.put_object
    raced = []

    def put_after_a_rival(**kwargs: object):
        # Another run promotes c after this one read the pointer, just before it writes.
        if str(kwargs["Key"]).endswith("champion.json") and not raced:
            raced.append(True)
            rival = json.loads(registry._read_pointer())
            real_put(
                Bucket=kwargs["Bucket"],
                Key=kwargs["Key"],
                Body=json.dumps({**rival, "version": "c"}).encode(),
            )
        return real_put(**kwargs)

    monkeypatch.setattr(registry._s3, "put_object", put_after_a_rival)
    # The conditional write sees the ETag change, re-reads, and finds the judged champion gone.
    with pytest.raises(RegistryError, match="champion of churn is now c, not a"):
        registry.promote("b", expected_champion="a")
    assert registry.champion().version == "c"
    # Without an expectation it retries over the rival and records it as the previous one.
    raced.clear()
    registry.promote("b")
    pointer = json.loads(registry._read_pointer())
    assert (pointer["version"], pointer["previous"]) == ("b", "c")


def conflict(key: str) -> ClientError:
    """What AWS answers a conditional write that raced another one: 409, try again."""
    return ClientError(
        {
            "Error": {"Code": "ConditionalRequestConflict", "Message": "retry", "Key": key},
            "ResponseMetadata": {"HTTPStatusCode": 409},
        },
        "PutObject",
    )


def test_a_conditional_write_conflict_on_the_pointer_is_retried(
    registry: S3Registry, models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    registry.publish(models[1], {"roc_auc": 0.9}, version="v2")
    real_put = registry._s3.put_object
    conflicts: list[dict] = []
    budget = [2]

    def put_conflicting(**kwargs: object):
        if str(kwargs["Key"]).endswith(CHAMPION_FILE) and len(conflicts) < budget[0]:
            conflicts.append(kwargs)
            raise conflict(str(kwargs["Key"]))
        return real_put(**kwargs)

    monkeypatch.setattr(registry._s3, "put_object", put_conflicting)
    assert registry.promote("v1", expected_champion=None).version == "v1"
    # Two 409s, each on a conditional create of the pointer, then the third attempt wins.
    assert [c.get("IfNoneMatch") for c in conflicts] == ["*", "*"]
    assert registry.champion().version == "v1"
    # A conflict on every attempt gives up with a clear error and leaves the pointer alone.
    conflicts.clear()
    budget[0] = 100
    with pytest.raises(RegistryError, match="kept changing during 5 attempts"):
        registry.promote("v2", expected_champion="v1")
    assert len(conflicts) == 5 and all("IfMatch" in c for c in conflicts)
    assert registry.champion().version == "v1"


def test_an_unreachable_endpoint_is_a_clear_error(
    models: tuple[Path, Path], aws_test_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no retries with back-off: fail at once
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    registry = open_registry(RegistryConfig(uri="s3://models/team", endpoint_url=endpoint))
    refused = r"s3://models/team/churn\S* failed: Could not connect to the endpoint URL"
    with pytest.raises(RegistryError, match=rf"listing versions in {refused}"):
        registry.list_versions()
    with pytest.raises(RegistryError, match=rf"reading {refused}"):
        registry.champion()
    with pytest.raises(RegistryError, match=rf"checking v1 in {refused}"):
        registry.publish(models[0], {"roc_auc": 0.8}, version="v1")
    with pytest.raises(RegistryError, match=rf"reading {refused}"):
        registry.promote("v1")
