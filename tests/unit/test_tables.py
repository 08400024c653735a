"""Arrow tables from in-memory bytes: the copy Arrow owns and the refusals."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn.io.tables import arrow_buffer, csv_from_bytes, parquet_from_bytes


def test_the_arrow_buffer_is_an_equal_copy_owned_by_arrow() -> None:
    data = b"churn" * 1000
    buffer = arrow_buffer(data)
    assert buffer.to_pybytes() == data
    # A buffer Arrow allocated is mutable; one that wraps Python bytes is not.
    assert buffer.is_mutable and not pa.py_buffer(data).is_mutable


def test_an_empty_object_gives_an_empty_buffer() -> None:
    assert arrow_buffer(b"").size == 0


def test_parquet_and_csv_bytes_read_back_the_same_table() -> None:
    table = pa.table({"customer_id": ["a", "b"], "score": [0.25, 0.75]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    assert parquet_from_bytes(sink.getvalue()).equals(table)
    assert csv_from_bytes(b"customer_id,score\na,0.25\nb,0.75\n").equals(table)


def test_bytes_that_are_not_parquet_raise_an_arrow_error() -> None:
    with pytest.raises(pa.ArrowInvalid):
        parquet_from_bytes(b"not parquet")
