"""The ASOF offline store returns exactly what Feast's stock DuckDB store returns."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32

from churn.features.asof_offline_store import AsofRetrievalJob

YAML = """project: asof_test
provider: local
registry: registry.db
offline_store:
  type: {store}
online_store:
  type: sqlite
  path: online.db
entity_key_serialization_version: 3
"""


def _store(root, store_type, ttl_days):
    root.mkdir()
    (root / "feature_store.yaml").write_text(YAML.format(store=store_type))
    rng = np.random.default_rng(1)
    rows = []
    for cid in ("a", "b", "c"):
        for day in range(0, 40, 5):
            ts = pd.Timestamp("2021-01-01", tz="UTC") + pd.Timedelta(
                days=day, hours=int(rng.integers(24))
            )
            rows.append((cid, ts, rng.random(4).astype(np.float32).tolist(), float(rng.random())))
    pd.DataFrame(rows, columns=["customer_id", "ts", "seq", "score"]).to_parquet(
        root / "src.parquet"
    )
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    view = FeatureView(
        name="view",
        entities=[customer],
        ttl=timedelta(days=ttl_days),
        schema=[Field(name="seq", dtype=Array(Float32)), Field(name="score", dtype=Float32)],
        source=FileSource(name="src", path=str(root / "src.parquet"), timestamp_field="ts"),
    )
    store = FeatureStore(repo_path=str(root))
    store.apply([customer, view])
    return store


@pytest.mark.parametrize("ttl_days", [0, 3])
def test_asof_store_matches_feasts_duckdb_store(tmp_path, ttl_days):
    start = pd.Timestamp("2021-01-01", tz="UTC")
    entity_df = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "zz", "a", "b", "c", "a"],
            "event_timestamp": [
                start - pd.Timedelta(days=1),  # before any row
                start + pd.Timedelta(days=12),
                start + pd.Timedelta(days=39, hours=23),
                start + pd.Timedelta(days=20),  # unknown customer
                start + pd.Timedelta(days=80),  # far past the last row: ttl decides
                start + pd.Timedelta(days=4),
                start + pd.Timedelta(days=25, hours=5),
                start + pd.Timedelta(days=12),  # duplicate of row 1's time, other customer
            ],
        }
    )
    refs = ["view:seq", "view:score"]
    results = {}
    for name, store_type in (
        ("asof", "churn.features.asof_offline_store.AsofDuckDBOfflineStore"),
        ("stock", "duckdb"),
    ):
        # A quote in the folder name must not end the SQL string literal of the file path.
        store = _store(tmp_path / ("asof's repo" if name == "asof" else name), store_type, ttl_days)
        job = store.get_historical_features(entity_df=entity_df, features=refs)
        assert isinstance(job, AsofRetrievalJob) == (name == "asof")
        df = job.to_df()
        df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
        results[name] = df.sort_values(["customer_id", "event_timestamp"]).reset_index(drop=True)
    asof, stock = results["asof"], results["stock"]
    assert len(asof) == len(stock) == len(entity_df)
    assert asof["customer_id"].tolist() == stock["customer_id"].tolist()
    for a, s in zip(asof["seq"], stock["seq"], strict=True):
        a_missing = a is None or (np.isscalar(a) and pd.isna(a))
        s_missing = s is None or (np.isscalar(s) and pd.isna(s))
        assert a_missing == s_missing
        if not a_missing:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(s))
    np.testing.assert_allclose(
        asof["score"].astype(float), stock["score"].astype(float), equal_nan=True
    )
    # The row far past the data has a value only without a ttl.
    far = asof[asof["event_timestamp"] == start + pd.Timedelta(days=80)]
    assert far["score"].isna().all() == (ttl_days > 0)


def test_asof_job_persists_to_file_storage(tmp_path):
    from feast.infra.offline_stores.file_source import SavedDatasetFileStorage

    store = _store(tmp_path / "repo", "churn.features.asof_offline_store.AsofDuckDBOfflineStore", 0)
    entity_df = pd.DataFrame(
        {"customer_id": ["a", "b"], "event_timestamp": [pd.Timestamp("2021-01-20", tz="UTC")] * 2}
    )
    job = store.get_historical_features(entity_df=entity_df, features=["view:score"])
    out = tmp_path / "saved" / "ds.parquet"
    job.persist(SavedDatasetFileStorage(path=str(out)))
    saved = pd.read_parquet(out)
    assert saved["customer_id"].tolist() == ["a", "b"]
    assert saved["score"].notna().all()
    with pytest.raises(FileExistsError):
        job.persist(SavedDatasetFileStorage(path=str(out)))
