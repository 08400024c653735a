"""The production ``feature_store.yaml``, unmodified: Spark's offline store (local mode),
the SQL registry (on SQLite) and a real Redis, filled by the feature pipeline's function (its
snapshots built on Spark) and read as training and serving read it, against the embedded
store built from the same log with pandas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from churn.features.build import build_features, materialize
from churn.features.shared import publish_features, shared_repo
from churn.features.store import FeatureRepo
from churn.settings import FeatureConfig
from tests.integration.test_shared_feature_store import (
    CFG,
    CUTOFFS,
    IDS,
    assert_same_features,
    write_log,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str, spark: Any
) -> Iterator[tuple[FeatureRepo, FeatureRepo]]:
    """The embedded store and the shared store on the packaged production configuration.

    The session's Spark (``spark``) is the one Feast finds, as in a step that built the
    snapshots on Spark before materialising.
    """
    root = tmp_path_factory.mktemp("production")
    tx, customers = write_log(root)
    build_features(tx, root / "embedded", CFG, customers=customers, cutoffs=CUTOFFS)
    materialize(root / "embedded")
    cfg = FeatureConfig(
        **CFG.model_dump(include={"bin_days", "seq_len", "horizon_days"}),
        shared_store=str(root / "shared"),
        shared_store_config="production",
        # The snapshots on Spark too, as a feature step with features.engine=spark builds them.
        engine="spark",
        spark_master="local[2]",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEAST_REGISTRY_URL", f"sqlite:///{root / 'registry.db'}")
        patch.setenv("REDIS_CONNECTION_STRING", f"{redis_server},db=5")
        patch.setenv("SPARK_MASTER_URL", "local[2]")
        redis.Redis.from_url(f"redis://{redis_server}/5").flushdb()
        publish_features(tx, cfg, customers=customers, cutoffs=CUTOFFS)
        yield FeatureRepo(root / "embedded"), shared_repo(cfg)


def test_the_shared_store_uses_the_packaged_production_configuration(stores) -> None:
    _, shared = stores
    config = (shared.path / "feature_store.yaml").read_text()
    packaged = Path(__file__).resolve().parents[2] / "feature_repo/production/feature_store.yaml"
    assert config == packaged.read_text()


def test_a_spark_offline_store_gets_spark_sources(stores) -> None:
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
        SparkSource,
    )

    embedded, shared = stores
    assert all(isinstance(s, SparkSource) for s in shared.store().list_data_sources())
    assert not any(isinstance(s, SparkSource) for s in embedded.store().list_data_sources())


def test_spark_reads_for_training_exactly_what_the_embedded_store_reads(stores) -> None:
    embedded, shared = stores
    # At each cutoff, between cutoffs (the earlier snapshot), before the first snapshot
    # (nothing) and for an unknown customer.
    times = [*CUTOFFS, "2020-03-20", "2020-01-10"]
    rows = pd.DataFrame(
        [(c, pd.Timestamp(t, tz="UTC")) for t in times for c in IDS],
        columns=["customer_id", "event_timestamp"],
    )
    on_spark, on_duckdb = shared.historical_features(rows), embedded.historical_features(rows)
    assert on_duckdb.has_history.sum() == 3 * len(CUTOFFS) + 3
    assert_same_features(on_spark, on_duckdb)
    np.testing.assert_array_equal(on_spark.event_ts, on_duckdb.event_ts)


def test_redis_serves_what_spark_materialised(stores) -> None:
    embedded, shared = stores
    a, b = embedded.online_features(IDS), shared.online_features(IDS)
    assert a.has_history.tolist() == [True, True, False, True]
    assert_same_features(a, b)
