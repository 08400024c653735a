"""Point-in-time correctness through the real Feast stores, on crafted data.

Cutoffs: train 2020-01-01, validation 2020-02-01, test 2020-03-02, horizon 30 days. Customer
``probe`` buys for 777.0 exactly one second after the test cutoff; customer ``edge`` buys for
555.0 exactly at the test cutoff.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.dataset.build import build_dataset
from churn.dataset.training_set import load_training_set
from churn.features.build import build_features
from churn.settings import FeatureConfig

CUTOFFS = ["2020-01-01", "2020-02-01", "2020-03-02"]
TEST_CUTOFF = pd.Timestamp("2020-03-02", tz="UTC")
CFG = FeatureConfig(bin_days=1, seq_len=28, horizon_days=30)


def _log(with_probe: bool) -> pd.DataFrame:
    rows = []
    # Background customers: some keep buying (label 0), some stop (label 1), at every cutoff.
    for i in range(12):
        last = (
            pd.Timestamp("2020-04-20", tz="UTC") if i % 2 else pd.Timestamp("2019-12-20", tz="UTC")
        )
        for day in pd.date_range(pd.Timestamp("2019-12-10", tz="UTC"), last, freq="9D"):
            rows.append((f"bg{i}", day + pd.Timedelta(hours=i), 10.0 + i))
    rows.append(("probe", pd.Timestamp("2020-02-20T08:00:00Z"), 5.0))
    rows.append(("edge", pd.Timestamp("2020-02-20T08:00:00Z"), 5.0))
    rows.append(("edge", TEST_CUTOFF, 555.0))
    if with_probe:
        rows.append(("probe", TEST_CUTOFF + pd.Timedelta(seconds=1), 777.0))
    rows.append(("bg0", pd.Timestamp("2020-04-30T00:00:00Z"), 1.0))  # observation end
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = {}
    for with_probe in (True, False):
        root = tmp_path_factory.mktemp(f"pit_{with_probe}")
        _log(with_probe).to_parquet(root / "tx.parquet")
        build_features(root / "tx.parquet", root / "repo", CFG, cutoffs=CUTOFFS)
        build_dataset(root / "repo", root / "ds", horizon_days=30)
        out[with_probe] = load_training_set(root / "ds")
    return out


def _row(ts, customer):
    test = ts.splits["test"]
    (idx,) = np.flatnonzero(test.customer_id == customer)
    return test.seq[idx], test.y[idx], test.cutoff[idx]


def test_purchase_one_second_after_cutoff_is_not_a_feature_but_flips_the_label(built):
    seq_with, y_with, cutoff = _row(built[True], "probe")
    seq_without, y_without, _ = _row(built[False], "probe")
    assert cutoff == TEST_CUTOFF.value // 10**9
    assert 777.0 not in seq_with
    np.testing.assert_array_equal(seq_with, seq_without)
    assert y_with == 0.0  # bought inside (t, t + H]
    assert y_without == 1.0


def test_purchase_exactly_at_cutoff_is_in_the_last_bin(built):
    seq, y, _ = _row(built[True], "edge")
    spend = seq[1]
    assert spend[-1] == 555.0
    assert y == 1.0  # the purchase at t is history, not future


def test_every_split_uses_only_its_own_cutoffs(built):
    ts = built[True]
    for name, cutoff in zip(("train", "val", "test"), CUTOFFS, strict=True):
        assert set(ts.splits[name].cutoff.tolist()) == {
            pd.Timestamp(cutoff, tz="UTC").value // 10**9
        }
    assert ts.meta["splits"]["test"]["rows"] == len(ts.splits["test"])


def test_normalisation_statistics_come_from_the_training_split_only(built, tmp_path):
    from churn.dataset.training_set import normalisation_stats

    ts = built[True]
    assert ts.meta["norm"] == normalisation_stats(ts.splits["train"])
    assert ts.meta["norm"] != normalisation_stats(ts.splits["test"])


def test_an_attribute_is_unknown_until_its_signup_to_the_nanosecond(tmp_path):
    # Sources carry microseconds (Spark reads no finer): a signup 500 ns after a cutoff must
    # round to after it, not onto it, or its attributes would be known at the cutoff.
    from churn.features.store import FeatureRepo

    cutoff = pd.Timestamp(CUTOFFS[1], tz="UTC")
    tx = pd.DataFrame(
        {
            "customer_id": ["before", "after"],
            "timestamp": [cutoff - pd.Timedelta(days=40)] * 2,
            "amount": [1.0, 1.0],
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["before", "after"],
            "signup_date": [cutoff - pd.Timedelta(nanoseconds=500), cutoff + pd.Timedelta(500)],
            "segment": ["a", "b"],
        }
    )
    tx.to_parquet(tmp_path / "tx.parquet")
    customers.to_parquet(tmp_path / "customers.parquet")
    build_features(
        tmp_path / "tx.parquet",
        tmp_path / "repo",
        CFG,
        customers=tmp_path / "customers.parquet",
        cutoffs=CUTOFFS[:2],
    )
    repo = FeatureRepo(tmp_path / "repo")
    rows = pd.DataFrame({"customer_id": ["before", "after"], "event_timestamp": [cutoff] * 2})
    assert repo.historical_features(rows).categorical[:, 0].tolist() == ["a", ""]
