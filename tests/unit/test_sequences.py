"""Daily activity and snapshots: exact right-closed bins, context, and the cutoff schedule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.data.contract import validate_transactions
from churn.data.cutoffs import default_cutoffs, parse_cutoffs, split_cutoffs
from churn.dataset.labels import label_cutoffs
from churn.errors import ContractError
from churn.features.activity import channel_names, daily_activity
from churn.features.sequences import build_snapshots

CUTOFF = pd.Timestamp("2020-03-01", tz="UTC")


def _tx(rows):
    return validate_transactions(
        pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "quantity"])
    )


def _snap(tx, cutoffs=(CUTOFF,), bin_days=1, seq_len=5):
    channels = channel_names(tx)
    activity = daily_activity(tx, channels)
    return build_snapshots(activity, channels, list(cutoffs), bin_days, seq_len)


def test_bins_are_right_closed_and_end_at_the_cutoff():
    tx = _tx(
        [
            ("a", "2020-03-01T00:00:00Z", 10.0, 1),  # exactly at the cutoff: last bin
            ("a", "2020-02-29T00:00:01Z", 3.0, 2),  # one second into the last day: last bin
            ("a", "2020-02-29T00:00:00Z", 4.0, 1),  # exactly one day before: second-to-last
            ("a", "2020-02-25T12:00:00Z", 1.0, 1),  # 4.5 days before: first bin
            ("a", "2020-02-24T12:00:00Z", 99.0, 1),  # 5.5 days before: outside L=5
            ("a", "2020-03-01T00:00:01Z", 1000.0, 1),  # one second after: never
        ]
    )
    snap = _snap(tx)
    spend = snap.seq[0, 1]
    np.testing.assert_array_equal(spend, [1.0, 0.0, 0.0, 4.0, 13.0])
    np.testing.assert_array_equal(snap.seq[0, 0], [1, 0, 0, 1, 2])
    np.testing.assert_array_equal(snap.seq[0, 2], [1, 0, 0, 1, 3])


def test_weekly_bins_aggregate_seven_days_back_from_the_cutoff():
    tx = _tx([("a", "2020-02-23T00:00:00Z", 1.0, 1), ("a", "2020-02-22T23:59:59Z", 2.0, 1)])
    snap = _snap(tx, bin_days=7, seq_len=2)
    # (Feb 23, Mar 1] is the last week; Feb 23 00:00:00 closes the week before.
    np.testing.assert_array_equal(snap.seq[0, 1], [3.0, 0.0])


def test_context_features_are_point_in_time():
    tx = _tx(
        [
            ("a", "2020-01-01T12:00:00Z", 10.0, 1),
            ("a", "2020-02-20T12:00:00Z", 30.0, 1),
            ("a", "2020-03-05T12:00:00Z", 500.0, 1),
        ]
    )
    snap = _snap(tx)
    tenure, recency, frequency, monetary = snap.context[0]
    assert tenure == (pd.Timestamp("2020-03-01") - pd.Timestamp("2020-01-02")).days
    assert recency == (pd.Timestamp("2020-03-01") - pd.Timestamp("2020-02-21")).days
    assert frequency == 2
    assert monetary == 20.0


def test_a_signup_counts_on_the_same_right_closed_day_as_a_purchase():
    tx = _tx([("a", "2020-02-20T08:00:00Z", 10.0, 1), ("b", "2020-02-20T08:00:00Z", 10.0, 1)])
    channels = channel_names(tx)
    signup = pd.DataFrame(
        {"customer_id": ["a"], "signup_date": pd.to_datetime(["2020-02-20T08:00:00Z"], utc=True)}
    )
    snap = build_snapshots(daily_activity(tx, channels), channels, [CUTOFF], 1, 5, signup=signup)
    tenure = dict(zip(snap.customer_id, snap.context[:, 0], strict=True))
    # Signup and first purchase in the same hour: the same tenure as without a signup row.
    assert tenure["a"] == tenure["b"] == 9


def test_snapshots_hold_only_customers_seen_by_each_cutoff():
    tx = _tx([("a", "2020-01-10", 1.0, 1), ("b", "2020-03-10", 1.0, 1)])
    later = pd.Timestamp("2020-04-01", tz="UTC")
    snap = _snap(tx, cutoffs=(CUTOFF, later))
    assert list(zip(snap.customer_id, snap.snapshot_ts, strict=True)) == [
        ("a", CUTOFF.value),
        ("a", later.value),
        ("b", later.value),
    ]
    # Customer a is inactive in the window before `later`: an explicit all-zero sequence.
    assert snap.seq[1].sum() == 0


def test_labels_use_the_half_open_horizon():
    tx = _tx(
        [
            ("a", "2020-02-15", 1.0, 1),
            ("a", "2020-03-01T00:00:00Z", 1.0, 1),  # at the cutoff: feature, not label
            ("b", "2020-02-15", 1.0, 1),
            ("b", "2020-03-31T00:00:00Z", 1.0, 1),  # exactly t + 30 days: inside the window
            ("c", "2020-02-15", 1.0, 1),
            ("c", "2020-03-31T00:00:01Z", 1.0, 1),  # one second past the window
        ]
    )
    labels = label_cutoffs(tx, [CUTOFF], 30, 60, pd.Timestamp("2020-06-01", tz="UTC"))
    assert dict(zip(labels["customer_id"], labels["label"], strict=True)) == {
        "a": 1,
        "b": 0,
        "c": 1,
    }


def test_no_labels_without_a_full_horizon():
    tx = _tx([("a", "2020-02-15", 1.0, 1)])
    labels = label_cutoffs(tx, [CUTOFF], 30, 60, pd.Timestamp("2020-03-30T23:59:59Z"))
    assert labels.empty


def test_inactive_customers_are_not_labelled():
    tx = _tx([("a", "2019-01-15", 1.0, 1), ("b", "2020-02-15", 1.0, 1)])
    labels = label_cutoffs(tx, [CUTOFF], 30, 60, pd.Timestamp("2020-06-01", tz="UTC"))
    assert labels["customer_id"].tolist() == ["b"]


def test_cutoffs_must_be_midnight_utc():
    with pytest.raises(ContractError, match="not at midnight UTC"):
        parse_cutoffs(["2020-03-01T12:00:00"])
    assert parse_cutoffs(["2020-03-02", "2020-03-01"])[0] == CUTOFF


def test_splits_never_let_a_label_window_reach_a_later_split():
    cutoffs = default_cutoffs(pd.Timestamp("1998-06-30T12:00Z"), 90, 30, 3)
    splits = split_cutoffs(cutoffs, 90)
    horizon = pd.Timedelta(days=90)
    assert all(t + horizon <= splits["val"][0] for t in splits["train"])
    assert splits["val"][0] + horizon <= splits["test"][0]
    assert splits["test"][0] + horizon <= pd.Timestamp("1998-06-30T12:00Z")
    with pytest.raises(ContractError, match="no validation cutoff"):
        split_cutoffs(parse_cutoffs(["2020-01-01", "2020-02-01"]), 90)
