"""The inference log: one record per prediction served, as Parquet partitioned by date.

Records go to ``<uri>/date=YYYY-MM-DD/part-<time>-<id>.parquet`` in a folder or under an
``s3://bucket/prefix``; locally and in the cluster the same code writes the same schema
(:func:`log_schema`): who was scored, when, by which model version, a summary of the model's
inputs (``churn.features.summary``, the columns drift checks compare) and the probability.

Serving must not wait for the log. :meth:`InferenceLog.record` only puts records on a bounded
queue without blocking; a background thread writes them in batches (every ``batch_size``
records or ``flush_seconds``, whichever comes first) and flushes what is left on
:meth:`InferenceLog.close`. When the queue is full or a write fails, the records are dropped
and counted in ``churn_inference_log_dropped_records_total`` (label ``reason``) instead: a
slow or failing store costs log records, never predictions.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from prometheus_client import Counter

from churn.features.summary import summary_schema
from churn.io.object_store import is_s3_uri, parse_s3_uri

log = logging.getLogger(__name__)

RECORD_FIELDS = [
    pa.field("request_id", pa.string()),
    pa.field("time", pa.timestamp("us", tz="UTC")),
    pa.field("customer_id", pa.string()),
    pa.field("model_version", pa.string()),
    pa.field("feature_timestamp", pa.timestamp("us", tz="UTC")),
    pa.field("churn_probability", pa.float64()),
    pa.field("churned", pa.bool_()),
]

DROPPED = Counter(
    "churn_inference_log_dropped_records",
    "Inference log records dropped instead of written (queue full, write failed, shutdown).",
    ["reason"],
)
WRITTEN = Counter("churn_inference_log_written_records", "Inference log records written.")
# Seconds a closed log waits for its writer to flush; a hung store must not hold up shutdown
# beyond Kubernetes' grace period (30 s by default).
CLOSE_TIMEOUT_SECONDS = 20.0
_WAKE = object()


def log_schema(input_spec: dict, windows: list[int]) -> pa.Schema:
    """The inference log's schema: the record fields, then the input summary's columns.

    Args:
        input_spec: The served model's input spec.
        windows: Summary windows (``churn.features.summary.summary_windows``).

    Returns:
        The schema every file of the log has for this model.
    """
    return pa.schema([*RECORD_FIELDS, *summary_schema(input_spec, windows)])


class Sink(Protocol):
    """Where batches of records land."""

    def write(self, date: str, table: pa.Table) -> str:
        """Writes one file of the ``date=`` partition and returns where it went."""


class FolderSink:
    """Writes partition files into a local folder, each under a temporary name first.

    Args:
        root: The log's folder (created when missing).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def write(self, date: str, table: pa.Table) -> str:
        folder = self.root / f"date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / _file_name()
        # A leading dot: readers of the dataset (pyarrow, DuckDB, Spark) skip the file while
        # it is being written.
        tmp = folder / f".{target.name}.tmp"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return str(target)


class S3Sink:
    """Writes partition files as objects under ``s3://bucket/prefix``.

    Credentials come from the standard AWS chain (a Kubernetes Secret's environment). Short
    timeouts and few retries bound how long a store that is down holds the writer; the
    queue meanwhile buffers, then drops.

    Args:
        uri: ``s3://bucket/prefix``.
        endpoint_url: Endpoint of a non-AWS store (MinIO, moto).
    """

    def __init__(self, uri: str, endpoint_url: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.uri = uri.rstrip("/")
        self.bucket, prefix = parse_s3_uri(self.uri)
        self.prefix = prefix.strip("/")
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            config=Config(
                connect_timeout=3,
                read_timeout=10,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )

    def write(self, date: str, table: pa.Table) -> str:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        key = "/".join(p for p in (self.prefix, f"date={date}", _file_name()) if p)
        self._client.put_object(Bucket=self.bucket, Key=key, Body=buffer.getvalue())
        return f"s3://{self.bucket}/{key}"


def open_sink(uri: str, endpoint_url: str | None = None) -> Sink:
    """The sink for a log URI: ``s3://bucket/prefix`` or a folder (``file://`` allowed)."""
    if is_s3_uri(uri):
        return S3Sink(uri, endpoint_url)
    return FolderSink(uri.removeprefix("file://"))


class InferenceLog:
    """A bounded queue of records and the thread that writes them in batches.

    Args:
        sink: Where batches go.
        schema: The records' schema (:func:`log_schema`).
        batch_size: Records per file at most.
        flush_seconds: Longest time a record waits before its batch is written.
        queue_size: Records waiting at most; more are dropped and counted.
    """

    def __init__(
        self,
        sink: Sink,
        schema: pa.Schema,
        batch_size: int = 1000,
        flush_seconds: float = 5.0,
        queue_size: int = 10000,
    ) -> None:
        self.sink = sink
        self.schema = schema
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)

    def start(self) -> InferenceLog:
        """Starts the writer thread."""
        self._thread.start()
        return self

    def record(self, records: list[dict[str, Any]]) -> int:
        """Queues records without ever blocking.

        Args:
            records: One mapping per prediction with the schema's fields.

        Returns:
            How many were queued; the rest were dropped (and counted).
        """
        for i, rec in enumerate(records):
            try:
                self._queue.put_nowait(rec)
            except queue.Full:
                _drop(len(records) - i, "queue_full")
                return i
        return len(records)

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Writes what is queued and stops the writer, waiting ``timeout`` seconds at most.

        Records still queued when the time is up are counted as dropped (``shutdown``).
        """
        self._stop.set()
        # Wakes a writer that waits on an empty queue; a full queue wakes it anyway.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_WAKE)
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            left = sum(1 for item in list(self._queue.queue) if item is not _WAKE)
            log.warning("the inference log could not flush %d records in %.0f s", left, timeout)
            _drop(left, "shutdown")

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch:
                self._write(batch)
            if self._stop.is_set() and self._queue.empty():
                return

    def _next_batch(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.flush_seconds
        while len(batch) < self.batch_size:
            try:
                if self._stop.is_set():
                    # Stopping: drain what is queued without waiting for more.
                    item = self._queue.get_nowait()
                else:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        break
                    item = self._queue.get(timeout=wait)
            except queue.Empty:
                break
            if item is not _WAKE:
                batch.append(item)  # type: ignore[arg-type]
        return batch

    def _write(self, batch: list[dict[str, Any]]) -> None:
        by_date: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rec in batch:
            by_date[rec["time"].date().isoformat()].append(rec)
        for date, records in by_date.items():
            try:
                table = pa.Table.from_pylist(records, schema=self.schema)
                where = self.sink.write(date, table)
            except Exception as exc:
                # Whatever the store says (permissions, a full disk, S3 down or slow), the
                # records are lost and counted; serving goes on.
                log.warning(
                    "inference log: %d records dropped, the store failed: %s: %s",
                    len(records),
                    type(exc).__name__,
                    exc,
                )
                _drop(len(records), "write_failed")
                continue
            WRITTEN.inc(len(records))
            log.debug("inference log: %d records written to %s", len(records), where)


def _drop(count: int, reason: str) -> None:
    if count > 0:
        DROPPED.labels(reason=reason).inc(count)


def _file_name() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
