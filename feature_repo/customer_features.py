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
SPEC_LISTS = ("channels", "context_features", "numeric_attributes", "categorical_attributes")
DEFAULT_SPEC = {
    "channels": ["n_txn", "spend"],
    "context_features": ["tenure_days", "recency_days", "frequency", "monetary"],
    "numeric_attributes": [],
    "categorical_attributes": [],
}


def _offline_store_type() -> str:
    """The offline store of the ``feature_store.yaml`` beside this file (``file`` if none).

    Raises:
        ValueError: The file is not YAML, or its ``offline_store`` is not a mapping.
    """
    config = Path(__file__).parent / "feature_store.yaml"
    if not config.is_file():
        return "file"
    try:
        loaded = yaml.safe_load(config.read_text())
    except (OSError, UnicodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{config} is not readable YAML: {exc}") from exc
    offline = loaded.get("offline_store", {}) if isinstance(loaded, dict) else {}
    if not isinstance(offline, dict):
        raise ValueError(f"{config}: offline_store must be a mapping with a type")
    return str(offline.get("type", "file"))


def _spark_offline_store(kind: str) -> bool:
    # Feast names it "spark" or by its class path.
    return kind == "spark" or kind.endswith(".SparkOfflineStore")


# Spark's offline store reads only SparkSources, so a repository configured with it (the shared
# store with feature_repo/production) gets them without being told; CHURN_FEATURE_SOURCE
# overrides, for `feast -f feature_repo/production/feature_store.yaml` run from elsewhere.
SOURCE_KIND = os.environ.get(
    "CHURN_FEATURE_SOURCE", "spark" if _spark_offline_store(_offline_store_type()) else "file"
)


def _read_spec(data: str) -> dict:
    """The sources' ``spec.json``: in a folder, or in S3 (``s3a://`` as Spark names it).

    Without ``$CHURN_FEATURE_DATA`` a missing file gives the default channels; with it, it is
    an error: definitions that silently dropped the channels and attributes the Spark job
    built would register feature views that do not match the tables.

    Raises:
        ValueError: The file is missing (with ``$CHURN_FEATURE_DATA`` set), unreadable, not
            JSON, or not a spec; the message names it.
    """
    scheme, _, rest = data.partition("://") if "://" in data else ("", "", data)
    if scheme.lower() in ("s3", "s3a"):
        where = f"s3://{rest.rstrip('/')}/spec.json"
        try:
            text = _read_s3(where)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"CHURN_FEATURE_DATA={data}: cannot read {where}: {exc}") from exc
    else:
        path = Path(rest if scheme.lower() == "file" else data) / "spec.json"
        where = str(path)
        if not path.is_file():
            if "CHURN_FEATURE_DATA" in os.environ:
                raise ValueError(
                    f"CHURN_FEATURE_DATA={data} holds no spec.json: point it at the folder "
                    "that `churn features build` or the Spark feature job wrote"
                )
            return DEFAULT_SPEC
        try:
            text = path.read_text()
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"cannot read {where}: {exc}") from exc
    return _checked_spec(text, where)


def _read_s3(uri: str) -> str:
    """A small S3 object, with the credentials, region and endpoint of the environment.

    The region comes from ``AWS_REGION``/``AWS_DEFAULT_REGION`` when set, so no HeadBucket
    (which needs ``s3:ListBucket``) is made to find it; ``AWS_ENDPOINT_URL`` names a store
    other than AWS.
    """
    from urllib.parse import urlparse

    from pyarrow import fs

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError("the URI names no bucket")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if region is None and endpoint is None:
        filesystem, path = fs.FileSystem.from_uri(uri)
    else:
        options: dict = {"region": region or "us-east-1"}
        if endpoint:
            parsed = urlparse(endpoint)
            options |= {"endpoint_override": parsed.netloc, "scheme": parsed.scheme or "https"}
        filesystem, path = fs.S3FileSystem(**options), f"{bucket}/{key}"
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode()


def _checked_spec(text: str, where: str) -> dict:
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{where} is not JSON: {exc}") from exc
    if not isinstance(spec, dict) or not all(isinstance(spec.get(k), list) for k in SPEC_LISTS):
        raise ValueError(
            f"{where} is not the spec of feature sources: it needs the lists {list(SPEC_LISTS)}"
        )
    return spec


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
