"""The inference log's writer: batches, date partitions, atomic files, flush on close."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds

from churn.features.summary import summarize, summary_windows
from serving.inference_log import FolderSink, InferenceLog, log_schema

INPUT_SPEC = {
    "channels": ["n_txn"],
    "seq_len": 4,
    "numeric_features": ["tenure_days"],
    "categorical_features": {"segment": ["<unk>", "a"]},
}
WINDOWS = summary_windows([1, 4], 4)
SCHEMA = log_schema(INPUT_SPEC, WINDOWS)


def records(n: int, when: datetime, request_id: str = "r") -> list[dict]:
    """Records as the transformer builds them: the fields, then the input summary."""
    summary = summarize(
        np.ones((n, 1, 4)),
        np.full((n, 1), 3.0),
        np.full((n, 1), "a", dtype=object),
        INPUT_SPEC,
        WINDOWS,
    )
    columns = {name: values.tolist() for name, values in summary.items()}
    return [
        {
            "request_id": request_id,
            "time": when,
            "customer_id": f"c{i}",
            "model_version": "v1",
            "feature_timestamp": when - timedelta(hours=3),
            "churn_probability": i / n,
            "churned": False,
            **{name: values[i] for name, values in columns.items()},
        }
        for i in range(n)
    ]


def test_records_land_in_date_partitions_with_the_log_schema(tmp_path: Path) -> None:
    log = InferenceLog(
        FolderSink(tmp_path / "log"), SCHEMA, batch_size=100, flush_seconds=60
    ).start()
    before_midnight = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    assert log.record(records(3, before_midnight)) == 3
    assert log.record(records(2, before_midnight + timedelta(seconds=2), "s")) == 2
    log.close()
    files = sorted(
        p.relative_to(tmp_path / "log").as_posix() for p in (tmp_path / "log").rglob("*")
    )
    assert [f.split("/")[0] for f in files if f.endswith(".parquet")] == [
        "date=2026-11-30",
        "date=2026-12-01",
    ]
    # Only finished files: the temporary name is gone.
    assert not [f for f in files if f.endswith(".tmp")]
    table = ds.dataset(tmp_path / "log", partitioning="hive").to_table()
    assert table.num_rows == 5
    file_schema = ds.dataset(next((tmp_path / "log").rglob("*.parquet"))).schema
    assert file_schema.equals(SCHEMA)
    assert table.column("seq_n_txn_sum_4").to_pylist() == [4.0] * 5


def test_a_batch_is_written_when_full_without_waiting_for_the_interval(tmp_path: Path) -> None:
    log = InferenceLog(FolderSink(tmp_path), SCHEMA, batch_size=4, flush_seconds=3600).start()
    log.record(records(4, datetime.now(UTC)))
    deadline = time.monotonic() + 10
    while not list(tmp_path.rglob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(tmp_path.rglob("*.parquet"))) == 1
    log.close()


def test_a_record_that_does_not_fit_the_schema_costs_its_batch_not_the_writer(
    tmp_path: Path,
) -> None:
    log = InferenceLog(FolderSink(tmp_path), SCHEMA, batch_size=2, flush_seconds=0.05).start()
    bad = records(1, datetime.now(UTC))[0] | {"churn_probability": "high"}
    log.record([bad])
    time.sleep(0.5)
    log.record(records(2, datetime.now(UTC), "good"))
    log.close()
    table = ds.dataset(tmp_path, partitioning="hive").to_table()
    assert set(table.column("request_id").to_pylist()) == {"good"}
