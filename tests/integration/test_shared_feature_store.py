"""The shared feature store: the production configuration against a real redis-server, and
the feature pipeline that fills it, read alike by training and by the transformer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
import yaml

from churn.dataset.training_set import load_training_set
from churn.features.build import build_features, materialize
from churn.features.request import store_input_spec
from churn.features.store import FeatureRepo, Features
from churn.settings import (
    FeatureConfig,
    ModelConfig,
    RegistryConfig,
    Settings,
    TrainConfig,
    TransformerConfig,
)
from serving.transformer import ChurnTransformer

PRODUCTION = Path(__file__).resolve().parents[2] / "feature_repo/production/feature_store.yaml"
CFG = FeatureConfig(bin_days=7, seq_len=8, horizon_days=30)
CUTOFFS = ["2020-02-01", "2020-03-02", "2020-04-01"]
IDS = ["c0", "c3", "ghost", "c5"]
SYNTH = "synth:customers=600,days=240,seed=1"


# Transactions per customer, every 3 days from 2020-01-05: c6, c7 and c8 stop before the
# label windows of the train, validation and test cutoffs, so each split has churners.
COUNTS = [40] * 6 + [7, 17, 27]


def write_log(root: Path) -> tuple[Path, Path]:
    """Nine customers and a customers table (string attributes too)."""
    rows = [
        (
            f"c{i}",
            pd.Timestamp("2020-01-05T10:00:00Z") + pd.Timedelta(days=3 * k + i),
            1.0 + k + i / 7,
            k % 3,
        )
        for i, count in enumerate(COUNTS)
        for k in range(count)
    ]
    pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "quantity"]).to_parquet(
        root / "tx.parquet"
    )
    pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(len(COUNTS))],
            "signup_date": ["2019-12-01"] * len(COUNTS),
            "segment": ["a", "b", "a", "b", "a", "c", "a", "b", "c"],
            "age": [20.0, 30, 40, 50, 60, 70, 25, 35, 45],
        }
    ).to_csv(root / "customers.csv", index=False)
    return root / "tx.parquet", root / "customers.csv"


def production_like(root: Path) -> Path:
    """The production feature_store.yaml with only its offline store swapped for DuckDB.

    Spark's offline store needs a cluster; the registry (SQL) and the online store (Redis)
    stay exactly as production configures them, ${VAR}s included.
    """
    config = yaml.safe_load(PRODUCTION.read_text())
    assert config["registry"]["registry_type"] == "sql"
    assert config["online_store"]["type"] == "redis"
    assert config["online_store"]["connection_string"] == "${REDIS_CONNECTION_STRING}"
    config["offline_store"] = {"type": "churn.features.asof_offline_store.AsofDuckDBOfflineStore"}
    path = root / "feature_store.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[dict]:
    """The log, the production-like configuration, and the environment it reads."""
    root = tmp_path_factory.mktemp("shared")
    tx, customers = write_log(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEAST_REGISTRY_URL", f"sqlite:///{root / 'registry.db'}")
        # This module's own database, so no other test's keys mix in.
        patch.setenv("REDIS_CONNECTION_STRING", f"{redis_server},db=3")
        redis.Redis.from_url(f"redis://{redis_server}/3").flushdb()
        yield {
            "root": root,
            "tx": tx,
            "customers": customers,
            "config": production_like(root),
            "redis": f"redis://{redis_server}/3",
        }


@pytest.fixture(scope="module")
def stores(env: dict) -> tuple[FeatureRepo, FeatureRepo]:
    """The same log built and materialised twice: the embedded SQLite store and Redis."""
    root = env["root"]
    for name, config in (("sqlite", None), ("redis", env["config"])):
        build_features(
            env["tx"],
            root / name,
            CFG,
            customers=env["customers"],
            cutoffs=CUTOFFS,
            store_config=config,
        )
        materialize(root / name)
    return FeatureRepo(root / "sqlite"), FeatureRepo(root / "redis")


def assert_same_features(a: Features, b: Features) -> None:
    np.testing.assert_array_equal(a.has_history, b.has_history)
    np.testing.assert_array_equal(a.seq, b.seq)
    np.testing.assert_array_equal(a.context, b.context)
    np.testing.assert_array_equal(a.numeric, b.numeric)
    np.testing.assert_array_equal(a.categorical, b.categorical)


def transformer_request(root: Path, feature_repo: Path, spec: dict, ids: list[str]):
    """What the transformer builds for ``ids`` (its load and preprocess, without a predictor)."""
    model_dir = root / f"model-{feature_repo.name}"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "model.json").write_text(json.dumps({"input_spec": store_input_spec(spec)}))
    cfg = TransformerConfig(
        model_dir=model_dir, feature_repo=feature_repo, log_uri=str(root / f"log-{model_dir.name}")
    )
    transformer = ChurnTransformer("churn", cfg)
    transformer.load()
    try:
        batch = asyncio.run(
            transformer.preprocess({"instances": [{"customer_id": c} for c in ids]})
        )
    finally:
        transformer.stop()
    return batch.request


def serving_folder(root: Path, config: Path) -> Path:
    """A folder holding only the store's configuration, as the transformer's ConfigMap gives
    it in the cluster: the definitions come from the SQL registry, the values from Redis."""
    folder = root / f"serving-{config.parent.name}"
    folder.mkdir(exist_ok=True)
    (folder / "feature_store.yaml").write_text(config.read_text())
    return folder


def online_entities(repo: FeatureRepo) -> int:
    """How many customers the online store holds a hash for: those of the latest snapshot, and
    every customer with a profile (materialised from the customers table)."""
    rows = pd.read_parquet(
        repo.sources / "sequences.parquet", columns=["customer_id", "snapshot_ts"]
    )
    latest = pd.Timestamp(repo.spec["latest_snapshot"])
    ids = set(rows.loc[rows["snapshot_ts"] == latest, "customer_id"].astype(str))
    profile = pd.read_parquet(repo.sources / "customers.parquet", columns=["customer_id"])
    return len(ids | set(profile["customer_id"].astype(str)))


def test_the_production_store_fills_an_sql_registry_and_a_real_redis(env, stores) -> None:
    _, on_redis = stores
    # One hash per customer.
    assert redis.Redis.from_url(env["redis"]).dbsize() == online_entities(on_redis) == 9
    assert (env["root"] / "registry.db").is_file()
    assert not (on_redis.path / "data" / "online_store.db").exists()
    assert {v.name for v in on_redis.store().list_feature_views()} == {
        "customer_sequences",
        "customer_profile",
    }


def test_redis_serves_exactly_what_sqlite_serves(stores) -> None:
    on_sqlite, on_redis = stores
    a, b = on_sqlite.online_features(IDS), on_redis.online_features(IDS)
    assert a.has_history.tolist() == [True, True, False, True]
    assert a.seq[0].any() and a.categorical[:, 0].tolist() == ["a", "b", "", "c"]
    assert_same_features(a, b)
    np.testing.assert_array_equal(a.event_ts, b.event_ts)


def test_the_transformer_reads_from_redis_what_it_reads_from_sqlite(env, stores) -> None:
    on_sqlite, on_redis = stores
    spec = on_sqlite.spec
    from_sqlite = transformer_request(env["root"], on_sqlite.path, spec, IDS)
    from_redis = transformer_request(
        env["root"], serving_folder(env["root"], on_redis.path / "feature_store.yaml"), spec, IDS
    )
    assert from_sqlite.known.tolist() == [True, True, False, True]
    assert from_redis.instances == from_sqlite.instances
    np.testing.assert_array_equal(from_redis.feature_ts, from_sqlite.feature_ts)
    np.testing.assert_array_equal(from_redis.known, from_sqlite.known)


@pytest.mark.slow
def test_the_feature_pipeline_feeds_training_and_serving_the_same_features(
    env: dict, tmp_path: Path
) -> None:
    """kfp.local runs of both pipelines: features into the shared store, then training on it."""
    import kfp.local

    from pipelines.catalog import build
    from pipelines.local import run_local

    home = tmp_path / "home"
    shared = tmp_path / "shared-store"
    settings = Settings(
        home=home,
        features=FeatureConfig(
            bin_days=7,
            seq_len=12,
            horizon_days=30,
            cutoff_step_days=15,
            n_train_cutoffs=3,
            shared_store=str(shared),
            shared_store_config=str(env["config"]),
        ),
        model=ModelConfig(hidden=8, dilations=[1, 2], embedding_dim=2, head_hidden=8),
        train=TrainConfig(epochs=1, batch_size=256),
        registry=RegistryConfig(uri=str(home / "registry")),
    )
    redis.Redis.from_url(env["redis"]).flushdb()
    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "pr")
    )
    build("features", settings)(data=SYNTH)
    store = FeatureRepo(shared)
    latest = pd.Timestamp(store.spec["latest_snapshot"])
    assert redis.Redis.from_url(env["redis"]).dbsize() == online_entities(store) > 100

    summary = run_local(
        settings,
        {
            "data": SYNTH,
            "auc_threshold": 0.0,
            "refuse_below_baseline": False,
            "deploy_target": "none",
        },
    )
    run_dir = Path(summary["run_dir"])
    (pointer,) = run_dir.rglob("shared-store.json")
    assert json.loads(pointer.read_text())["shared_store"] == str(shared)
    assert not list(run_dir.rglob("sequences.parquet")), "the run built its own features"
    (meta,) = run_dir.rglob("meta.json")
    training = load_training_set(meta.parent)

    # Training: each row of the run's training set holds the shared store's features of its
    # customer at its cutoff.
    split = training.splits["train"]
    rows = pd.DataFrame(
        {
            "customer_id": split.customer_id[:200],
            "event_timestamp": pd.to_datetime(split.cutoff[:200], unit="s", utc=True),
        }
    )
    offline = store.historical_features(rows)
    np.testing.assert_array_equal(split.seq[:200], offline.seq)
    np.testing.assert_array_equal(
        split.num[:200], np.concatenate([offline.context, offline.numeric], axis=1)
    )

    # Training and serving at the same customer and time: the point-in-time read that the
    # training-set build makes, at the snapshot the transformer serves from Redis.
    snapshot = pd.read_parquet(store.sources / "sequences.parquet")
    ids = [*sorted(snapshot.loc[snapshot["snapshot_ts"] == latest, "customer_id"])[:20], "ghost"]
    at_latest = store.historical_features(
        pd.DataFrame({"customer_id": ids, "event_timestamp": [latest] * len(ids)})
    )
    served = transformer_request(
        tmp_path, serving_folder(tmp_path, shared / "feature_store.yaml"), store.spec, ids
    )
    assert served.known.tolist() == at_latest.has_history.tolist() == [True] * 20 + [False]
    assert (served.feature_ts[:20] == latest.timestamp()).all()
    assert served.seq[:20].any()
    np.testing.assert_array_equal(served.seq, at_latest.seq)
    np.testing.assert_array_equal(
        served.num, np.concatenate([at_latest.context, at_latest.numeric], axis=1)
    )
    assert store.spec["categorical_attributes"]
    for k, name in enumerate(store.spec["categorical_attributes"]):
        served_values = [i["categorical"][name] or "" for i in served.instances]
        assert served_values == at_latest.categorical[:, k].tolist()
