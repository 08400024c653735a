"""The training set built in chunks of entity rows equals the one built in one retrieval.

Crafted log: 9 customers (one id with a quote, which the ASOF store's row-group filter quotes)
buying every 6 days from 2019-12-01, three of them stopping early so both labels occur, a
customers table with a numeric and a categorical attribute, cutoffs 2020-01-01, 2020-02-01 and
2020-03-02, horizon 30 days: 21 entity rows (the three who stop churn at the first cutoff
and are not active after it), retrieved in chunks of 1, 4 and 10 rows.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from churn.dataset.build import build_dataset
from churn.dataset.training_set import SPLITS
from churn.features.build import build_features
from churn.settings import FeatureConfig

CUTOFFS = ["2020-01-01", "2020-02-01", "2020-03-02"]
CUSTOMERS = ["a1", "o'brien", "b2", "c3", "d4", "e5", "f6", "g7", "h8"]


def _log() -> pd.DataFrame:
    rows = []
    for i, customer in enumerate(CUSTOMERS):
        last = "2019-12-25" if i % 3 == 0 else "2020-04-25"
        days = pd.date_range("2019-12-01", last, freq="6D", tz="UTC")
        rows += [(customer, day + pd.Timedelta(hours=i), 5.0 + i + d) for d, day in enumerate(days)]
    rows.append(("a1", pd.Timestamp("2020-04-30T00:00:00Z"), 1.0))  # observation end
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])


def _customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": CUSTOMERS,
            "signup_date": pd.Timestamp("2019-06-01", tz="UTC"),
            "score": np.arange(len(CUSTOMERS), dtype=float) * 1.5,
            "region": ["eu", "us", "eu", "apac", "us", "eu", "us", "apac", "eu"],
        }
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunked")
    _log().to_parquet(root / "tx.parquet")
    _customers().to_parquet(root / "customers.parquet")
    cfg = FeatureConfig(bin_days=1, seq_len=21, horizon_days=30)
    build_features(
        root / "tx.parquet",
        root / "repo",
        cfg,
        customers=root / "customers.parquet",
        cutoffs=CUTOFFS,
    )
    return root / "repo"


def _build(repo, out, chunk_rows: int) -> tuple[dict, dict]:
    summary = build_dataset(repo, out, horizon_days=30, chunk_rows=chunk_rows)
    arrays = {}
    for split in SPLITS:
        with np.load(out / f"{split}.npz") as z:
            arrays[split] = {k: z[k] for k in z.files}
    return summary, {"meta": json.loads((out / "meta.json").read_text()), "arrays": arrays}


@pytest.mark.parametrize("chunk_rows", [1, 4, 10])
def test_a_chunked_build_writes_the_same_rows_and_arrays_as_one_retrieval(
    repo, tmp_path, chunk_rows
):
    whole_summary, whole = _build(repo, tmp_path / "whole", chunk_rows=1_000_000)
    rows = sum(s["rows"] for s in whole_summary["splits"].values())
    assert rows == 21 > chunk_rows  # several chunks
    assert whole["meta"]["categorical_features"]["region"] == ["<unk>", "apac", "eu", "us"]
    assert (
        0 < whole_summary["splits"]["train"]["positives"] < whole_summary["splits"]["train"]["rows"]
    )

    chunked_summary, chunked = _build(repo, tmp_path / "chunked", chunk_rows=chunk_rows)

    assert chunked_summary["splits"] == whole_summary["splits"]
    assert chunked["meta"] == whole["meta"]
    for split in SPLITS:
        for name, expected in whole["arrays"][split].items():
            got = chunked["arrays"][split][name]
            assert got.dtype == expected.dtype, (split, name)
            np.testing.assert_array_equal(got, expected, err_msg=f"{split}.{name}")
    quoted = whole["arrays"]["test"]["customer_id"] == "o'brien"
    assert quoted.sum() == 1 and whole["arrays"]["test"]["seq"][quoted].sum() > 0
