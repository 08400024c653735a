"""Feast definitions: the customer entity, its sequence snapshots and its profile.

The sources are written by ``churn features build`` into ``data/sources/`` beside this file
(or into ``$CHURN_FEATURE_DATA``). ``spec.json`` there says which channels and attributes
the sources have, so the schema follows the log; without it the definitions describe the
default channels, which lets ``feast apply`` run on a fresh checkout.
"""

import json
import os
from datetime import timedelta
from pathlib import Path

import yaml
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32, String

DATA = os.environ.get("CHURN_FEATURE_DATA", str(Path(__file__).parent / "data" / "sources"))


def _offline_store_type() -> str:
    """The offline store of the ``feature_store.yaml`` beside this file (``file`` if none)."""
    config = Path(__file__).parent / "feature_store.yaml"
    if not config.is_file():
        return "file"
    offline = (yaml.safe_load(config.read_text()) or {}).get("offline_store") or {}
    return str(offline.get("type", "file"))


# Spark's offline store reads only SparkSources, so a repository configured with it (the shared
# store with feature_repo/production) gets them without being told; CHURN_FEATURE_SOURCE
# overrides, for `feast -f feature_repo/production/feature_store.yaml` run from elsewhere.
SOURCE_KIND = os.environ.get(
    "CHURN_FEATURE_SOURCE", "spark" if _offline_store_type() == "spark" else "file"
)
DEFAULT_SPEC = {
    "channels": ["n_txn", "spend"],
    "context_features": ["tenure_days", "recency_days", "frequency", "monetary"],
    "numeric_attributes": [],
    "categorical_attributes": [],
}


def _read_spec(data: str) -> dict:
    """The sources' ``spec.json``: in a folder, or in S3 (``s3a://`` as Spark names it).

    Without ``$CHURN_FEATURE_DATA`` a missing file gives the default channels; with it, it is
    an error: definitions that silently dropped the channels and attributes the Spark job
    built would register feature views that do not match the tables.
    """
    if data.startswith(("s3://", "s3a://")):
        from pyarrow import fs

        # Credentials, and AWS_ENDPOINT_URL for a store other than AWS, from the environment.
        uri = "s3://" + data.split("://", 1)[1].rstrip("/") + "/spec.json"
        filesystem, key = fs.FileSystem.from_uri(uri)
        try:
            with filesystem.open_input_stream(key) as stream:
                return json.loads(stream.read())
        except OSError as exc:
            raise FileNotFoundError(f"CHURN_FEATURE_DATA={data}: cannot read {uri}: {exc}") from exc
    path = Path(data.removeprefix("file://")) / "spec.json"
    if path.is_file():
        return json.loads(path.read_text())
    if "CHURN_FEATURE_DATA" in os.environ:
        raise FileNotFoundError(
            f"CHURN_FEATURE_DATA={data} holds no spec.json: point it at the folder that "
            "`churn features build` or the Spark feature job wrote"
        )
    return DEFAULT_SPEC


SPEC = _read_spec(DATA)


def _source(name: str, file: str, timestamp_field: str):
    path = f"{DATA}/{file}"
    if SOURCE_KIND == "spark":
        # Imported here so the embedded default needs no Spark client.
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
            SparkSource,
        )

        return SparkSource(
            name=name, path=path, file_format="parquet", timestamp_field=timestamp_field
        )
    return FileSource(name=name, path=path, timestamp_field=timestamp_field)


customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A buying customer, keyed by the customer_id of the transaction log.",
)

# One row per customer per snapshot time. Snapshots exist at every training cutoff and at the
# latest time, so a point-in-time join at a cutoff returns exactly that cutoff's row.
customer_sequences = FeatureView(
    name="customer_sequences",
    entities=[customer],
    ttl=timedelta(0),
    schema=[Field(name=f"seq_{c}", dtype=Array(Float32)) for c in SPEC["channels"]]
    + [Field(name=f, dtype=Float32) for f in SPEC["context_features"]],
    source=_source("customer_sequences_source", "sequences.parquet", "snapshot_ts"),
    online=True,
    description="Last L activity bins per channel, ending at the snapshot time, plus context.",
    tags={"owner": "churn-platform"},
)

objects = [customer, customer_sequences]

if SPEC["numeric_attributes"] or SPEC["categorical_attributes"]:
    # Attributes become known at signup, which is what keeps them point-in-time correct.
    customer_profile = FeatureView(
        name="customer_profile",
        entities=[customer],
        ttl=timedelta(0),
        schema=[Field(name=f, dtype=Float32) for f in SPEC["numeric_attributes"]]
        + [Field(name=f, dtype=String) for f in SPEC["categorical_attributes"]],
        source=_source("customer_profile_source", "customers.parquet", "signup_date"),
        online=True,
        description="Static customer attributes from the customers table.",
        tags={"owner": "churn-platform"},
    )
    objects.append(customer_profile)
