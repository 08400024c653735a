"""The Spark feature job against the pandas path: same rows, same values, on crafted data and
on CDNOW, through the library, ``churn features build --engine spark`` and the job's entry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churn.data.cdnow import load_cdnow
from churn.data.contract import validate_transactions
from churn.features import spark_job
from churn.features.activity import channel_names, daily_activity
from churn.features.sequences import Snapshots, build_snapshots
from churn.settings import FeatureConfig

CUTOFFS = [pd.Timestamp(d, tz="UTC") for d in ("2020-01-01", "2020-02-01", "2020-03-02")]
LATEST = pd.Timestamp("2020-05-01", tz="UTC")


def crafted_log() -> pd.DataFrame:
    """Events at and one second after midnights, idle customers, late starters, an extra
    channel; the point-in-time test's log plus the cases where right-closed days matter."""
    rows = []
    for i in range(12):
        last = (
            pd.Timestamp("2020-04-20", tz="UTC") if i % 2 else pd.Timestamp("2019-12-20", tz="UTC")
        )
        for day in pd.date_range(pd.Timestamp("2019-06-10", tz="UTC"), last, freq="9D"):
            rows.append((f"bg{i}", day + pd.Timedelta(hours=i), 10.0 + i, float(i % 3)))
    rows.append(("probe", pd.Timestamp("2020-02-20T08:00:00Z"), 5.0, 1.0))
    rows.append(("probe", CUTOFFS[2] + pd.Timedelta(seconds=1), 777.0, 2.0))
    rows.append(("edge", pd.Timestamp("2020-02-20T08:00:00Z"), 5.0, 1.0))
    rows.append(("edge", CUTOFFS[2], 555.0, 3.0))
    rows.append(("edge", CUTOFFS[0], 0.25, 0.0))  # exactly at the first cutoff: inside it
    rows.append(("late", CUTOFFS[1] + pd.Timedelta(microseconds=1), 1.5, 1.0))  # next day
    rows.append(("old", pd.Timestamp("2018-01-01T23:59:59Z"), 3.0, 1.0))  # outside every window
    rows.append(("bg0", pd.Timestamp("2020-04-30T00:00:00Z"), 1.0, 0.0))
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "quantity"])
    return validate_transactions(frame)


def crafted_customers() -> pd.DataFrame:
    # bg1 signed up before its first event, probe after it, edge not at all.
    return pd.DataFrame(
        {
            "customer_id": ["bg1", "probe", "late", "old"],
            "signup_date": pd.to_datetime(
                [
                    "2019-01-05T10:00:00Z",
                    "2020-03-01T00:00:00Z",
                    "2020-02-01T00:00:00Z",
                    "2017-05-05T00:00:00Z",
                ],
                utc=True,
            ),
        }
    )


def pandas_snapshots(tx, cutoffs, bin_days, seq_len, signup=None) -> Snapshots:
    channels = channel_names(tx)
    activity = daily_activity(tx, channels)
    return build_snapshots(activity, channels, cutoffs, bin_days, seq_len, signup=signup)


def spark_snapshots(tx, cutoffs, bin_days, seq_len, signup=None) -> Snapshots:
    cfg = FeatureConfig(bin_days=bin_days, seq_len=seq_len, engine="spark")
    return spark_job.snapshots_from_pandas(tx, channel_names(tx), cutoffs, cfg, signup=signup)


def assert_same_tables(left: Snapshots, right: Snapshots) -> None:
    assert left.channels == right.channels
    np.testing.assert_array_equal(left.customer_id, right.customer_id)
    np.testing.assert_array_equal(left.snapshot_ts, right.snapshot_ts)
    assert left.seq.dtype == right.seq.dtype == np.float32
    # float64 sums in another order may differ in the last bit; float32 keeps ~7 digits.
    np.testing.assert_allclose(left.seq, right.seq, rtol=2e-7, atol=0)
    np.testing.assert_allclose(left.context, right.context, rtol=2e-7, atol=0)


@pytest.mark.parametrize(("bin_days", "seq_len"), [(1, 28), (7, 10), (3, 400)])
def test_spark_snapshots_equal_the_pandas_ones_on_crafted_point_in_time_data(
    spark, bin_days, seq_len
):
    tx = crafted_log()
    times = [*CUTOFFS, LATEST]
    expected = pandas_snapshots(tx, times, bin_days, seq_len, crafted_customers())
    got = spark_snapshots(tx, times, bin_days, seq_len, crafted_customers())
    assert len(expected) == 4 * 14 + 2 + 2  # bg*, old, edge at every time; probe, late later
    assert_same_tables(expected, got)


def test_spark_keeps_a_purchase_at_the_cutoff_and_leaves_one_a_second_later_out(spark):
    got = spark_snapshots(crafted_log(), CUTOFFS, 1, 28)
    at_test = got.snapshot_ts == CUTOFFS[2].value
    spend = got.channels.index("spend")
    (edge,) = np.flatnonzero(at_test & (got.customer_id == "edge"))
    (probe,) = np.flatnonzero(at_test & (got.customer_id == "probe"))
    assert got.seq[edge, spend, -1] == 555.0
    assert 777.0 not in got.seq[probe]
    # "late" bought one microsecond after the second cutoff: not a customer at it yet.
    assert "late" not in got.customer_id[got.snapshot_ts == CUTOFFS[1].value]


def test_spark_without_a_customers_table_counts_tenure_from_the_first_event(spark):
    tx = crafted_log()
    assert_same_tables(pandas_snapshots(tx, CUTOFFS, 7, 8), spark_snapshots(tx, CUTOFFS, 7, 8))


@pytest.mark.slow
def test_spark_snapshots_equal_the_pandas_ones_on_cdnow(spark):
    tx = load_cdnow()
    times = [pd.Timestamp(d, tz="UTC") for d in ("1997-06-01", "1997-09-29", "1998-01-27")]
    times.append(tx["timestamp"].max().ceil("D"))
    expected = pandas_snapshots(tx, times, 7, 52)
    got = spark_snapshots(tx, times, 7, 52)
    assert len(expected) > 80_000
    assert expected.channels == ["n_txn", "spend", "quantity"]
    assert_same_tables(expected, got)


def _build(tmp_path, engine, log, customers):
    from typer.testing import CliRunner

    from churn.cli import app
    from churn.features.store import FeatureRepo

    args = ["features", "build", "-t", str(log), "--customers", str(customers)]
    args += ["--repo", str(tmp_path / engine), "--cutoffs", "2020-01-01,2020-03-02"]
    args += ["--bin-days", "1", "--seq-len", "28", "--engine", engine]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return FeatureRepo(tmp_path / engine)


def test_features_build_engine_spark_writes_the_same_feast_sources_and_feast_reads_them(
    spark, tmp_path, monkeypatch
):
    calls = []
    real = spark_job.snapshots_from_pandas

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(spark_job, "snapshots_from_pandas", spy)
    log, customers = tmp_path / "tx.parquet", tmp_path / "customers.parquet"
    crafted_log().to_parquet(log)
    crafted_customers().assign(region="eu").to_parquet(customers)
    repos = {e: _build(tmp_path, e, log, customers) for e in ("pandas", "spark")}
    assert len(calls) == 1  # the Spark engine ran once, for --engine spark only
    tables = {e: pq.read_table(r.sources / "sequences.parquet") for e, r in repos.items()}
    assert tables["spark"].schema == tables["pandas"].schema
    assert tables["spark"].equals(tables["pandas"])
    entity = pd.DataFrame(
        {"customer_id": ["edge", "bg3", "nobody"], "event_timestamp": [CUTOFFS[2]] * 3}
    )
    feats = {e: r.historical_features(entity) for e, r in repos.items()}
    np.testing.assert_array_equal(feats["spark"].seq, feats["pandas"].seq)
    assert feats["spark"].seq[0, 1, -1] == 555.0


def job_argv(log, customers, out) -> list[str]:
    """The job's command line over the crafted cutoffs, daily bins of 28 days."""
    return [
        "--transactions", str(log), "--customers", str(customers), "--out", str(out),
        "--bin-days", "1", "--seq-len", "28", "--cutoffs", "2020-01-01,2020-02-01,2020-03-02",
        "--observed-until", "2020-04-30T12:00:00Z",
    ]  # fmt: skip


def test_the_job_entry_writes_the_tables_and_spec_the_feast_definitions_read(spark, tmp_path):
    log, customers = tmp_path / "tx.csv", tmp_path / "customers.csv"
    crafted_log().to_csv(log, index=False)
    crafted_customers().assign(score=[1, 2, 3, 4]).to_csv(customers, index=False)
    out = tmp_path / "features"
    assert spark_job.main(job_argv(log, customers, out)) == 0
    spec = json.loads((out / "spec.json").read_text())
    assert spec["channels"] == ["n_txn", "spend", "quantity"]
    assert spec["numeric_attributes"] == ["score"]
    assert spec["latest_snapshot"] == LATEST.isoformat()
    written = pq.read_table(out / "sequences.parquet")
    got = spark_job.to_snapshots(written, spec["channels"], 28)
    signup = pd.read_csv(customers, dtype={"customer_id": str}, parse_dates=["signup_date"])
    expected = pandas_snapshots(crafted_log(), [*CUTOFFS, LATEST], 1, 28, signup)
    assert_same_tables(expected, got)
    assert pq.read_table(out / "transactions.parquet").num_rows == len(crafted_log())
    assert pq.read_table(out / "customers.parquet").schema.field("score").type == "float"


def test_the_job_reads_parquet_that_pandas_wrote_with_nanosecond_timestamps(spark, tmp_path):
    # pandas and `churn data synth` write TIMESTAMP(NANOS), which Spark 4 refuses by default.
    # An event 500 ns after midnight (and a signup) lands on the day pandas gives it.
    tx = nano_log()
    signup = crafted_customers()
    # late signed up at the second cutoff's midnight: 1 ns later is after it.
    late = signup["customer_id"] == "late"
    signup.loc[late, "signup_date"] += pd.Timedelta(nanoseconds=1)
    log, customers = tmp_path / "tx.parquet", tmp_path / "customers.parquet"
    tx.to_parquet(log)
    signup.to_parquet(customers)
    assert pq.read_schema(log).field("timestamp").type.unit == "ns"
    out = tmp_path / "features"
    assert spark_job.main(job_argv(log, customers, out)) == 0
    got = spark_job.to_snapshots(pq.read_table(out / "sequences.parquet"), [*channel_names(tx)], 28)
    expected = pandas_snapshots(tx, [*CUTOFFS, LATEST], 1, 28, signup)
    assert_same_tables(expected, got)
    # Rounded up to the microsecond: after the midnight, so not in that cutoff's snapshot.
    at = pd.DatetimeIndex(pd.to_datetime(got.snapshot_ts, utc=True))
    with_nano = set(at[got.customer_id == "nano"])
    assert CUTOFFS[1] not in with_nano and CUTOFFS[2] in with_nano


def nano_log() -> pd.DataFrame:
    """The crafted log and one purchase 500 ns after the second cutoff's midnight."""
    nano = pd.DataFrame(
        {
            "customer_id": ["nano"],
            "timestamp": [CUTOFFS[1] + pd.Timedelta(nanoseconds=500)],
            "amount": [2.5],
            "quantity": [1.0],
        }
    )
    return pd.concat([crafted_log(), validate_transactions(nano)], ignore_index=True)


def test_the_spark_engine_keeps_an_event_500_ns_after_a_cutoff_out_of_its_snapshot(spark):
    tx = nano_log()
    signup = crafted_customers()
    signup.loc[signup["customer_id"] == "late", "signup_date"] += pd.Timedelta(nanoseconds=1)
    got = spark_snapshots(tx, CUTOFFS, 1, 28, signup)
    assert_same_tables(pandas_snapshots(tx, CUTOFFS, 1, 28, signup), got)
    at = pd.DatetimeIndex(pd.to_datetime(got.snapshot_ts, utc=True))
    assert CUTOFFS[1] not in set(at[got.customer_id == "nano"])
