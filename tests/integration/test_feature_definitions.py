"""The Feast definitions file (``feature_repo/customer_features.py``) follows the sources it
is pointed at: their ``spec.json`` in a folder or in S3, and the offline store's kind of
source. Pointed at sources without a spec, it refuses instead of guessing the schema."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from churn.features.store import FeatureRepo
from churn.settings import FeatureConfig

TEMPLATE = FeatureConfig().repo_template
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


def test_definitions_read_the_spec_of_sources_in_s3(
    s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
        SparkSource,
    )

    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket=s3_bucket, Key="features/spec.json", Body=json.dumps(SPEC).encode()
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("CHURN_FEATURE_DATA", f"s3a://{s3_bucket}/features")
    monkeypatch.setenv("CHURN_FEATURE_SOURCE", "spark")
    found = views(FeatureRepo(TEMPLATE).definitions())
    assert set(found) == {"customer_sequences", "customer_profile"}
    sequences = found["customer_sequences"]
    assert {"seq_n_txn", "seq_spend", "seq_quantity"} <= set(fields(sequences))
    assert set(fields(found["customer_profile"])) == {"age", "segment"}
    assert isinstance(sequences.batch_source, SparkSource)
    assert sequences.batch_source.path == f"s3a://{s3_bucket}/features/sequences.parquet"


def test_sources_in_s3_without_a_spec_are_an_error_naming_the_uri(
    s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("CHURN_FEATURE_DATA", f"s3a://{s3_bucket}/nothing")
    with pytest.raises(FileNotFoundError, match=rf"s3://{s3_bucket}/nothing/spec\.json"):
        FeatureRepo(TEMPLATE).definitions()


def test_a_folder_without_a_spec_is_refused_instead_of_guessed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHURN_FEATURE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"CHURN_FEATURE_DATA=.* holds no spec\.json"):
        FeatureRepo(TEMPLATE).definitions()


def test_a_fresh_repository_describes_the_default_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHURN_FEATURE_DATA", raising=False)
    monkeypatch.delenv("CHURN_FEATURE_SOURCE", raising=False)
    repo = FeatureRepo(tmp_path / "repo")
    repo.init_from(TEMPLATE)
    found = views(repo.definitions())
    assert set(found) == {"customer_sequences"}
    sequence_fields = {f for f in fields(found["customer_sequences"]) if f.startswith("seq_")}
    assert sequence_fields == {"seq_n_txn", "seq_spend"}
    assert type(found["customer_sequences"].batch_source).__name__ == "FileSource"


def test_a_repository_configured_with_spark_gets_spark_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHURN_FEATURE_DATA", raising=False)
    monkeypatch.delenv("CHURN_FEATURE_SOURCE", raising=False)
    repo = FeatureRepo(tmp_path / "repo")
    repo.init_from(TEMPLATE, TEMPLATE / "production" / "feature_store.yaml")
    (source,) = {v.batch_source.__class__.__name__ for v in views(repo.definitions()).values()}
    assert source == "SparkSource"
