"""Malformed customers files and refused outputs of `churn score`, checked before any work."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churn.errors import ContractError, OutputError
from churn.release.batch_score import check_output, read_customers

AT = pd.Timestamp("2022-01-01", tz="UTC")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "customers.csv"
    path.write_text(text)
    return path


def test_a_customers_file_without_a_customer_id_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="needs a header with customer_id"):
        read_customers(write(tmp_path, "c1\nc2\n"), AT)


def test_an_empty_customer_id_is_refused_with_its_row(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="row 3: empty customer_id"):
        read_customers(write(tmp_path, "customer_id,cutoff\nc1,\n,2022-01-01\n"), AT)


def test_a_cutoff_inside_a_day_is_refused_with_its_row(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"row 2: cutoff .* is not at midnight UTC"):
        read_customers(write(tmp_path, "customer_id,cutoff\nc1,2022-01-01T12:00\n"), AT)


def test_an_unexpected_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"unexpected columns \['score'\]"):
        read_customers(write(tmp_path, "customer_id,score\nc1,0.5\n"), AT)


def test_ids_keep_their_leading_zeros_and_rows_without_a_cutoff_take_the_date(
    tmp_path: Path,
) -> None:
    rows = read_customers(write(tmp_path, "customer_id,cutoff\n007,\n8,2021-12-01\n"), AT)
    assert rows["customer_id"].tolist() == ["007", "8"]
    assert rows["cutoff"].tolist() == [AT, pd.Timestamp("2021-12-01", tz="UTC")]


def test_an_output_of_another_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"must end in \.csv or \.parquet"):
        check_output(tmp_path / "scores.json", force=False)


def test_an_output_that_is_a_folder_is_refused_even_with_force(tmp_path: Path) -> None:
    (tmp_path / "scores.csv").mkdir()
    with pytest.raises(OutputError, match="it is a folder"):
        check_output(tmp_path / "scores.csv", force=True)
