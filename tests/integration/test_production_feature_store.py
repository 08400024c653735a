"""The production ``feature_store.yaml``, unmodified: Spark's offline store (local mode),
the SQL registry on a real PostgreSQL and a real Redis, filled by the feature pipeline's
function (its snapshots built on Spark) and read as training and serving read it, against
the embedded store built from the same log with pandas."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
import redis
import sqlalchemy
import yaml

from churn.features import spark_job
from churn.features.build import build_features, materialize
from churn.features.shared import publish_features, shared_repo
from churn.features.store import FeatureRepo, feature_refs, features_from_arrow
from churn.settings import FeatureConfig
from tests.integration.test_shared_feature_store import (
    CFG,
    CUTOFFS,
    IDS,
    assert_same_features,
    transformer_request,
    write_log,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: str,
    postgres_database: Callable[[], str],
    spark: Any,
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
        # The SQL registry on a real PostgreSQL, through psycopg, as in the cluster.
        patch.setenv("FEAST_REGISTRY_URL", postgres_database())
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
    # Its registry is PostgreSQL's: the views are rows there, and no registry file exists.
    engine = sqlalchemy.create_engine(os.environ["FEAST_REGISTRY_URL"])
    with engine.connect() as db:
        views = db.execute(sqlalchemy.text("SELECT feature_view_name FROM feature_views"))
        assert sorted(v for (v,) in views) == ["customer_profile", "customer_sequences"]
    engine.dispose()
    assert not list(shared.path.rglob("registry.db"))


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


def test_the_transformer_on_the_clusters_configmap_serves_what_spark_materialised(
    stores, tmp_path: Path
) -> None:
    """The transformer's Feast configuration as manifests/base gives it (no Spark offline
    store), over the SQL registry that a Spark-configured apply filled with SparkSources."""
    embedded, _ = stores
    configmap = Path(__file__).resolve().parents[2] / "manifests/base/feast-configmap.yaml"
    serving = tmp_path / "serving"
    serving.mkdir()
    (serving / "feature_store.yaml").write_text(
        yaml.safe_load(configmap.read_text())["data"]["feature_store.yaml"]
    )
    spec = embedded.spec
    from_embedded = transformer_request(tmp_path, embedded.path, spec, IDS)
    from_cluster = transformer_request(tmp_path, serving, spec, IDS)
    assert from_cluster.known.tolist() == [True, True, False, True]
    assert from_cluster.instances == from_embedded.instances
    np.testing.assert_array_equal(from_cluster.feature_ts, from_embedded.feature_ts)


def test_feast_on_the_production_file_reads_the_tables_the_spark_job_wrote(
    stores, tmp_path: Path, redis_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SparkApplication's output (folders of part files) read through
    ``$CHURN_FEATURE_DATA``, as `feast apply` and `feast materialize` read it in a cluster."""
    embedded, _ = stores
    tx, customers = write_log(tmp_path)
    out = tmp_path / "job"
    argv = [
        "--transactions", str(tx), "--customers", str(customers), "--out", str(out),
        "--bin-days", str(CFG.bin_days), "--seq-len", str(CFG.seq_len),
        "--cutoffs", ",".join(CUTOFFS),
    ]  # fmt: skip
    assert spark_job.main(argv) == 0
    spec = json.loads((out / "spec.json").read_text())
    monkeypatch.setenv("FEAST_REGISTRY_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("REDIS_CONNECTION_STRING", f"{redis_server},db=6")
    monkeypatch.setenv("SPARK_MASTER_URL", "local[2]")
    template = FeatureConfig().repo_template
    repo = FeatureRepo(tmp_path / "repo")
    repo.init_from(template, template / "production" / "feature_store.yaml")
    store = repo.store()
    store.apply(repo.definitions(str(out)))

    times = [*CUTOFFS, "2020-03-20"]
    rows = pd.DataFrame(
        [(c, pd.Timestamp(t, tz="UTC")) for t in times for c in IDS],
        columns=["customer_id", "event_timestamp"],
    )
    table = store.get_historical_features(
        entity_df=rows.assign(entity_row=range(len(rows))), features=feature_refs(spec)
    ).to_arrow()
    table = table.take(pc.sort_indices(table["entity_row"]))
    assert_same_features(features_from_arrow(table, spec), embedded.historical_features(rows))

    latest = pd.Timestamp(spec["latest_snapshot"])
    assert latest == pd.Timestamp(embedded.spec["latest_snapshot"])
    for view, start in (("customer_sequences", latest), ("customer_profile", pd.Timestamp(0))):
        store.materialize(
            start_date=start.to_pydatetime(),
            end_date=(latest + pd.Timedelta(seconds=1)).to_pydatetime(),
            feature_views=[view],
        )
    assert_same_features(repo.online_reader(spec).read(IDS), embedded.online_features(IDS))
