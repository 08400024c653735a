"""A failing or hung log store costs log records, counted, and never blocks the caller."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from prometheus_client import REGISTRY

from churn.features.summary import summary_windows
from serving.inference_log import FolderSink, InferenceLog, log_schema

INPUT_SPEC = {
    "channels": ["n_txn"],
    "seq_len": 2,
    "numeric_features": [],
    "categorical_features": {},
}
SCHEMA = log_schema(INPUT_SPEC, summary_windows([1], 2))


def dropped(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "churn_inference_log_dropped_records_total", {"reason": reason}
    )
    return value or 0.0


def records(n: int) -> list[dict]:
    now = datetime.now(UTC)
    return [
        {
            "request_id": "r",
            "time": now,
            "customer_id": f"c{i}",
            "model_version": "v",
            "feature_timestamp": now,
            "churn_probability": 0.5,
            "churned": False,
            "seq_n_txn_sum_1": 1.0,
            "seq_recency_bins": 0,
        }
        for i in range(n)
    ]


class FailingSink:
    def write(self, date: str, table: pa.Table) -> str:
        raise OSError(28, "No space left on device")


class HungSink:
    """A store that accepts a write and never returns, until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.writing = threading.Event()

    def write(self, date: str, table: pa.Table) -> str:
        self.writing.set()
        self.release.wait()
        return "nowhere"


def test_a_store_that_fails_drops_and_counts_the_batch() -> None:
    before = dropped("write_failed")
    log = InferenceLog(FailingSink(), SCHEMA, batch_size=3, flush_seconds=0.05).start()
    assert log.record(records(5)) == 5  # queued: the caller never sees the store
    log.close()
    assert dropped("write_failed") - before == 5


def test_a_hung_store_never_blocks_the_caller_and_the_queue_stays_bounded() -> None:
    sink = HungSink()
    full_before, shutdown_before = dropped("queue_full"), dropped("shutdown")
    log = InferenceLog(sink, SCHEMA, batch_size=2, flush_seconds=0.05, queue_size=3).start()
    log.record(records(2))
    assert sink.writing.wait(10)  # the writer now hangs inside the store
    started = time.monotonic()
    accepted = log.record(records(10))
    assert time.monotonic() - started < 0.1
    assert accepted == 3
    assert dropped("queue_full") - full_before == 7
    # Shutdown waits a bounded time, then gives up on what is still queued.
    started = time.monotonic()
    log.close(timeout=0.5)
    assert time.monotonic() - started < 2.0
    assert dropped("shutdown") - shutdown_before == 3
    sink.release.set()


def test_a_folder_that_cannot_be_created_is_a_failed_write(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    before = dropped("write_failed")
    log = InferenceLog(FolderSink(blocker / "log"), SCHEMA, flush_seconds=0.05).start()
    log.record(records(4))
    log.close()
    assert dropped("write_failed") - before == 4
