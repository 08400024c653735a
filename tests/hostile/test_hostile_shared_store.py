"""The shared feature store on bad settings, a store nobody built, a Redis that is down and an
interrupted refresh: one clear error, nothing half-written, serving keeps what it had."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
import yaml

from churn.errors import ContractError, OutputError
from churn.features import store as store_module
from churn.features.shared import describe_shared_store, publish_features
from churn.features.store import FeatureRepo, FeatureStoreError
from churn.settings import FeatureConfig
from components import data as steps

PRODUCTION = Path(__file__).resolve().parents[2] / "feature_repo/production/feature_store.yaml"
CFG = FeatureConfig(bin_days=7, seq_len=8, horizon_days=30)


def _log(path: Path) -> Path:
    rows = [
        (f"c{i}", pd.Timestamp("2020-01-05T10:00:00Z") + pd.Timedelta(days=3 * k + i), 1.0 + k)
        for i in range(4)
        for k in range(40)
    ]
    pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"]).to_parquet(path)
    return path


def _cfg(store: Path, config: Path | None = None) -> FeatureConfig:
    return CFG.model_copy(
        update={"shared_store": str(store), "shared_store_config": config and str(config)}
    )


def _churn(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from churn.cli import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("value", ["s3://bucket/features", " "])
def test_a_shared_store_that_is_not_a_path_is_one_error_line_naming_the_field(
    tmp_path: Path, value: str
) -> None:
    out = tmp_path / "f.yaml"
    done = _churn(
        "pipeline", "compile", "--pipeline", "features", "--out", str(out),
        CHURN_FEATURES__SHARED_STORE=value,
    )  # fmt: skip
    assert done.returncode == 2
    assert "features.shared_store" in done.stderr and "not a URI" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_a_missing_store_config_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with pytest.raises(FeatureStoreError, match=r"missing\.yaml \(features\.shared_store_config"):
        publish_features(_log(tmp_path / "tx.parquet"), _cfg(store, tmp_path / "missing.yaml"))
    assert not store.exists()


def test_training_on_a_shared_store_nobody_built_says_to_run_the_feature_pipeline(
    tmp_path: Path,
) -> None:
    from kfp import dsl

    cfg = _cfg(tmp_path / "never-built")
    struct = {"shared_store": cfg.shared_store, "bin_days": 7, "seq_len": 8}
    artifact = dsl.Dataset(uri=str(tmp_path / "feature_repo"))
    with pytest.raises(FeatureStoreError, match=r"never-built.*run the feature pipeline"):
        steps.build_features("cdnow", "", "", 30, struct, "", artifact)
    assert not (tmp_path / "feature_repo").exists()


def test_cutoffs_for_a_training_run_on_the_shared_store_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="pass cutoffs to the feature pipeline"):
        describe_shared_store(_cfg(tmp_path / "store"), "2020-02-01")


def _production_like(tmp_path: Path, redis_address: str, monkeypatch) -> Path:
    config = yaml.safe_load(PRODUCTION.read_text())
    config["offline_store"] = {"type": "churn.features.asof_offline_store.AsofDuckDBOfflineStore"}
    path = tmp_path / "feature_store.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("FEAST_REGISTRY_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("REDIS_CONNECTION_STRING", redis_address)
    return path


def test_a_redis_that_is_down_is_a_clear_error_not_empty_features(
    tmp_path: Path, redis_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _production_like(tmp_path, f"{redis_server},db=5", monkeypatch)
    cfg = _cfg(tmp_path / "store", config)
    publish_features(_log(tmp_path / "tx.parquet"), cfg)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("REDIS_CONNECTION_STRING", f"127.0.0.1:{closed}")
    repo = FeatureRepo(tmp_path / "store")
    with pytest.raises(FeatureStoreError, match=r"cannot be read \(ConnectionError"):
        repo.online_features(["c0"])


def test_an_interrupted_refresh_leaves_the_store_serving_what_it_had(
    tmp_path: Path, redis_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _production_like(tmp_path, f"{redis_server},db=6", monkeypatch)
    redis.Redis.from_url(f"redis://{redis_server}/6").flushdb()
    cfg = _cfg(tmp_path / "store", config)
    tx = _log(tmp_path / "tx.parquet")
    publish_features(tx, cfg)
    repo = FeatureRepo(tmp_path / "store")
    spec_before = json.loads((repo.sources / "spec.json").read_text())
    served_before = repo.online_features(["c0", "c3"])

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    # A later log (one more week) whose refresh is interrupted while it writes the sources.
    longer = pd.read_parquet(tx)
    later = longer.assign(timestamp=longer["timestamp"] + pd.Timedelta(days=7))
    later.to_parquet(tmp_path / "later.parquet")
    monkeypatch.setattr(store_module.pq, "write_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        publish_features(tmp_path / "later.parquet", cfg)
    monkeypatch.undo()
    monkeypatch.setenv("FEAST_REGISTRY_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("REDIS_CONNECTION_STRING", f"{redis_server},db=6")
    assert json.loads((repo.sources / "spec.json").read_text()) == spec_before
    served_after = repo.online_features(["c0", "c3"])
    np.testing.assert_array_equal(served_after.seq, served_before.seq)
    np.testing.assert_array_equal(served_after.event_ts, served_before.event_ts)
    leftovers = [p.name for p in (repo.path / "data").iterdir() if p.name != "sources"]
    assert leftovers == [], leftovers


def test_a_store_config_reading_an_unset_variable_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Feast would leave "${SPARK_MASTER_URL}" as it is and Spark fail on it as a master URL.
    monkeypatch.setenv("FEAST_REGISTRY_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("REDIS_CONNECTION_STRING", "127.0.0.1:1")
    monkeypatch.delenv("SPARK_MASTER_URL", raising=False)
    store = tmp_path / "store"
    with pytest.raises(FeatureStoreError, match=r"reads SPARK_MASTER_URL from the environment"):
        publish_features(_log(tmp_path / "tx.parquet"), _cfg(store, Path("production")))
    assert not store.exists()


def test_training_on_a_shared_store_names_a_variable_its_config_reads_and_nobody_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = yaml.safe_load((CFG.repo_template / "feature_store.yaml").read_text())
    config["online_store"]["path"] = "${CHURN_TEST_ONLINE_DIR}/online_store.db"
    (tmp_path / "feature_store.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("CHURN_TEST_ONLINE_DIR", str(tmp_path))
    cfg = _cfg(tmp_path / "store", tmp_path / "feature_store.yaml")
    publish_features(_log(tmp_path / "tx.parquet"), cfg)
    assert (tmp_path / "online_store.db").is_file()
    monkeypatch.delenv("CHURN_TEST_ONLINE_DIR")
    with pytest.raises(FeatureStoreError, match=r"reads CHURN_TEST_ONLINE_DIR from the env"):
        describe_shared_store(cfg)


def test_the_shared_store_may_be_the_root_of_a_fresh_ext4_volume(tmp_path: Path) -> None:
    # A PersistentVolumeClaim of a block or Filestore class holds lost+found before any write.
    store = tmp_path / "volume"
    (store / "lost+found").mkdir(parents=True)
    publish_features(_log(tmp_path / "tx.parquet"), _cfg(store))
    assert FeatureRepo(store).spec["channels"] == ["n_txn", "spend"]
    assert (store / "lost+found").is_dir()


def test_a_volume_root_holding_anything_else_is_still_refused(tmp_path: Path) -> None:
    store = tmp_path / "volume"
    (store / "lost+found").mkdir(parents=True)
    (store / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not an earlier feature repository"):
        publish_features(_log(tmp_path / "tx.parquet"), _cfg(store))
    assert sorted(p.name for p in store.iterdir()) == ["lost+found", "notes.txt"]


@pytest.mark.parametrize("value", ["$CHURN_TEST_DIR", "${CHURN_TEST_DIR}"])
def test_both_forms_of_a_variable_are_checked_and_empty_counts_as_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    config = yaml.safe_load((CFG.repo_template / "feature_store.yaml").read_text())
    config["online_store"]["path"] = f"{value}/online_store.db"
    (tmp_path / "feature_store.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("CHURN_TEST_DIR", "")
    store = tmp_path / "store"
    with pytest.raises(FeatureStoreError, match=r"reads CHURN_TEST_DIR from the environment"):
        publish_features(
            _log(tmp_path / "tx.parquet"), _cfg(store, tmp_path / "feature_store.yaml")
        )
    assert not store.exists()
