"""The Feast repository: `feast apply`, no silent drops, the online store, the CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churn.cli import app
from churn.features.build import build_features, materialize
from churn.features.store import FeatureRepo
from churn.settings import FeatureConfig

CFG = FeatureConfig(bin_days=7, seq_len=8, horizon_days=30)
CUTOFFS = ["2020-02-01", "2020-03-02", "2020-04-01"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> FeatureRepo:
    root = tmp_path_factory.mktemp("fs")
    rows = [
        (
            f"c{i}",
            pd.Timestamp("2020-01-05T10:00:00Z") + pd.Timedelta(days=3 * k + i),
            1.0 + k,
            k % 3,
        )
        for i in range(6)
        for k in range(40)
    ]
    pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "quantity"]).to_parquet(
        root / "tx.parquet"
    )
    pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(6)],
            "signup_date": ["2019-12-01"] * 6,
            "segment": ["a", "b", "a", "b", "a", "c"],
            "age": [20.0, 30, 40, 50, 60, 70],
        }
    ).to_csv(root / "customers.csv", index=False)
    build_features(
        root / "tx.parquet", root / "repo", CFG, customers=root / "customers.csv", cutoffs=CUTOFFS
    )
    return FeatureRepo(root / "repo")


def test_feast_cli_applies_the_checked_in_repo(tmp_path):
    work = tmp_path / "feature_repo"
    shutil.copytree(FeatureConfig().repo_template, work, ignore=shutil.ignore_patterns("data"))
    feast = Path(sys.executable).parent / "feast"
    result = subprocess.run(
        [str(feast), "apply"], cwd=work, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "customer_sequences" in result.stdout
    assert (work / "data" / "registry.db").is_file()


def test_every_entity_row_comes_back_and_unknown_customers_get_zeros(repo):
    t = pd.Timestamp("2020-03-02", tz="UTC")
    entity_rows = pd.DataFrame(
        {
            "customer_id": ["c3", "ghost", "c0", "c3"],
            "event_timestamp": [t, t, t, pd.Timestamp("2020-02-01", tz="UTC")],
        }
    )
    feats = repo.historical_features(entity_rows)
    assert feats.seq.shape == (4, 3, 8)
    assert feats.has_history.tolist() == [True, False, True, True]
    assert not feats.seq[1].any() and not feats.context[1].any()
    assert feats.categorical[:, 0].tolist() == ["b", "", "a", "b"]
    assert feats.numeric[:, 0].tolist() == [50.0, 0.0, 20.0, 50.0]
    # Order follows the entity rows: c3 at two cutoffs differs.
    assert not np.array_equal(feats.seq[0], feats.seq[3])


def test_online_store_serves_the_latest_snapshot(repo):
    result = materialize(repo.path)
    latest = pd.Timestamp(repo.spec["latest_snapshot"])
    assert result == {"snapshot": latest.isoformat(), "customers": 6}
    online = repo.online_features(["c2", "ghost"])
    offline = repo.historical_features(
        pd.DataFrame({"customer_id": ["c2"], "event_timestamp": [latest]})
    )
    np.testing.assert_array_equal(online.seq[0], offline.seq[0])
    np.testing.assert_allclose(online.context[0], offline.context[0])
    assert online.has_history.tolist() == [True, False]


def test_cli_rejects_bad_input_without_leaving_output(tmp_path):
    bad = tmp_path / "tx.csv"
    bad.write_text("customer_id,timestamp,amount\nc1,2020-01-01,5\nc2,not-a-date,5\n")
    runner = CliRunner()
    result = runner.invoke(
        app, ["features", "build", "-t", str(bad), "--repo", str(tmp_path / "repo")]
    )
    assert result.exit_code != 0
    assert "tx.csv: column 'timestamp' has an unparsable timestamp 'not-a-date' at row 2" in str(
        result.exception
    )
    assert not (tmp_path / "repo").exists()


def test_dataset_for_unbuilt_cutoff_is_refused(repo, tmp_path):
    from churn.dataset.build import build_dataset
    from churn.errors import ContractError

    with pytest.raises(ContractError, match=r"cutoffs \['2020-03-15'\] have no feature snapshot"):
        build_dataset(
            repo.path, tmp_path / "ds", 30, cutoffs=["2020-02-01", "2020-03-02", "2020-03-15"]
        )
    assert not (tmp_path / "ds").exists()


def test_online_store_answers_a_request_of_only_unknown_customers(repo):
    # Feast answers all-None columns without a list type; reading them used to crash.
    materialize(repo.path)
    online = repo.online_features(["ghost", "nobody"])
    assert online.has_history.tolist() == [False, False]
    assert not online.seq.any() and not online.context.any() and not online.numeric.any()
    assert online.categorical.tolist() == [[""], [""]]
    assert online.event_ts.tolist() == [0, 0]


def test_online_features_carry_their_snapshot_time(repo):
    materialize(repo.path)
    online = repo.online_features(["c1", "ghost"])
    latest = pd.Timestamp(repo.spec["latest_snapshot"])
    assert online.event_ts.tolist() == [latest.value // 10**9, 0]


def test_an_online_store_never_materialized_is_a_clear_error(repo, tmp_path):
    from churn.features.store import FeatureStoreError

    fresh = tmp_path / "repo"
    shutil.copytree(repo.path, fresh, ignore=shutil.ignore_patterns("online_store.db"))
    with pytest.raises(FeatureStoreError, match="run `churn features materialize`"):
        FeatureRepo(fresh).online_features(["c1"])
