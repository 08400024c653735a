"""Bad input gets a clear error naming the file, the column and the row."""

from __future__ import annotations

import pandas as pd
import pytest

from churn.data.contract import load_customers, load_transactions, validate_transactions
from churn.errors import ContractError


def _write(tmp_path, text: str, name: str = "tx.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "customer_id,timestamp,amount,quantity\nc1,2020-01-01 10:00:00,5.0,1\nc2,2020-01-02,7.5,2\n"


def test_good_log_is_typed_and_sorted(tmp_path):
    tx = load_transactions(_write(tmp_path, GOOD))
    assert list(tx.columns) == ["customer_id", "timestamp", "amount", "quantity"]
    assert str(tx["timestamp"].dt.tz) == "UTC"
    assert tx["amount"].dtype == "float64"
    assert tx["customer_id"].tolist() == ["c1", "c2"]


def test_aware_timestamps_are_converted_to_utc(tmp_path):
    tx = load_transactions(
        _write(tmp_path, "customer_id,timestamp,amount\nc1,2020-01-01T01:00:00+02:00,1\n")
    )
    assert tx["timestamp"].iloc[0] == pd.Timestamp("2019-12-31T23:00:00Z")


def test_parquet_is_accepted(tmp_path):
    path = tmp_path / "tx.parquet"
    pd.read_csv(_write(tmp_path, GOOD)).to_parquet(path)
    assert len(load_transactions(path)) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customer_id,amount\nc1,5\n", r"tx.csv: missing required column\(s\) \['timestamp'\]"),
        (
            "customer_id,timestamp,amount\nc1,2020-01-01,5\nc2,yesterday,5\n",
            r"tx.csv: column 'timestamp' has an unparsable timestamp 'yesterday' at row 2",
        ),
        (
            "customer_id,timestamp,amount\nc1,2020-01-01,\n",
            r"column 'amount' is empty \(NaN\) at row 1",
        ),
        (
            "customer_id,timestamp,amount\nc1,2020-01-01,-3\n",
            r"column 'amount' is negative .* at row 1",
        ),
        ("customer_id,timestamp,amount\nc1,2020-01-01,abc\n", r"column 'amount' has a non-numeric"),
        (
            "customer_id,timestamp,amount\nc1,2020-01-01,5\nc1,2020-01-01,5\n",
            r"tx.csv: row 2 duplicates row 1 exactly",
        ),
        (
            "customer_id,timestamp,amount\n,2020-01-01,5\n",
            r"column 'customer_id' is empty at row 1",
        ),
        ("customer_id,timestamp,amount\n", r"tx.csv: holds no rows"),
        (
            "customer_id,timestamp,amount,channel\nc1,2020-01-01,5,web\n",
            r"extra column 'channel' is not numeric",
        ),
        # pandas would drop the zone name and read 22:00 EST as 22:00 UTC: five hours early.
        (
            "customer_id,timestamp,amount\nc1,2020-01-01 22:00 EST,5\n",
            r"'2020-01-01 22:00 EST' at row 1 with a time-zone name",
        ),
        # Java's Date.toString() puts the zone before the year, where pandas drops it too.
        (
            "customer_id,timestamp,amount\nc1,Wed Jan 15 10:00:00 EST 2020,5\n",
            r"'Wed Jan 15 10:00:00 EST 2020' at row 1 with a time-zone name",
        ),
        # Row 1 at PM: pandas guesses no format and would parse every row on its own.
        (
            "customer_id,timestamp,amount\nc1,01/15/2020 01:00 pm,5\nc1,13/02/2020,5\n",
            r"unparsable timestamp '13/02/2020' at row 2",
        ),
        # Day-first after month-first would be read row by row in two different orders.
        (
            "customer_id,timestamp,amount\nc1,01/02/2020,5\nc1,13/02/2020,5\n",
            r"unparsable timestamp '13/02/2020' at row 2 \(every row must share one format",
        ),
        (
            "customer_id,timestamp,amount,quantity\nc1,2020-01-01,5,1\nc1,2020-01-02,5,-2\n",
            r"extra column 'quantity' is negative \(-2.0\) at row 2",
        ),
        (
            ",customer_id,timestamp,amount\n0,c1,2020-01-01,5\n",
            r"column 'Unnamed: 0' has no header; it looks like a saved DataFrame index",
        ),
        (
            "customer_id,timestamp,amount,amount\nc1,2020-01-01,5,6\n",
            r"column 'amount.1' repeats the header 'amount'",
        ),
        (
            "customer_id,timestamp,amount,n_txn\nc1,2020-01-01,5,6\n",
            r"column 'n_txn' clashes with a name the platform derives",
        ),
    ],
)
def test_bad_logs_name_file_column_and_row(tmp_path, text, expected):
    with pytest.raises(ContractError, match=expected):
        load_transactions(_write(tmp_path, text))


def test_empty_file(tmp_path):
    with pytest.raises(ContractError, match="file is empty"):
        load_transactions(_write(tmp_path, ""))


def test_wrong_file_type(tmp_path):
    with pytest.raises(ContractError, match=r"unsupported file type '.json'"):
        load_transactions(_write(tmp_path, "{}", "tx.json"))


def test_missing_file(tmp_path):
    with pytest.raises(ContractError, match="does not exist"):
        load_transactions(tmp_path / "nope.csv")


def test_corrupt_parquet(tmp_path):
    with pytest.raises(ContractError, match="not a readable Parquet file"):
        load_transactions(_write(tmp_path, "not parquet at all", "tx.parquet"))


def test_customers_duplicate_ids_and_types(tmp_path):
    path = _write(
        tmp_path,
        "customer_id,signup_date,segment,age\nc1,2020-01-01,a,30\nc2,2020-01-02,,41\n",
        "customers.csv",
    )
    customers = load_customers(path)
    assert customers["age"].dtype == "float64"
    assert customers["segment"].tolist() == ["a", ""]
    dup = _write(tmp_path, "customer_id,signup_date\nc1,2020-01-01\nc1,2020-01-02\n", "c2.csv")
    with pytest.raises(ContractError, match=r"c2.csv: customer_id 'c1' appears twice \(row 2\)"):
        load_customers(dup)


def test_validation_does_not_modify_its_input():
    raw = pd.DataFrame({"customer_id": [1], "timestamp": ["2020-01-01"], "amount": [1]})
    before = raw.copy()
    validate_transactions(raw)
    pd.testing.assert_frame_equal(raw, before)


def test_reserved_names_cover_the_derived_features():
    from churn.data.contract import RESERVED_COLUMNS
    from churn.features.sequences import CONTEXT_FEATURES

    assert set(CONTEXT_FEATURES) <= RESERVED_COLUMNS


def test_a_parquet_time_beyond_nanoseconds_names_the_row(tmp_path):
    import numpy as np

    path = tmp_path / "tx.parquet"
    times = np.array(["2000-01-01", "3000-01-01"], dtype="datetime64[us]")
    pd.DataFrame({"customer_id": ["a", "b"], "timestamp": times, "amount": [1.0, 2.0]}).to_parquet(
        path
    )
    with pytest.raises(
        ContractError, match=r"'timestamp' holds a time outside 1678..2261 at row 2"
    ):
        load_transactions(path)


def test_customer_attributes_keep_na_and_ids_lose_stray_spaces(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("customer_id,signup_date,region\n c1 ,2020-01-01,NA\nc2,2020-01-02,\n")
    customers = load_customers(path)
    assert customers["customer_id"].tolist() == ["c1", "c2"]
    assert customers["region"].tolist() == ["NA", ""]


def test_floating_point_ids_are_refused(tmp_path):
    path = tmp_path / "tx.parquet"
    pd.DataFrame({"customer_id": [1.0], "timestamp": ["2020-01-01"], "amount": [1.0]}).to_parquet(
        path
    )
    with pytest.raises(ContractError, match="'customer_id' holds floating-point numbers"):
        load_transactions(path)


def test_a_customers_table_of_other_ids_is_refused(tmp_path):
    from churn.features.build import build_features
    from churn.settings import FeatureConfig

    log = _write(tmp_path, "customer_id,timestamp,amount\n00001,2020-01-01,5\n00002,2020-02-01,5\n")
    customers = tmp_path / "customers.parquet"
    pd.DataFrame(
        {"customer_id": [1, 2], "signup_date": pd.to_datetime(["2019-12-01"] * 2, utc=True)}
    ).to_parquet(customers)
    with pytest.raises(ContractError, match=r"none of the 2 customers of .* is in .*'00001' in"):
        build_features(log, tmp_path / "repo", FeatureConfig(), customers=customers)
    assert not (tmp_path / "repo").exists()


def test_common_formats_parse_to_the_right_instant():
    rows = [
        ("01/15/2020 11:30 pm", "2020-01-15 23:30"),
        ("01/16/2020 09:00 am", "2020-01-16 09:00"),
        ("01/17/2020 12:05 PM", "2020-01-17 12:05"),
    ]
    df = pd.DataFrame(
        {"customer_id": ["a"] * 3, "timestamp": [r[0] for r in rows], "amount": [1.0] * 3}
    )
    got = validate_transactions(df)["timestamp"].tolist()
    assert got == [pd.Timestamp(r[1], tz="UTC") for r in rows]
    iso = ["2020-01-01 10:00:00.123+00:00", "2020-01-01T10:00:00.000Z", "2020-01-02"]
    df = pd.DataFrame({"customer_id": ["a"] * 3, "timestamp": iso, "amount": [1.0] * 3})
    assert validate_transactions(df)["timestamp"].tolist() == [
        pd.Timestamp("2020-01-01 10:00:00", tz="UTC"),
        pd.Timestamp("2020-01-01 10:00:00.123", tz="UTC"),
        pd.Timestamp("2020-01-02", tz="UTC"),
    ]


def test_customers_may_name_attributes_after_activity_channels_but_not_features(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("customer_id,signup_date,spend\nc1,2020-01-01,3\n")
    assert load_customers(path)["spend"].tolist() == [3.0]  # its own feature view: no clash
    path.write_text("customer_id,signup_date,frequency\nc1,2020-01-01,3\n")
    with pytest.raises(ContractError, match="column 'frequency' clashes"):
        load_customers(path)


def test_a_numeric_attribute_with_na_tokens_is_refused(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text("customer_id,signup_date,age\nc1,2020-01-01,34\nc2,2020-01-01,NA\n")
    with pytest.raises(ContractError, match=r"column 'age' holds numbers and 'NA' at row 2"):
        load_customers(path)
