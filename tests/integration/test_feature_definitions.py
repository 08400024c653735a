"""The Feast definitions file (``feature_repo/customer_features.py``) follows the sources it
is pointed at: their ``spec.json`` in a folder or in S3, and the offline store's kind of
source. Pointed at sources without a usable spec, it refuses, naming the file, instead of
guessing the schema; and no repository reads another's tables through the environment."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import yaml

from churn.features.store import FeatureRepo, FeatureStoreError
from churn.settings import FeatureConfig

TEMPLATE = FeatureConfig().repo_template
PRODUCTION = TEMPLATE / "production" / "feature_store.yaml"
SPEC = {
    "channels": ["n_txn", "spend", "quantity"],
    "context_features": ["tenure_days", "recency_days", "frequency", "monetary"],
    "numeric_attributes": ["age"],
    "categorical_attributes": ["segment"],
}


def views(objects: list) -> dict:
    return {o.name: o for o in objects if hasattr(o, "batch_source")}


def fields(view) -> list[str]:
    # Feast keeps a view's fields in its own order, not the definition's.
    return [f.name for f in view.schema]


def repo_with(tmp_path: Path, config: Path | None = None) -> FeatureRepo:
    repo = FeatureRepo(tmp_path / "repo")
    repo.init_from(TEMPLATE, config)
    return repo


def test_definitions_read_the_spec_of_sources_in_s3(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
        SparkSource,
    )

    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket=s3_bucket, Key="features/spec.json", Body=json.dumps(SPEC).encode()
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    data = f"s3a://{s3_bucket}/features"
    found = views(repo_with(tmp_path, PRODUCTION).definitions(data))
    assert set(found) == {"customer_sequences", "customer_profile"}
    sequences = found["customer_sequences"]
    assert {"seq_n_txn", "seq_spend", "seq_quantity"} <= set(fields(sequences))
    assert set(fields(found["customer_profile"])) == {"age", "segment"}
    assert isinstance(sequences.batch_source, SparkSource)
    assert sequences.batch_source.path == f"{data}/sequences.parquet"


@pytest.mark.parametrize(
    ("key", "body", "problem"),
    [
        (None, None, r"cannot read s3://{bucket}/nothing/spec\.json"),
        ("nothing/spec.json", b'{"channels": [', r"nothing/spec\.json is not JSON"),
        ("nothing/spec.json", b"[]", r"is not the spec of feature sources"),
    ],
)
def test_an_unusable_spec_in_s3_is_one_error_naming_it(
    s3_endpoint: str,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    key: str | None,
    body: bytes | None,
    problem: str,
) -> None:
    if key is not None:
        boto3.client("s3", endpoint_url=s3_endpoint).put_object(
            Bucket=s3_bucket, Key=key, Body=body
        )
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    with pytest.raises(FeatureStoreError, match=problem.format(bucket=s3_bucket)):
        repo_with(tmp_path).definitions(f"s3a://{s3_bucket}/nothing")


@pytest.mark.parametrize("data", ["s3a://", "S3A:///features"])
def test_an_s3_uri_without_a_bucket_is_one_error(tmp_path: Path, data: str) -> None:
    with pytest.raises(FeatureStoreError, match="names no bucket"):
        repo_with(tmp_path).definitions(data)


def test_a_folder_without_a_spec_is_refused_instead_of_guessed(tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError, match=r"CHURN_FEATURE_DATA=.* holds no spec\.json"):
        repo_with(tmp_path).definitions(str(tmp_path / "empty"))


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("offline_store: spark\n", "offline_store must be a mapping"),
        ("project: [\n", "is not readable YAML"),
    ],
)
def test_an_unusable_feature_store_yaml_is_one_error_naming_it(
    tmp_path: Path, config: str, problem: str
) -> None:
    repo = repo_with(tmp_path)
    (repo.path / "feature_store.yaml").write_text(config)
    with pytest.raises(FeatureStoreError, match=problem):
        repo.definitions()


def test_a_fresh_repository_describes_the_default_channels(tmp_path: Path) -> None:
    found = views(repo_with(tmp_path).definitions())
    assert set(found) == {"customer_sequences"}
    sequence_fields = {f for f in fields(found["customer_sequences"]) if f.startswith("seq_")}
    assert sequence_fields == {"seq_n_txn", "seq_spend"}
    assert type(found["customer_sequences"].batch_source).__name__ == "FileSource"


@pytest.mark.parametrize(
    "kind",
    ["spark", "feast.infra.offline_stores.contrib.spark_offline_store.spark.SparkOfflineStore"],
)
def test_a_repository_configured_with_spark_gets_spark_sources(tmp_path: Path, kind: str) -> None:
    config = yaml.safe_load(PRODUCTION.read_text())
    config["offline_store"]["type"] = kind
    (tmp_path / "feature_store.yaml").write_text(yaml.safe_dump(config))
    repo = repo_with(tmp_path, tmp_path / "feature_store.yaml")
    (source,) = {v.batch_source.__class__.__name__ for v in views(repo.definitions()).values()}
    assert source == "SparkSource"


def test_the_environment_points_no_repository_at_another_ones_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Exported for `feast apply` of other tables; a repository still reads its own.
    other = tmp_path / "other"
    other.mkdir()
    (other / "spec.json").write_text(json.dumps(SPEC))
    monkeypatch.setenv("CHURN_FEATURE_DATA", str(other))
    monkeypatch.setenv("CHURN_FEATURE_SOURCE", "spark")
    repo = repo_with(tmp_path)
    sequences = views(repo.definitions())["customer_sequences"]
    assert sequences.batch_source.path == f"{repo.sources}/sequences.parquet"
    assert type(sequences.batch_source).__name__ == "FileSource"
    assert "seq_quantity" not in fields(sequences)
    # And the environment is as it was.
    import os

    assert os.environ["CHURN_FEATURE_DATA"] == str(other)
    assert os.environ["CHURN_FEATURE_SOURCE"] == "spark"
